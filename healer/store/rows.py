"""Small frozen row models the repository returns besides healer.models domain types."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from healer.models import ActionState

FLEET_VOTER = "fleet:"  # how a vote relayed by the control plane names its person


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rollup(_Row):
    """One metric aggregated over one minute (minute = start of the minute, UTC)."""

    name: str
    minute: datetime
    min: float
    max: float
    avg: float
    last: float
    count: int = Field(ge=1)


class HistoryEntry(_Row):
    """One applied change to a target, for guard rate limits and cool-downs."""

    target: str
    ts: datetime  # when the change entered "applying"
    state: ActionState  # where it stands now
    value: str | None  # the value read back after apply, when known
    action_id: int | None = None
    judged: bool = True  # False: restored on start-up without a verdict (crash recovery)
    convergence: str | None = None  # a kept "insufficient" step: its convergence's key


class Transition(_Row):
    """One move of an action record: the state it entered, and when (``transitions``)."""

    state: ActionState
    at: AwareDatetime


class IncidentActivity(_Row):
    """Where an incident's changes stand, for deciding whether to diagnose it again."""

    live: bool  # some record is in one of the asked-for states
    last_state: ActionState | None  # the most recently changed record's state; None: no records
    last_change: datetime | None  # when that record last changed


class Pending(NamedTuple):
    """A journal record as the change engine's cycle probes it (a tuple: read every cycle)."""

    id: int
    state: ActionState
    created_at: datetime


class GuardReads(NamedTuple):
    """What the guard reads of the journal for one change, in one read (``guard_reads``)."""

    history: list[HistoryEntry]  # the target's changes in the span asked for, oldest first
    changes: int  # how many changes this host started since the time asked for
    paused: frozenset[str]  # the targets this host may not change automatically


class SealCheck(NamedTuple):
    """A journal row's seal as the engine checks it before acting (``seal_check``)."""

    entries: int  # entries in this host's journal log
    top: int  # its highest seq: equal to ``entries`` when nothing is missing
    problem: str | None  # why the row is not to be trusted; None when it is


class ApprovalRow(_Row):
    action_id: int
    user: str  # the name, for the record
    user_id: int | None  # who counts; None once the user is removed
    approve: bool
    comment: str
    at: datetime
    origin: str = "local"  # "fleet": relayed by the control plane, which vouched for the user


class AuditRow(_Row):
    id: int
    at: datetime
    actor: str
    event: str
    subject: str
    detail: dict[str, Any]


class UserRow(_Row):
    id: int
    name: str
    password_hash: str
    role: str
    slack_user_id: str | None
    created_at: datetime


class TokenRow(_Row):
    id: int
    name: str
    token_hash: str
    role: str
    created_at: datetime
    user_id: int | None = None  # None: a service token
    owner: str | None = None  # the owning user's name
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class SessionRow(_Row):
    user_id: int
    created_at: datetime
    expires_at: datetime


class OutboxRow(_Row):
    id: int
    channel: str
    event: str
    payload: dict[str, Any]
    dedupe_key: str
    attempts: int
    next_attempt: datetime
    delivered_at: datetime | None
    last_error: str | None
    dead: bool


class SilenceRow(_Row):
    """An operator's silence of one unclassified kernel-message template."""

    id: int
    template: str
    comment: str
    created_by: str
    created_at: datetime
    expires_at: datetime

    def active(self, now: datetime) -> bool:
        """True until it expires."""
        return now < self.expires_at


class LLMAnswerRow(_Row):
    """What an LLM answered about one incident (``answer``: the stored ``LLMResult`` JSON,
    untrusted until validated again; None with ``failure`` when it gave none)."""

    id: int
    incident_id: int
    model: str
    prompt_version: str
    answer: dict[str, Any] | None
    failure: str | None
    cached: bool
    calls: int
    tokens: int
    created_at: datetime
    taken_at: datetime | None


class PausedTargetRow(_Row):
    """A target automation stood down on (admin drift), until a person resumes it."""

    target: str
    reason: str
    at: datetime


class ReportRow(_Row):
    """One report waiting in the fleet outbox; ``seq`` once it was sent."""

    id: int
    seq: int | None
    kind: str
    subject: str
    at: datetime
    body: dict[str, Any]
