"""The database schema as SQLAlchemy 2.0 typed declarative tables; every row carries host_id.

The migration in ``migrations/versions`` creates these tables explicitly; a test checks
that the migrated schema and this metadata agree (``alembic.autogenerate.compare_metadata``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

HOST_LEN = 253  # a DNS name, like Settings.host_id
NAME_LEN = 200
# Metric names embed cgroup paths (two levels of up to 255-byte names) and textfile labels.
# 600 characters, even at 4 UTF-8 bytes each, still fit PostgreSQL's btree entry limit
# (about 2700 bytes) beside host_id in the (host_id, name, time) unique indexes. Longer
# names are not stored (SamplesRepo), on every backend alike.
METRIC_NAME_LEN = 600
# SQLite does not enforce VARCHAR lengths and already stores such names, so only
# PostgreSQL's column is widened (migration 0003); SQLite's tables are not rebuilt.
MetricName = sa.String(NAME_LEN).with_variant(sa.String(METRIC_NAME_LEN), "postgresql")
SUBJECT_LEN = 512  # healer.detect.templates keeps templates shorter
# Fleet fingerprints and remedy keys (guardrails.fleet): within PostgreSQL's btree limit
# like metric names; longer ones are shortened with a hash (healer.store.repo_hosts).
FINGERPRINT_LEN = 600


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Store datetimes in UTC; always hand back tz-aware UTC values.

    SQLite keeps DATETIME as naive text, so the zone is attached on the way out. Naive
    values coming in are taken to be UTC already (the daemon's clock is UTC).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC) if dialect.name != "sqlite" else value
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[dict[str, Any]]: sa.JSON(),
        str: sa.String(NAME_LEN),
    }


class RollupTable(Base):
    """Per-minute aggregate of one metric."""

    __tablename__ = "rollups"
    __table_args__ = (sa.UniqueConstraint("host_id", "name", "minute"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    name: Mapped[str] = mapped_column(MetricName)
    minute: Mapped[datetime] = mapped_column(index=True)
    min: Mapped[float]
    max: Mapped[float]
    avg: Mapped[float]
    last: Mapped[float]
    count: Mapped[int]


class RawSampleTable(Base):
    """Full-resolution readings, kept for a while around incidents."""

    __tablename__ = "raw_samples"
    __table_args__ = (sa.UniqueConstraint("host_id", "name", "ts"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    name: Mapped[str] = mapped_column(MetricName)
    ts: Mapped[datetime] = mapped_column(index=True)
    value: Mapped[float]


class IncidentTable(Base):
    """An incident. On a control plane, also every agent's incidents (``source_id``: the
    agent's own id) and those opened by alerts (``alert_key``)."""

    __tablename__ = "incidents"
    __table_args__ = (
        sa.Index("ix_incidents_fingerprint", "host_id", "playbook", "scope", "status"),
        sa.Index("ux_incidents_host_source", "host_id", "source_id", unique=True),
        sa.Index("ux_incidents_host_alert", "host_id", "alert_key", unique=True),
        sa.Index("ix_incidents_fleet", "fleet_fingerprint", "status"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    playbook: Mapped[str]
    scope: Mapped[str] = mapped_column(sa.String(1024))
    # A device, interface or binary, or an unclassified incident's message template.
    subject: Mapped[str] = mapped_column(sa.String(SUBJECT_LEN), server_default="")
    status: Mapped[str] = mapped_column(sa.String(16))
    severity: Mapped[str] = mapped_column(sa.String(32))
    count: Mapped[int]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    evidence: Mapped[dict[str, Any]]
    diagnosis: Mapped[dict[str, Any] | None]
    # guardrails.fleet: the same trouble on many hosts (systemic detection, the LLM cache)
    fleet_fingerprint: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LEN), server_default="")
    source_id: Mapped[int | None]  # a mirrored incident: its id in the agent's journal
    alert_key: Mapped[str | None] = mapped_column(sa.String(NAME_LEN))  # fingerprint@startsAt


class ActionTable(Base):
    """The action journal: one row per proposed change, moved through TRANSITIONS. On a
    control plane, also every agent's records as reported (``source_id``, ``transitions``)."""

    __tablename__ = "actions"
    __table_args__ = (
        sa.Index("ix_actions_host_state", "host_id", "state"),
        sa.Index("ux_actions_host_source", "host_id", "source_id", unique=True),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(4200), index=True)
    action: Mapped[dict[str, Any]]
    decision: Mapped[dict[str, Any]]
    provenance: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(32))
    original: Mapped[str | None] = mapped_column(sa.Text)
    applied: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    applied_at: Mapped[datetime | None] = mapped_column(index=True)  # entered "applying"
    deadline: Mapped[datetime | None]
    verification: Mapped[dict[str, Any] | None]
    approvals_needed: Mapped[int]
    rationale: Mapped[str] = mapped_column(sa.Text)
    # The journal write that sealed this version, and its HMAC (healer.store.seal); None
    # on a row nobody sealed (written before the seal existed, or forged).
    seq: Mapped[int | None]
    mac: Mapped[str | None] = mapped_column(sa.String(64))
    source_id: Mapped[int | None]  # a mirrored record: its id in the agent's journal
    transitions: Mapped[list[dict[str, Any]] | None]  # a mirrored record's [{state, at}]


class JournalLogTable(Base):
    """Every sealed journal write, numbered per host: which row version each ``seq``
    sealed. Append-only; a gap or a missing tail means a write was deleted."""

    __tablename__ = "journal_log"
    __table_args__ = (sa.Index("ix_journal_log_action", "host_id", "action_id", "seq"),)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    action_id: Mapped[int]
    row_mac: Mapped[str] = mapped_column(sa.String(64))
    mac: Mapped[str] = mapped_column(sa.String(64))


class ApprovalTable(Base):
    """A person's vote on one awaiting action; one per (action, user).

    ``user`` keeps the name for the record; ``user_id`` is who counts. Removing the user
    nulls it, so a removed user's vote stops counting even if the id is reused.
    """

    __tablename__ = "approvals"
    __table_args__ = (sa.UniqueConstraint("action_id", "user"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    action_id: Mapped[int] = mapped_column(sa.ForeignKey("actions.id"))
    user: Mapped[str]
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    approve: Mapped[bool]
    comment: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime]
    # "local": a user of this host (counted by user_id); "fleet": a person the control plane
    # authenticated, relayed to this host's agent (docs/fleet-protocol.md, vote events).
    origin: Mapped[str] = mapped_column(sa.String(16), server_default="local")


class AuditTable(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str]
    event: Mapped[str] = mapped_column(sa.String(64))
    subject: Mapped[str] = mapped_column(sa.String(4200), index=True)
    detail: Mapped[dict[str, Any]]


class PausedTargetTable(Base):
    """Targets where admin drift stood automation down until a human resumes them."""

    __tablename__ = "paused_targets"
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN), primary_key=True)
    target: Mapped[str] = mapped_column(sa.String(4200), primary_key=True)
    reason: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime]


class UserTable(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    name: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str] = mapped_column(sa.Text)
    role: Mapped[str] = mapped_column(sa.String(32))
    slack_user_id: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime]


class TokenTable(Base):
    """API tokens: a person's (``user_id`` set; removed with the user) or a service's."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    name: Mapped[str]
    token_hash: Mapped[str] = mapped_column(sa.String(512), unique=True)
    role: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[datetime]
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class SessionTable(Base):
    """Dashboard sign-ins; the cookie carries the id, the server keeps only its SHA-256."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    id_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"),
                                         index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class OutboxTable(Base):
    """Notifications waiting for delivery; dedupe_key makes enqueueing idempotent."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.UniqueConstraint("host_id", "channel", "dedupe_key"),
        sa.Index("ix_outbox_due", "host_id", "delivered_at", "dead", "next_attempt"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    channel: Mapped[str] = mapped_column(sa.String(64))
    event: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]]
    dedupe_key: Mapped[str] = mapped_column(sa.String(512))
    attempts: Mapped[int]
    next_attempt: Mapped[datetime]
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    dead: Mapped[bool]


class SilenceTable(Base):
    """An operator's "this kernel-message template is harmless until expires_at"."""

    __tablename__ = "silences"
    __table_args__ = (sa.Index("ix_silences_host_expires", "host_id", "expires_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    template: Mapped[str] = mapped_column(sa.String(SUBJECT_LEN))
    comment: Mapped[str] = mapped_column(sa.Text)
    created_by: Mapped[str]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class KvTable(Base):
    """Small durable key/value pairs (LLM cache, kmsg bookkeeping, flags)."""

    __tablename__ = "kv"
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN), primary_key=True)
    namespace: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(512), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None] = mapped_column(index=True)
    updated_at: Mapped[datetime]


class LlmAnswerTable(Base):
    """What an LLM answered about one incident, for one model and prompt version.

    Written by whichever process asked (healer.diagnose.pending); ``taken_at`` is set when
    the root agent took it up, re-checking every proposal against the playbook and the
    guard. ``answer`` is the validated answer (``LLMResult``), null when the LLM gave none
    (``failure`` says why).
    """

    __tablename__ = "llm_answers"
    __table_args__ = (
        sa.UniqueConstraint("incident_id", "model", "prompt_version"),
        sa.Index("ix_llm_answers_host_taken", "host_id", "taken_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"))
    model: Mapped[str]
    prompt_version: Mapped[str] = mapped_column(sa.String(64))
    answer: Mapped[dict[str, Any] | None]
    failure: Mapped[str | None] = mapped_column(sa.String(64))
    cached: Mapped[bool]  # from the cache: no call was made for this incident
    calls: Mapped[int]  # requests the conversation made
    tokens: Mapped[int]
    created_at: Mapped[datetime]
    taken_at: Mapped[datetime | None]


class FleetReportTable(Base):
    """The agent's reports to the control plane, waiting for its ack (docs/fleet-protocol.md).

    Written in the same transaction as the journal or incident change it reports, so a
    crash loses none. ``seq`` is given when the report first goes out, in ``id`` order:
    reports never sent can still be dropped (samples, when over the cap) without leaving a
    gap in what the control plane saw. Acked reports are deleted.
    """

    __tablename__ = "fleet_reports"
    __table_args__ = (
        sa.UniqueConstraint("host_id", "seq"),
        sa.Index("ix_fleet_reports_subject", "host_id", "subject"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN))
    seq: Mapped[int | None]
    kind: Mapped[str] = mapped_column(sa.String(16))  # incident | transition | sample
    subject: Mapped[str] = mapped_column(sa.String(64))  # incident:<id>, action:<id>, sample
    at: Mapped[datetime]
    body: Mapped[dict[str, Any]]
    size: Mapped[int]  # bytes of the body as JSON: the outbox cap counts these


# -- the fleet (a control plane on PostgreSQL; see docs/fleet-protocol.md) ------------------
class HostTable(Base):
    """An agent the control plane knows: its token, labels and latest heartbeat."""

    __tablename__ = "hosts"
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN), primary_key=True)
    token_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("tokens.id", ondelete="SET NULL"), index=True)
    labels: Mapped[dict[str, Any]]
    agent_version: Mapped[str | None] = mapped_column(sa.String(32))
    mode: Mapped[str | None] = mapped_column(sa.String(16))
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(index=True)
    clock_skew_seconds: Mapped[float | None]
    open_incidents: Mapped[int]
    paused: Mapped[bool]
    # the agent's own last report seq, from its heartbeat; reports applied here, in order
    reported_seq: Mapped[int] = mapped_column(sa.BigInteger)
    applied_seq: Mapped[int] = mapped_column(sa.BigInteger)
    sample: Mapped[dict[str, Any] | None]  # the latest ``sample`` report
    created_at: Mapped[datetime]


class ReportTable(Base):
    """An agent's report as received: upserted on (host_id, seq), applied in seq order."""

    __tablename__ = "reports"
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime]
    body: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(index=True)


class LeaseTable(Base):
    """A grant to apply one remedy on one host: live while renewed within its TTL.

    ``live_key`` (remedy|host while live, NULL after) keeps one live lease per host and
    remedy, whichever replica grants it.
    """

    __tablename__ = "leases"
    __table_args__ = (
        sa.Index("ix_leases_remedy_state", "remedy", "state"),
        sa.Index("ix_leases_state_expires", "state", "expires_at"),
        sa.Index("ix_leases_remedy_outcome", "remedy", "outcome", "released_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    remedy: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LEN))
    host_id: Mapped[str] = mapped_column(sa.String(HOST_LEN), index=True)
    action_id: Mapped[int | None]  # the record in the agent's journal
    fingerprint: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LEN))
    epoch: Mapped[int]
    rule: Mapped[str] = mapped_column(sa.String(32))
    role: Mapped[str] = mapped_column(sa.String(16))
    wave: Mapped[int]
    state: Mapped[str] = mapped_column(sa.String(16))  # live | released | reclaimed
    outcome: Mapped[str | None] = mapped_column(sa.String(32))
    live_key: Mapped[str | None] = mapped_column(sa.String(1024), unique=True)
    ttl_seconds: Mapped[float]
    granted_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    released_at: Mapped[datetime | None]


class RolloutTable(Base):
    """A remedy's way through the fleet (guardrails.fleet.Rollout, as JSON in ``state``);
    ``live_key`` (the remedy while it runs, NULL once ended) keeps one running per remedy."""

    __tablename__ = "rollouts"
    id: Mapped[int] = mapped_column(primary_key=True)
    remedy: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LEN), index=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LEN))
    live_key: Mapped[str | None] = mapped_column(sa.String(FINGERPRINT_LEN), unique=True)
    state: Mapped[dict[str, Any]]
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


class BreakerTable(Base):
    """A remedy's circuit breaker: open from ``tripped_at`` until a person resumes it;
    failures before ``reset_at`` no longer count."""

    __tablename__ = "breakers"
    remedy: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LEN), primary_key=True)
    tripped_at: Mapped[datetime | None]
    failures: Mapped[int]
    reset_at: Mapped[datetime | None]
    reset_by: Mapped[str | None]
    paged_at: Mapped[datetime | None]  # a person was told it tripped


class FleetPauseTable(Base):
    """The kill switch: ``*`` stops every automatic action fleet-wide, a remedy key one remedy."""

    __tablename__ = "fleet_pauses"
    target: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LEN), primary_key=True)
    paused_by: Mapped[str]
    reason: Mapped[str] = mapped_column(sa.Text)
    at: Mapped[datetime]


class FleetIncidentTable(Base):
    """One incident for the whole fleet (systemic: one fingerprint on too many hosts);
    ``open_key`` (the fingerprint while open) makes it one, whichever replica sees it."""

    __tablename__ = "fleet_incidents"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    fingerprint: Mapped[str] = mapped_column(sa.String(FINGERPRINT_LEN), index=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    open_key: Mapped[str | None] = mapped_column(sa.String(FINGERPRINT_LEN), unique=True)
    hosts: Mapped[int]
    reporting: Mapped[int]
    opened_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None]
    paged_at: Mapped[datetime | None]  # the one page went out


class EventTable(Base):
    """What agents learn through ``/events``: for one host, or every host (``host_id`` NULL).
    Ids are the cursors; they are written one at a time, so they commit in order."""

    __tablename__ = "events"
    __table_args__ = (sa.Index("ix_events_host_id", "host_id", "id"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                    primary_key=True)
    host_id: Mapped[str | None] = mapped_column(sa.String(HOST_LEN))
    type: Mapped[str] = mapped_column(sa.String(32))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(index=True)
