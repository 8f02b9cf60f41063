"""The fleet's values as the store takes and returns them.

The bodies agents send (docs/fleet-protocol.md) are parsed into these at the edge, so a
malformed report is a 422 there and never a half-applied row here; the rows the
control plane's views read come back as these too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from guardrails.actions import Action
from guardrails.decision import Decision, Provenance
from guardrails.fleet import FleetDecision, Outcome, Purpose, Remedy, Rollout
from healer.models import ActionState, IncidentStatus
from healer.store.rows import Transition

HostId = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^\S+$")]
LabelName = Annotated[str, Field(min_length=1, max_length=64,
                                 pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Labels = Annotated[dict[LabelName, Annotated[str, Field(max_length=256)]],
                   Field(max_length=32)]
Seq = Annotated[int, Field(ge=1, lt=2**63)]
RowId = Annotated[int, Field(ge=1, lt=2**63)]
MAX_REPORTS = 1000  # per request; the rest wait for the next one


class _In(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Heartbeat(_In):
    host_id: HostId
    agent_version: str = Field(max_length=32, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+")
    mode: Literal["observe", "advise", "auto"]
    labels: Labels = Field(default_factory=dict)
    sent_at: AwareDatetime
    open_incidents: int = Field(default=0, ge=0)
    last_report_seq: int = Field(default=0, ge=0, lt=2**63)


class ReportedIncident(BaseModel):
    """An incident as the agent keeps it (healer.models.Incident, or the API's shape)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: RowId
    playbook: str = Field(min_length=1, max_length=200)
    scope: str = Field(min_length=1, max_length=1024)
    subject: str = Field(default="", max_length=512)
    status: IncidentStatus
    severity: str = Field(default="warning", max_length=32)
    count: int = Field(default=1, ge=1)
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    evidence: dict[str, Any] = Field(default_factory=dict)
    signals: dict[str, float] = Field(default_factory=dict)  # evidence's, sent without it
    diagnosis: dict[str, Any] | None = None
    fleet_fingerprint: str = Field(default="", max_length=4096)
    # Set on an incident the agent opened from an ``incident`` event: the control plane's
    # own id for it, so the report updates that incident instead of opening another.
    control_plane_id: RowId | None = None


class ReportedAction(BaseModel):
    """An action record as the agent's journal keeps it, with its transitions."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: RowId
    incident_id: RowId | None = None
    action: Action
    decision: Decision
    provenance: Provenance = "playbook"
    state: ActionState
    original: str | None = Field(default=None, max_length=4096)
    applied: str | None = Field(default=None, max_length=4096)
    created_at: AwareDatetime
    updated_at: AwareDatetime
    verification: dict[str, Any] | None = None
    approvals_needed: int = Field(default=0, ge=0, le=99)
    rationale: str = Field(default="", max_length=4096)
    transitions: list[Transition] = Field(default_factory=list, max_length=1000)


ReportKind = Literal["incident", "transition", "sample"]


class Report(_In):
    seq: Seq
    kind: ReportKind
    at: AwareDatetime
    incident: ReportedIncident | None = None
    action: ReportedAction | None = None
    sample: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _body(self) -> Report:
        field = {"incident": "incident", "transition": "action", "sample": "sample"}[self.kind]
        if getattr(self, field) is None:
            raise ValueError(f"a {self.kind} report carries {field!r}")
        return self

    def body(self) -> dict[str, Any]:
        """What the store keeps of it until it is applied."""
        return self.model_dump(mode="json", exclude={"seq", "kind", "at"}, exclude_none=True)


class ReportBatch(_In):
    host_id: HostId
    reports: list[Report] = Field(max_length=MAX_REPORTS)


class Renew(_In):
    lease_id: RowId
    epoch: int = Field(ge=1)


class LeaseAsk(_In):
    host_id: HostId
    action_id: RowId | None = None
    incident_fingerprint: str = Field(min_length=1, max_length=4096)
    remedy: Remedy
    renew: Renew | None = None
    purpose: Purpose = "apply"


class Release(_In):
    host_id: HostId
    lease_id: RowId
    epoch: int = Field(ge=1)
    outcome: Outcome


class LeaseGrant(_Out):
    lease_id: int
    epoch: int
    ttl_seconds: float
    rule: str


class LeaseAnswer(_Out):
    """A grant, or the decision to wait."""

    decision: FleetDecision
    grant: LeaseGrant | None = None
    # With a fleet-wide wait (guardrails.fleet.FLEET_WIDE_WAITS): the hosts it is not the
    # answer of when it was decided, each to ask for itself: those holding a live lease of
    # the remedy (handed it back) and the paused ones (told their pause).
    ask_themselves: frozenset[str] | None = None


class HostRow(_Out):
    host_id: str
    labels: dict[str, str]
    agent_version: str | None
    mode: str | None
    last_heartbeat_at: datetime | None
    clock_skew_seconds: float | None
    open_incidents: int  # open here: mirrored from its reports, or opened by alerts
    paused: bool
    created_at: datetime


class EventRow(_Out):
    id: int
    host_id: str | None  # None: every host
    type: str
    payload: dict[str, Any]
    created_at: datetime


class LeaseRow(_Out):
    id: int
    remedy: str
    host_id: str
    action_id: int | None
    epoch: int
    role: str
    wave: int
    state: str
    outcome: str | None
    granted_at: datetime
    expires_at: datetime
    released_at: datetime | None


class RolloutRow(_Out):
    id: int
    rollout: Rollout
    updated_at: datetime


class BreakerRow(_Out):
    remedy: str
    tripped_at: datetime | None
    failures: int
    reset_at: datetime | None
    reset_by: str | None


class FleetIncidentRow(_Out):
    id: int
    kind: str
    fingerprint: str
    status: str
    hosts: int
    reporting: int
    opened_at: datetime
    resolved_at: datetime | None


class FleetStatus(_Out):
    """The kill switch and what the fleet is doing: for ``healer fleet status`` and the
    dashboard's fleet view."""

    paused: bool
    paused_remedies: list[str]
    paused_hosts: list[str]
    hosts: int
    reporting_hosts: int
    rollouts: list[RolloutRow]
    in_flight: list[LeaseRow]
    breakers: list[BreakerRow]  # open ones
    fleet_incidents: list[FleetIncidentRow]  # open ones


class AlertIn(_In):
    """One alert of an Alertmanager webhook, resolved to a host and a playbook."""

    host_id: HostId
    alert_key: str = Field(max_length=200)  # Alertmanager's fingerprint @ startsAt
    alertname: str
    labels: dict[str, str]  # untrusted: for the agent to match its alert playbooks
    fingerprint: str  # the fleet fingerprint (guardrails.fleet.alert_fingerprint)
    playbook: str
    scope: str
    subject: str
    severity: str
    firing: bool
    starts_at: datetime
    ends_at: datetime | None
    evidence: dict[str, Any]
