"""The daemon's domain types, frozen, in one place.

Data flows through the loop as these values: collectors produce ``SamplePart``s that
the monitor merges into a ``Sample``; detectors turn the window into ``Signal``s and
``Incident``s; diagnosers produce a ``Diagnosis`` with ``Proposal``s; the guard
returns a ``guardrails.Decision``; the journal keeps ``ActionRecord``s.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from guardrails.actions import Action
from guardrails.decision import Decision, Provenance


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KmsgRecord(_Frozen):
    """One kernel-log record as /dev/kmsg presents it (Documentation/ABI/testing/dev-kmsg)."""

    seq: int
    priority: int  # syslog level 0..7
    facility: int = 0
    ts_us: int  # microseconds since boot
    message: str
    wall_ts: float | None = None  # epoch seconds, when known
    fields: tuple[tuple[str, str], ...] = ()  # continuation "KEY=value" lines


class GpuProcess(_Frozen):
    pid: int
    name: str = ""
    used_memory_bytes: int | None = None
    sm_util_percent: float | None = None


class GpuState(_Frozen):
    """What NVML (or the simulated backend) reports for one device."""

    index: int
    name: str = ""
    uuid: str = ""
    pci_bus_id: str = ""  # as NVRM prints it in Xid lines, e.g. 0000:3b:00.0
    present: bool = True
    ok: bool = True  # False when the call timed out or failed this cycle
    metrics: dict[str, float] = Field(default_factory=dict)  # unprefixed: temperature_celsius
    throttle_reasons: tuple[str, ...] = ()
    compute_mode: str | None = None
    persistence_mode: bool | None = None
    processes: tuple[GpuProcess, ...] = ()


class ProcessInfo(_Frozen):
    pid: int
    name: str
    username: str = ""
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    num_fds: int | None = None
    nofile_soft: int | None = None
    nofile_hard: int | None = None
    cgroup: str | None = None
    cmdline: str = ""


class SamplePart(_Frozen):
    """What one collector returns for one cycle."""

    metrics: dict[str, float] = Field(default_factory=dict)
    kmsg: tuple[KmsgRecord, ...] = ()
    gpus: tuple[GpuState, ...] = ()
    processes: tuple[ProcessInfo, ...] | None = None  # None: not scanned this cycle


class Sample(_Frozen):
    """One timestamped reading of every metric, plus new kernel-log records."""

    ts: float  # epoch seconds
    metrics: dict[str, float]
    kmsg: tuple[KmsgRecord, ...] = ()
    gpus: tuple[GpuState, ...] = ()
    processes: tuple[ProcessInfo, ...] | None = None
    collector_errors: tuple[str, ...] = ()  # names of collectors that failed this cycle


class Evidence(_Frozen):
    """What an incident carries: numbers, log lines, tunables, processes, GPU state."""

    signals: dict[str, float] = Field(default_factory=dict)  # signal name -> value that fired
    metrics: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)  # name -> (ts, v)
    kmsg: tuple[str, ...] = ()  # matching lines, untrusted text
    tunables: dict[str, str] = Field(default_factory=dict)
    processes: tuple[ProcessInfo, ...] = ()
    gpus: tuple[GpuState, ...] = ()
    captures: dict[str, str] = Field(default_factory=dict)  # named regex groups, untrusted


class IncidentStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Incident(_Frozen):
    id: int | None = None
    host_id: str
    playbook: str  # root-cause id of the playbook that fired ("unclassified": none did)
    scope: str
    # What within the scope: a device, interface or binary (Playbook.subject); for an
    # unclassified incident, the message template. Part of the incident's identity.
    subject: str = ""
    status: IncidentStatus = IncidentStatus.OPEN
    severity: str = "warning"
    count: int = 1
    first_seen: datetime
    last_seen: datetime
    evidence: Evidence = Field(default_factory=Evidence)
    diagnosis: Diagnosis | None = None

    @property
    def fingerprint(self) -> str:
        """playbook|scope, plus |subject when there is one (unique among open incidents)."""
        base = f"{self.playbook}|{self.scope}"
        return f"{base}|{self.subject}" if self.subject else base


class Proposal(_Frozen):
    """An action with where it came from and what it should do to the metrics."""

    action: Action
    provenance: Provenance
    rationale: str = ""
    expected_effect: str = ""
    in_playbook: bool = True  # False when an LLM proposed something outside the playbook


class Diagnosis(_Frozen):
    root_cause: str  # a known playbook id, or "unknown"
    explanation: str = ""
    confidence: float = Field(ge=0.0, le=1.0, default=0.0)
    source: Literal["playbook", "llm"] = "playbook"
    proposals: tuple[Proposal, ...] = ()


class ActionState(enum.StrEnum):
    PROPOSED = "proposed"
    DENIED = "denied"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    APPLYING = "applying"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    SUPERSEDED = "superseded"


# The journal's legal transitions (ARCHITECTURE.md).
TRANSITIONS: dict[ActionState, frozenset[ActionState]] = {
    ActionState.PROPOSED: frozenset(
        {ActionState.DENIED, ActionState.AWAITING_APPROVAL, ActionState.APPROVED}
    ),
    ActionState.AWAITING_APPROVAL: frozenset(
        {ActionState.APPROVED, ActionState.REJECTED, ActionState.EXPIRED}
    ),
    ActionState.APPROVED: frozenset({ActionState.APPLYING, ActionState.DENIED}),
    ActionState.APPLYING: frozenset(
        {ActionState.VERIFYING, ActionState.ROLLED_BACK, ActionState.ROLLBACK_FAILED}
    ),
    ActionState.VERIFYING: frozenset(
        {
            ActionState.VERIFIED,
            ActionState.ROLLED_BACK,
            ActionState.ROLLBACK_FAILED,
            ActionState.SUPERSEDED,
        }
    ),
    ActionState.VERIFIED: frozenset({ActionState.ROLLED_BACK, ActionState.SUPERSEDED}),
}
TERMINAL_STATES = frozenset(
    {
        ActionState.DENIED,
        ActionState.REJECTED,
        ActionState.EXPIRED,
        ActionState.ROLLED_BACK,
        ActionState.ROLLBACK_FAILED,
        ActionState.SUPERSEDED,
    }
)


class ActionRecord(_Frozen):
    """One row of the action journal; the JSON shape in ARCHITECTURE.md."""

    id: int | None = None
    host_id: str
    incident_id: int | None = None
    action: Action
    decision: Decision
    provenance: Provenance = "playbook"
    state: ActionState = ActionState.PROPOSED
    original: str | None = None  # value read before apply, as the actuator reads it
    applied: str | None = None  # value read back after apply
    created_at: datetime
    updated_at: datetime
    deadline: datetime | None = None  # verification deadline
    verification: dict[str, Any] | None = None
    approvals_needed: int = 0
    rationale: str = ""


Incident.model_rebuild()
