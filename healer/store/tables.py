"""The database schema as SQLAlchemy Core tables; every row carries host_id.

Core, not the ORM: the root agent loads this module, and the ORM would cost it ~5 MB.

The migration in ``migrations/versions`` creates these tables explicitly; a test checks
that the migrated schema and this metadata agree (``alembic.autogenerate.compare_metadata``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

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


metadata = sa.MetaData(naming_convention=NAMING)


# Per-minute aggregate of one metric.
RollupTable = sa.Table(
    "rollups",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("name", MetricName, nullable=False),
    sa.Column("minute", UTCDateTime(), index=True, nullable=False),
    sa.Column("min", sa.Double(), nullable=False),
    sa.Column("max", sa.Double(), nullable=False),
    sa.Column("avg", sa.Double(), nullable=False),
    sa.Column("last", sa.Double(), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.UniqueConstraint("host_id", "name", "minute"),
)

# Full-resolution readings, kept for a while around incidents.
RawSampleTable = sa.Table(
    "raw_samples",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("name", MetricName, nullable=False),
    sa.Column("ts", UTCDateTime(), index=True, nullable=False),
    sa.Column("value", sa.Double(), nullable=False),
    sa.UniqueConstraint("host_id", "name", "ts"),
)

# An incident. On a control plane, also every agent's incidents (``source_id``: the
# agent's own id) and those opened by alerts (``alert_key``).
IncidentTable = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("playbook", sa.String(NAME_LEN), nullable=False),
    sa.Column("scope", sa.String(1024), nullable=False),
    # A device, interface or binary, or an unclassified incident's message template.
    sa.Column("subject", sa.String(SUBJECT_LEN), server_default="", nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("severity", sa.String(32), nullable=False),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    sa.Column("evidence", sa.JSON(), nullable=False),
    sa.Column("diagnosis", sa.JSON(), nullable=True),
    # guardrails.fleet: the same trouble on many hosts (systemic detection, the LLM cache)
    sa.Column("fleet_fingerprint", sa.String(FINGERPRINT_LEN), server_default="", nullable=False),
    # a mirrored incident: its id in the agent's journal
    sa.Column("source_id", sa.Integer(), nullable=True),
    sa.Column("alert_key", sa.String(NAME_LEN), nullable=True),  # fingerprint@startsAt
    sa.Index("ix_incidents_fingerprint", "host_id", "playbook", "scope", "status"),
    sa.Index("ux_incidents_host_source", "host_id", "source_id", unique=True),
    sa.Index("ux_incidents_host_alert", "host_id", "alert_key", unique=True),
    sa.Index("ix_incidents_fleet", "fleet_fingerprint", "status"),
)

# The action journal: one row per proposed change, moved through TRANSITIONS. On a
# control plane, also every agent's records as reported (``source_id``, ``transitions``).
ActionTable = sa.Table(
    "actions",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("incident_id", sa.Integer(),
              sa.ForeignKey("incidents.id"), index=True, nullable=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("target", sa.String(4200), index=True, nullable=False),
    sa.Column("action", sa.JSON(), nullable=False),
    sa.Column("decision", sa.JSON(), nullable=False),
    sa.Column("provenance", sa.String(16), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("original", sa.Text(), nullable=True),
    sa.Column("applied", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("applied_at", UTCDateTime(), index=True, nullable=True),  # entered "applying"
    sa.Column("deadline", UTCDateTime(), nullable=True),
    sa.Column("verification", sa.JSON(), nullable=True),
    sa.Column("approvals_needed", sa.Integer(), nullable=False),
    sa.Column("rationale", sa.Text(), nullable=False),
    # The journal write that sealed this version, and its HMAC (healer.store.seal); None
    # on a row nobody sealed (written before the seal existed, or forged).
    sa.Column("seq", sa.Integer(), nullable=True),
    sa.Column("mac", sa.String(64), nullable=True),
    # a mirrored record: its id in the agent's journal
    sa.Column("source_id", sa.Integer(), nullable=True),
    sa.Column("transitions", sa.JSON(), nullable=True),  # a mirrored record's [{state, at}]
    sa.Index("ix_actions_host_state", "host_id", "state"),
    sa.Index("ux_actions_host_source", "host_id", "source_id", unique=True),
)

# Every sealed journal write, numbered per host: which row version each ``seq``
# sealed. Append-only; a gap or a missing tail means a write was deleted.
JournalLogTable = sa.Table(
    "journal_log",
    metadata,
    sa.Column("host_id", sa.String(HOST_LEN), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("action_id", sa.Integer(), nullable=False),
    sa.Column("row_mac", sa.String(64), nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.Index("ix_journal_log_action", "host_id", "action_id", "seq"),
)

# A person's vote on one awaiting action; one per (action, user).
#
# ``user`` keeps the name for the record; ``user_id`` is who counts. Removing the user
# nulls it, so a removed user's vote stops counting even if the id is reused.
ApprovalTable = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("action_id", sa.Integer(), sa.ForeignKey("actions.id"), nullable=False),
    sa.Column("user", sa.String(NAME_LEN), nullable=False),
    sa.Column("user_id", sa.Integer(),
              sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("approve", sa.Boolean(), nullable=False),
    sa.Column("comment", sa.Text(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    # "local": a user of this host (counted by user_id); "fleet": a person the control plane
    # authenticated, relayed to this host's agent (docs/fleet-protocol.md, vote events).
    sa.Column("origin", sa.String(16), server_default="local", nullable=False),
    sa.UniqueConstraint("action_id", "user"),
)

AuditTable = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("at", UTCDateTime(), index=True, nullable=False),
    sa.Column("actor", sa.String(NAME_LEN), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(4200), index=True, nullable=False),
    sa.Column("detail", sa.JSON(), nullable=False),
)

# Targets where admin drift stood automation down until a human resumes them.
PausedTargetTable = sa.Table(
    "paused_targets",
    metadata,
    sa.Column("host_id", sa.String(HOST_LEN), primary_key=True),
    sa.Column("target", sa.String(4200), primary_key=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
)

UserTable = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("name", sa.String(NAME_LEN), unique=True, nullable=False),
    sa.Column("password_hash", sa.Text(), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("slack_user_id", sa.String(64), unique=True, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# API tokens: a person's (``user_id`` set; removed with the user) or a service's.
TokenTable = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("name", sa.String(NAME_LEN), nullable=False),
    sa.Column("token_hash", sa.String(512), unique=True, nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("user_id", sa.Integer(),
              sa.ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=True),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)

# Dashboard sign-ins; the cookie carries the id, the server keeps only its SHA-256.
SessionTable = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("id_hash", sa.String(64), unique=True, nullable=False),
    sa.Column("user_id", sa.Integer(),
              sa.ForeignKey("users.id", ondelete="CASCADE"), index=True, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), index=True, nullable=False),
)

# Notifications waiting for delivery; dedupe_key makes enqueueing idempotent.
OutboxTable = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("dedupe_key", sa.String(512), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("dead", sa.Boolean(), nullable=False),
    sa.UniqueConstraint("host_id", "channel", "dedupe_key"),
    sa.Index("ix_outbox_due", "host_id", "delivered_at", "dead", "next_attempt"),
)

# An operator's "this kernel-message template is harmless until expires_at".
SilenceTable = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("template", sa.String(SUBJECT_LEN), nullable=False),
    sa.Column("comment", sa.Text(), nullable=False),
    sa.Column("created_by", sa.String(NAME_LEN), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_silences_host_expires", "host_id", "expires_at"),
)

# Small durable key/value pairs (LLM cache, kmsg bookkeeping, flags).
KvTable = sa.Table(
    "kv",
    metadata,
    sa.Column("host_id", sa.String(HOST_LEN), primary_key=True),
    sa.Column("namespace", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(512), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), index=True, nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# What an LLM answered about one incident, for one model and prompt version.
#
# Written by whichever process asked (healer.diagnose.pending); ``taken_at`` is set when
# the root agent took it up, re-checking every proposal against the playbook and the
# guard. ``answer`` is the validated answer (``LLMResult``), null when the LLM gave none
# (``failure`` says why).
LlmAnswerTable = sa.Table(
    "llm_answers",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("model", sa.String(NAME_LEN), nullable=False),
    sa.Column("prompt_version", sa.String(64), nullable=False),
    sa.Column("answer", sa.JSON(), nullable=True),
    sa.Column("failure", sa.String(64), nullable=True),
    # from the cache: no call was made for this incident
    sa.Column("cached", sa.Boolean(), nullable=False),
    sa.Column("calls", sa.Integer(), nullable=False),  # requests the conversation made
    sa.Column("tokens", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("taken_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("incident_id", "model", "prompt_version"),
    sa.Index("ix_llm_answers_host_taken", "host_id", "taken_at"),
)

# The agent's reports to the control plane, waiting for its ack (docs/fleet-protocol.md).
#
# Written in the same transaction as the journal or incident change it reports, so a
# crash loses none. ``seq`` is given when the report first goes out, in ``id`` order:
# reports never sent can still be dropped (samples, when over the cap) without leaving a
# gap in what the control plane saw. Acked reports are deleted.
FleetReportTable = sa.Table(
    "fleet_reports",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),  # incident | transition | sample
    sa.Column("subject", sa.String(64), nullable=False),  # incident:<id>, action:<id>, sample
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("body", sa.JSON(), nullable=False),
    # bytes of the body as JSON: the outbox cap counts these
    sa.Column("size", sa.Integer(), nullable=False),
    sa.UniqueConstraint("host_id", "seq"),
    sa.Index("ix_fleet_reports_subject", "host_id", "subject"),
)

# -- the fleet (a control plane on PostgreSQL; see docs/fleet-protocol.md) ------------------
# An agent the control plane knows: its token, labels and latest heartbeat.
HostTable = sa.Table(
    "hosts",
    metadata,
    sa.Column("host_id", sa.String(HOST_LEN), primary_key=True),
    sa.Column("token_id", sa.Integer(),
              sa.ForeignKey("tokens.id", ondelete="SET NULL"), index=True, nullable=True),
    sa.Column("labels", sa.JSON(), nullable=False),
    sa.Column("agent_version", sa.String(32), nullable=True),
    sa.Column("mode", sa.String(16), nullable=True),
    sa.Column("last_heartbeat_at", UTCDateTime(), index=True, nullable=True),
    sa.Column("clock_skew_seconds", sa.Double(), nullable=True),
    sa.Column("open_incidents", sa.Integer(), nullable=False),
    sa.Column("paused", sa.Boolean(), nullable=False),
    # the agent's own last report seq, from its heartbeat; reports applied here, in order
    sa.Column("reported_seq", sa.BigInteger(), nullable=False),
    sa.Column("applied_seq", sa.BigInteger(), nullable=False),
    sa.Column("sample", sa.JSON(), nullable=True),  # the latest ``sample`` report
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# An agent's report as received: upserted on (host_id, seq), applied in seq order.
ReportTable = sa.Table(
    "reports",
    metadata,
    sa.Column("host_id", sa.String(HOST_LEN), primary_key=True),
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("body", sa.JSON(), nullable=False),
    sa.Column("received_at", UTCDateTime(), index=True, nullable=False),
)

# A grant to apply one remedy on one host: live while renewed within its TTL.
#
# ``live_key`` (remedy|host while live, NULL after) keeps one live lease per host and
# remedy, whichever replica grants it.
LeaseTable = sa.Table(
    "leases",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("remedy", sa.String(FINGERPRINT_LEN), nullable=False),
    sa.Column("host_id", sa.String(HOST_LEN), index=True, nullable=False),
    sa.Column("action_id", sa.Integer(), nullable=True),  # the record in the agent's journal
    sa.Column("fingerprint", sa.String(FINGERPRINT_LEN), nullable=False),
    sa.Column("epoch", sa.Integer(), nullable=False),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("wave", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # live | released | reclaimed
    sa.Column("outcome", sa.String(32), nullable=True),
    sa.Column("live_key", sa.String(1024), unique=True, nullable=True),
    sa.Column("ttl_seconds", sa.Double(), nullable=False),
    sa.Column("granted_at", UTCDateTime(), nullable=False),
    sa.Column("renewed_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("released_at", UTCDateTime(), nullable=True),
    sa.Index("ix_leases_remedy_state", "remedy", "state"),
    sa.Index("ix_leases_state_expires", "state", "expires_at"),
    sa.Index("ix_leases_remedy_outcome", "remedy", "outcome", "released_at"),
)

# A remedy's way through the fleet (guardrails.fleet.Rollout, as JSON in ``state``);
# ``live_key`` (the remedy while it runs, NULL once ended) keeps one running per remedy.
RolloutTable = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("remedy", sa.String(FINGERPRINT_LEN), index=True, nullable=False),
    sa.Column("fingerprint", sa.String(FINGERPRINT_LEN), nullable=False),
    sa.Column("live_key", sa.String(FINGERPRINT_LEN), unique=True, nullable=True),
    sa.Column("state", sa.JSON(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
)

# A remedy's circuit breaker: open from ``tripped_at`` until a person resumes it;
# failures before ``reset_at`` no longer count.
BreakerTable = sa.Table(
    "breakers",
    metadata,
    sa.Column("remedy", sa.String(FINGERPRINT_LEN), primary_key=True),
    sa.Column("tripped_at", UTCDateTime(), nullable=True),
    sa.Column("failures", sa.Integer(), nullable=False),
    sa.Column("reset_at", UTCDateTime(), nullable=True),
    sa.Column("reset_by", sa.String(NAME_LEN), nullable=True),
    sa.Column("paged_at", UTCDateTime(), nullable=True),  # a person was told it tripped
)

# The kill switch: ``*`` stops every automatic action fleet-wide, a remedy key one remedy.
FleetPauseTable = sa.Table(
    "fleet_pauses",
    metadata,
    sa.Column("target", sa.String(FINGERPRINT_LEN), primary_key=True),
    sa.Column("paused_by", sa.String(NAME_LEN), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
)

# One incident for the whole fleet (systemic: one fingerprint on too many hosts);
# ``open_key`` (the fingerprint while open) makes it one, whichever replica sees it.
FleetIncidentTable = sa.Table(
    "fleet_incidents",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("fingerprint", sa.String(FINGERPRINT_LEN), index=True, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("open_key", sa.String(FINGERPRINT_LEN), unique=True, nullable=True),
    sa.Column("hosts", sa.Integer(), nullable=False),
    sa.Column("reporting", sa.Integer(), nullable=False),
    sa.Column("opened_at", UTCDateTime(), nullable=False),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
    sa.Column("resolved_by", sa.String(NAME_LEN), nullable=True),
    sa.Column("paged_at", UTCDateTime(), nullable=True),  # the one page went out
)

# What agents learn through ``/events``: for one host, or every host (``host_id`` NULL).
# Ids are the cursors; they are written one at a time, so they commit in order.
EventTable = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("host_id", sa.String(HOST_LEN), nullable=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), index=True, nullable=False),
    sa.Index("ix_events_host_id", "host_id", "id"),
)
