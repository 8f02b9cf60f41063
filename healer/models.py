"""The daemon's domain types, frozen, in one place.

Data flows through the loop as these values: collectors produce ``SamplePart``s that
the monitor merges into a ``Sample``; detectors turn the window into ``Signal``s and
``Incident``s; diagnosers produce a ``Diagnosis`` with ``Proposal``s; the guard
returns a ``guardrails.Decision``; the journal keeps ``ActionRecord``s, each with its
``Verification``: what is compared (``VerifySpec``), the baseline, the verdict, and the
record's place in a convergence (``Step``).
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guardrails import linear
from guardrails.actions import Action
from guardrails.decision import Decision, Provenance
from healer.errors import ConfigError
from playbooks.schema import Converge


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


class LiveSnapshot(_Frozen):
    """What the agent publishes each cycle for the unprivileged side (healer/live.py)."""

    version: Literal[1] = 1
    written_at: float  # the heartbeat: epoch seconds of the write
    interval_seconds: float
    mode: str
    agent_pid: int
    lag_seconds: float  # how late this cycle started
    sample: Sample
    agent_metrics: str = ""  # Prometheus exposition text of the agent's own registry


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


def split_fingerprint(fingerprint: str) -> tuple[str, str, str]:
    """``playbook|scope|subject`` (``Incident.fingerprint``) into its parts; a subject may
    hold ``|`` itself (a template), a playbook id and a scope never do."""
    playbook, _, rest = fingerprint.partition("|")
    scope, _, subject = rest.partition("|")
    return playbook, scope, subject


class SilenceRefused(ConfigError):
    """The silence asked for is malformed or would cover a known failure."""

    def __init__(self, problem: str) -> None:
        super().__init__("silence", problem)


class SilenceRequest(_Frozen):
    """A silence to store: validated, with the template it covers."""

    template: str
    comment: str
    expires_at: datetime


class SilenceCheck(Protocol):
    """Checks a silence asked for by template or by an unclassified incident against the
    playbook library (``healer.detect.silences.silence_check``); raises SilenceRefused."""

    def __call__(self, *, comment: str, now: datetime, template: str | None = None,
                 incident: Incident | None = None, duration: timedelta | None = None,
                 expires_at: datetime | None = None) -> SilenceRequest: ...


class Proposal(_Frozen):
    """An action with where it came from and what it should do to the metrics."""

    action: Action
    provenance: Provenance
    rationale: str = ""
    expected_effect: str = ""
    # True only when the proposal is one of the playbook's own remedies (set by whoever
    # builds it); a missing flag means "outside the playbook": never automatic.
    in_playbook: bool = False


class Opinion(_Frozen):
    """The LLM's answer beside a playbook's diagnosis (a second opinion), or why it gave none.

    Shown next to the diagnosis, never instead of it; its proposals are the LLM's and wait
    for a person unless it agrees with the playbook and picks one of the playbook's remedies.
    """

    root_cause: str  # a playbook id, the LLM's own slug, or "unknown"
    explanation: str = ""
    confidence: float = Field(ge=0.0, le=1.0, default=0.0)
    agrees: bool = False  # the same root cause as the diagnosis beside it
    model: str = ""
    failure: str | None = None  # why the LLM gave no answer (a reason label)
    proposals: tuple[Proposal, ...] = ()


class Diagnosis(_Frozen):
    # A playbook id; the LLM's own short slug when no playbook matched (source "llm");
    # or "unknown".
    root_cause: str
    explanation: str = ""
    confidence: float = Field(ge=0.0, le=1.0, default=0.0)
    source: Literal["playbook", "llm"] = "playbook"
    proposals: tuple[Proposal, ...] = ()
    second_opinion: Opinion | None = None


class ActionState(enum.StrEnum):
    PROPOSED = "proposed"
    DENIED = "denied"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    WAITING_CANARY = "waiting_canary"  # in a fleet: approved, waiting for the canary host
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

# Slack Block Kit action_id prefixes of the Approve/Reject buttons (the suffix is the action
# id): notify draws the buttons, the web's /slack/interactions reads them back.
SLACK_APPROVE_ACTION = "healer_approve"
SLACK_REJECT_ACTION = "healer_reject"


# -- verification: what a change is judged on, and what was concluded -------------------------
Direction = Literal["down", "up", "to_zero", "below", "above"]
SloOp = Literal["<=", "<", ">=", ">"]
_SLO_METRIC = r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+"
# Operator config text (Settings.slo_metrics), not untrusted input: Python re.
_SLO_RE = re.compile(rf"^\s*({_SLO_METRIC})\s*(<=|>=|<|>)\s*({_SLO_METRIC}"
                     r"|-?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\s*$")
# fixed: the symptom is gone for the verify window (keep). insufficient: it continues at the
# same rate or lower and no guard regressed (keep; a convergence steps again). regressed: a
# guard got worse beyond its noise, or the symptom got worse than before (roll back).
Verdict = Literal["fixed", "insufficient", "regressed"]


class KmsgContextPattern(_Frozen):
    """A preceding line whose captures are merged into the next match."""

    contains: str | tuple[str, ...]  # one literal, or several (any one); see Kmsg.contains
    regex: str
    max_lines: int = 50


class KmsgPattern(_Frozen):
    """One kernel-log line kind that shows the symptom a change must stop (``quiet_kmsg``)."""

    contains: str | tuple[str, ...]  # one literal, or several (any one); see Kmsg.contains
    regex: str
    where: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    context: tuple[KmsgContextPattern, ...] = ()
    scope: dict[str, str] = Field(default_factory=dict)  # capture -> the incident's value

    def captures(self) -> set[str]:
        """Every named group the line or its context lines can capture."""
        names = set(linear.compile(self.regex).groupindex)
        for ctx in self.context:
            names |= set(linear.compile(ctx.regex).groupindex)
        return names


class Slo(_Frozen):
    """One objective: ``metric op objective`` (a number, or a metric the app reports)."""

    metric: str
    op: SloOp
    objective: float | None = None
    objective_metric: str | None = None

    def __str__(self) -> str:
        rhs = self.objective_metric if self.objective_metric else f"{self.objective:g}"
        return f"{self.metric}{self.op}{rhs}"

    @classmethod
    def parse(cls, text: str) -> Slo:
        """``metric<=0.05`` or ``metric<=other.metric``; ValueError on anything else."""
        m = _SLO_RE.match(text)
        if m is None:
            raise ValueError(f"not an SLO (metric <=|<|>=|> number-or-metric): {text!r}")
        metric, op, rhs = m.groups()
        rhs_field = "objective_metric" if rhs[0].isalpha() else "objective"
        return cls.model_validate({"metric": metric, "op": op, rhs_field: rhs})


class GuardSpec(_Frozen):
    """A metric that must not regress past an explicit tolerance while the change is tried."""

    metric: str
    max_regression_percent: float | None = Field(default=None, ge=0)
    max_increase: float | None = Field(default=None, ge=0)  # absolute, in the metric's units
    worse: Literal["up", "down"] = "up"


class VerifySpec(_Frozen):
    """The target metric and direction and/or the symptom's kernel-log patterns, the guards,
    and the windows and tolerances (healer/verify/compare.py judges on them)."""

    metric: str | None = None
    direction: Direction | None = None
    quiet_kmsg: tuple[KmsgPattern, ...] = ()
    slos: tuple[Slo, ...] = ()  # operator SLOs; when set they are the target (verify/slo.py)
    threshold: float | None = None  # for below / above
    rate: bool = False  # compare the per-second rate (counters; *_total always are)
    guards: tuple[GuardSpec, ...] = ()
    window_seconds: float = Field(default=30.0, gt=0)  # baseline length and judged after-window
    settle_seconds: float = Field(default=2.0, ge=0)  # samples right after the write are ignored
    min_samples: int = Field(default=3, ge=2)  # never judge on one sample
    min_change_percent: float = Field(default=10.0, ge=0)  # up/down: required improvement
    target_tolerance_percent: float = Field(default=20.0, ge=0)  # target worse than this: fail
    zero_tolerance: float = Field(default=0.0, ge=0)  # to_zero: the largest rate that counts as 0
    mad_k: float = Field(default=3.0, ge=0)  # noise floor: k * MAD of the baseline
    deadline_seconds: float | None = None  # default: settle + 3 windows
    # A capacity raise (a convergence's step): raising a limit does not cause more of the
    # failures it lifts, so a symptom that goes on, at any rate, is "insufficient"; a higher
    # rate means the workload got further. Only the guards can call it a regression.
    capacity: bool = False

    @model_validator(mode="after")
    def _target(self) -> VerifySpec:
        if (self.metric is None) != (self.direction is None):
            raise ValueError("metric and direction go together")
        if self.metric is None and not self.quiet_kmsg and not self.slos:
            raise ValueError("give a metric and direction, quiet_kmsg patterns or slos")
        return self

    @property
    def deadline(self) -> float:
        """Seconds after the write by which verification must have passed."""
        if self.deadline_seconds is not None:
            return self.deadline_seconds
        return self.settle_seconds + 3 * self.window_seconds

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric verification reads: the target, then the guards."""
        target = () if self.metric is None else (self.metric,)
        return (*target, *(g.metric for g in self.guards))


class VerifyResult(_Frozen):
    """The verdict (None: keep waiting), the reasons, and the numbers behind it."""

    verdict: Verdict | None
    reasons: tuple[str, ...] = ()
    numbers: dict[str, float] = Field(default_factory=dict)


class Summary(_Frozen):
    """A metric over the baseline window: robust statistics (healer/verify/stats.py)."""

    n: float
    median: float
    mad: float
    min: float
    max: float


def convergence_key(first: int) -> str:
    """How the journal and the guard name one convergence: by its step 1's action id."""
    return f"convergence:{first}"


class Step(_Frozen):
    """A record's place in a convergence: step ``number`` of the remedy on one target."""

    number: int = Field(ge=1)
    first: int | None = None  # step 1's action id (None on step 1 itself)
    previous: int | None = None  # the previous step's action id
    allowed: int = Field(ge=1)  # steps allowed so far: the playbook's max_steps, plus grants
    cap: int | None = Field(default=None, ge=1)  # the remedy's max_per_incident: no grant passes it
    plan: Converge
    ceiling: float | None = None  # the policy's highest value here (range, facts), when known

    @property
    def continues(self) -> str | None:
        """The convergence a step after the first continues; None for step 1."""
        return None if self.first is None else convergence_key(self.first)


StopReason = Literal["steps", "ceiling", "unbounded"]


class Stop(_Frozen):
    """On an escalation: why a convergence stopped, and whether approving it continues it."""

    reason: StopReason
    steps: tuple[int, ...]  # the action ids of the steps so far, oldest first
    grants_step: bool  # approving this escalation allows one more step


class Verification(_Frozen):
    """What the journal keeps about judging one change (ActionRecord.verification)."""

    spec: VerifySpec | None
    in_playbook: bool  # False: outside the playbook's remedies; never automatic
    baseline: dict[str, Summary] = Field(default_factory=dict)
    kmsg_baseline: float | None = None  # symptom lines per second before the change
    applied_at: float | None = None  # epoch seconds of the write
    result: VerifyResult | None = None
    judged: bool = True  # False: undone without a verdict on the value (crash recovery)
    rollback_reason: str | None = None
    step: Step | None = None
    stop: Stop | None = None

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> Verification:
        """Parse the stored JSON, including rows written before this model: a missing
        ``in_playbook`` reads as False (the safe side), ``rollback_judged`` as ``judged``
        and a ``passed`` result as its verdict."""
        data = dict(raw)
        data.setdefault("in_playbook", False)
        data.setdefault("spec", None)
        if "rollback_judged" in data:
            data["judged"] = data.pop("rollback_judged")
        result = data.get("result")
        if isinstance(result, dict) and "passed" in result:
            passed = result.get("passed")
            verdict = {True: "fixed", False: "regressed"}.get(passed) if passed is not None \
                else None
            data["result"] = {k: v for k, v in result.items() if k != "passed"} | {
                "verdict": verdict}
        return cls.model_validate(data)


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
    verification: Verification | None = None
    approvals_needed: int = 0
    rationale: str = ""

    @property
    def convergence(self) -> str | None:
        """The key of the convergence this record is a step of (its step 1's action id)."""
        step = self.verification.step if self.verification else None
        first = None if step is None else (step.first if step.first is not None else self.id)
        return None if first is None else convergence_key(first)

    @property
    def verdict(self) -> Verdict | None:
        """The verification verdict, once there is one."""
        result = self.verification.result if self.verification else None
        return None if result is None else result.verdict


Incident.model_rebuild()
