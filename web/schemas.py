"""JSON shapes of the API (ARCHITECTURE.md), kept apart from the store's rows.

Timestamps are ISO 8601 in UTC; lists are newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from guardrails.actions import Action
from guardrails.decision import Decision
from healer.models import ActionRecord, Diagnosis, Incident, Opinion, Sample, Verification
from healer.store.rows import ApprovalRow, AuditRow, Transition

# Row ids are 64-bit in every database healer supports; a larger number can name no row
# (and SQLite's driver raises on it rather than finding nothing).
ID_MAX = 2**63 - 1
PathId = Annotated[int, Path(ge=1, le=ID_MAX, examples=[1])]
QueryId = Annotated[int, Query(ge=1, le=ID_MAX)]
HostQuery = Annotated[str | None, Query(min_length=1, max_length=253)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


def utc(ts: datetime) -> datetime:
    """``ts`` as aware UTC (naive values are taken to be UTC already)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z`` suffix, or None."""
    return None if ts is None else utc(ts).isoformat().replace("+00:00", "Z")


# Every timestamp leaves the API as aware UTC (pydantic renders it with a "Z").
UtcDatetime = Annotated[datetime, AfterValidator(utc)]
_Timestamps = _Out


class OpinionOut(_Out):
    """The LLM's answer beside a playbook's diagnosis; its proposals are action records."""

    root_cause: str
    confidence: float
    explanation: str
    agrees: bool
    model: str
    failure: str | None

    @classmethod
    def of(cls, o: Opinion) -> OpinionOut:
        return cls(root_cause=o.root_cause, confidence=o.confidence, explanation=o.explanation,
                   agrees=o.agrees, model=o.model, failure=o.failure)


class DiagnosisOut(_Out):
    # A playbook id; with source "llm", the LLM's answer where no playbook matched: a
    # playbook id or its own short slug.
    root_cause: str
    source: Literal["playbook", "llm"]
    confidence: float
    explanation: str
    second_opinion: OpinionOut | None = None

    @classmethod
    def of(cls, d: Diagnosis) -> DiagnosisOut:
        opinion = OpinionOut.of(d.second_opinion) if d.second_opinion else None
        return cls(root_cause=d.root_cause, source=d.source, confidence=d.confidence,
                   explanation=d.explanation, second_opinion=opinion)


class IncidentOut(_Timestamps):
    id: int
    host_id: str
    playbook: str  # "unclassified": no playbook; the subject is then the message template
    scope: str
    subject: str
    status: Literal["open", "resolved"]
    severity: str
    count: int
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    diagnosis: DiagnosisOut | None

    @classmethod
    def of(cls, i: Incident) -> IncidentOut:
        return cls(id=i.id or 0, host_id=i.host_id, playbook=i.playbook, scope=i.scope,
                   subject=i.subject, status=i.status.value, severity=i.severity, count=i.count,
                   first_seen=i.first_seen, last_seen=i.last_seen,
                   diagnosis=DiagnosisOut.of(i.diagnosis) if i.diagnosis else None)


class DecisionOut(_Out):
    verdict: Literal["allow", "needs_approval", "deny"]
    reasons: list[str]
    rules: list[str]

    @classmethod
    def of(cls, d: Decision) -> DecisionOut:
        return cls(verdict=d.verdict, reasons=list(d.reasons), rules=list(d.rules))


class TransitionOut(_Timestamps):
    state: str
    at: UtcDatetime


class ActionOut(_Timestamps):
    id: int
    host_id: str
    incident_id: int | None
    action: Action
    decision: DecisionOut
    state: str
    original: str | None
    applied: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    verification: Verification | None
    transitions: list[TransitionOut]  # every state the record entered, oldest first

    @classmethod
    def fields_of(cls, r: ActionRecord, moves: Sequence[Transition]) -> dict[str, Any]:
        return {"id": r.id or 0, "host_id": r.host_id, "incident_id": r.incident_id,
                "action": r.action, "decision": DecisionOut.of(r.decision),
                "state": r.state.value, "original": r.original, "applied": r.applied,
                "created_at": r.created_at, "updated_at": r.updated_at,
                "verification": r.verification,
                "transitions": [TransitionOut(state=t.state.value, at=t.at) for t in moves]}

    @classmethod
    def of(cls, r: ActionRecord, moves: Sequence[Transition]) -> ActionOut:
        return cls(**cls.fields_of(r, moves))


class VoteOut(_Timestamps):
    user: str
    approve: bool
    comment: str
    at: UtcDatetime
    counts: bool  # False once the voter was removed or no longer holds the approver role

    @classmethod
    def of(cls, v: ApprovalRow, *, counts: bool) -> VoteOut:
        return cls(user=v.user, approve=v.approve, comment=v.comment, at=v.at, counts=counts)


class ApprovalOut(_Timestamps):
    needed: int
    approved_by: list[str]
    rejected_by: list[str]
    expires_at: UtcDatetime | None
    votes: list[VoteOut]


class ProposalOut(ActionOut):
    """An action record plus where its approval stands."""

    approval: ApprovalOut


class VoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=2000)


class KmsgOut(_Out):
    seq: int
    priority: int
    message: str


class SnapshotOut(_Timestamps):
    host_id: str
    live: bool
    ts: UtcDatetime | None
    metrics: dict[str, float]
    gpus: list[dict[str, Any]]
    kmsg: list[KmsgOut]
    collector_errors: list[str]
    llm: dict[str, Any] | None

    @classmethod
    def of(cls, host_id: str, s: Sample | None, llm: dict[str, Any] | None) -> SnapshotOut:
        if s is None:
            return cls(host_id=host_id, live=False, ts=None, metrics={}, gpus=[], kmsg=[],
                       collector_errors=[], llm=llm)
        return cls(host_id=host_id, live=True, ts=datetime.fromtimestamp(s.ts, UTC),
                   metrics=dict(s.metrics), gpus=[g.model_dump(mode="json") for g in s.gpus],
                   kmsg=[KmsgOut(seq=k.seq, priority=k.priority, message=k.message)
                         for k in s.kmsg],
                   collector_errors=list(s.collector_errors), llm=llm)


class SeriesOut(_Out):
    seconds: float
    series: dict[str, list[tuple[float, float]]]


class AuditOut(_Timestamps):
    id: int
    at: UtcDatetime
    actor: str
    event: str
    subject: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, a: AuditRow) -> AuditOut:
        return cls(id=a.id, at=a.at, actor=a.actor, event=a.event, subject=a.subject,
                   detail=a.detail)


class HealthOut(_Out):
    status: Literal["ok", "degraded", "error"]
    host_id: str
    database: Literal["ok", "error"]
    last_sample_age_seconds: float | None
    loop_lag_seconds: float | None  # how overdue the next sample is; None without a loop
    # the root agent's heartbeat, judged by the unprivileged side; None when the loop runs
    # in this process (tests) or there is no agent (a fleet control plane)
    agent: Literal["alive", "dead"] | None = None
