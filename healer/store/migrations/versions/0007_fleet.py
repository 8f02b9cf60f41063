"""The fleet: hosts and their reports, leases, rollouts, breakers, the pause, fleet
incidents and the events agents long-poll; incidents and action records mirrored from
agents (their own ids, an action's transitions), alerts' incidents, fleet fingerprints.

A control plane runs it on PostgreSQL; a single host's SQLite gets the same tables,
empty. Unique indexes rather than constraints on the existing tables: SQLite would have
to copy them to add a constraint.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)
HOST = sa.String(length=253)
KEY = sa.String(length=600)

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _mirrors()
    op.create_table(
        "hosts",
        sa.Column("host_id", HOST, nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("agent_version", sa.String(length=32), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("last_heartbeat_at", TS, nullable=True),
        sa.Column("clock_skew_seconds", sa.Double(), nullable=True),
        sa.Column("open_incidents", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("reported_seq", sa.BigInteger(), nullable=False),
        sa.Column("applied_seq", sa.BigInteger(), nullable=False),
        sa.Column("sample", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["tokens.id"],
                                name=op.f("fk_hosts_token_id_tokens"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_hosts")),
    )
    op.create_index(op.f("ix_hosts_token_id"), "hosts", ["token_id"], unique=False)
    op.create_index(op.f("ix_hosts_last_heartbeat_at"), "hosts", ["last_heartbeat_at"],
                    unique=False)
    op.create_table(
        "reports",
        sa.Column("host_id", HOST, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("host_id", "seq", name=op.f("pk_reports")),
    )
    op.create_index(op.f("ix_reports_received_at"), "reports", ["received_at"], unique=False)
    _coordination()
    _events()


def _mirrors() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("fleet_fingerprint", KEY, server_default="",
                                   nullable=False))
        batch.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("alert_key", sa.String(length=200), nullable=True))
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("transitions", sa.JSON(), nullable=True))
    op.create_index("ux_incidents_host_source", "incidents", ["host_id", "source_id"],
                    unique=True)
    op.create_index("ux_incidents_host_alert", "incidents", ["host_id", "alert_key"],
                    unique=True)
    op.create_index("ix_incidents_fleet", "incidents", ["fleet_fingerprint", "status"],
                    unique=False)
    op.create_index("ux_actions_host_source", "actions", ["host_id", "source_id"], unique=True)


def _coordination() -> None:
    op.create_table(
        "leases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("remedy", KEY, nullable=False),
        sa.Column("host_id", HOST, nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint", KEY, nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=32), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("live_key", sa.String(length=1024), nullable=True),
        sa.Column("ttl_seconds", sa.Double(), nullable=False),
        sa.Column("granted_at", TS, nullable=False),
        sa.Column("renewed_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("released_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leases")),
        sa.UniqueConstraint("live_key", name=op.f("uq_leases_live_key")),
    )
    op.create_index(op.f("ix_leases_host_id"), "leases", ["host_id"], unique=False)
    op.create_index("ix_leases_remedy_state", "leases", ["remedy", "state"], unique=False)
    op.create_index("ix_leases_state_expires", "leases", ["state", "expires_at"], unique=False)
    op.create_index("ix_leases_remedy_outcome", "leases", ["remedy", "outcome", "released_at"],
                    unique=False)
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("remedy", KEY, nullable=False),
        sa.Column("fingerprint", KEY, nullable=False),
        sa.Column("live_key", KEY, nullable=True),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollouts")),
        sa.UniqueConstraint("live_key", name=op.f("uq_rollouts_live_key")),
    )
    op.create_index(op.f("ix_rollouts_remedy"), "rollouts", ["remedy"], unique=False)
    op.create_table(
        "breakers",
        sa.Column("remedy", KEY, nullable=False),
        sa.Column("tripped_at", TS, nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("reset_at", TS, nullable=True),
        sa.Column("reset_by", sa.String(length=200), nullable=True),
        sa.Column("paged_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("remedy", name=op.f("pk_breakers")),
    )
    op.create_table(
        "fleet_pauses",
        sa.Column("target", KEY, nullable=False),
        sa.Column("paused_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("target", name=op.f("pk_fleet_pauses")),
    )
    op.create_table(
        "fleet_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", KEY, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("open_key", KEY, nullable=True),
        sa.Column("hosts", sa.Integer(), nullable=False),
        sa.Column("reporting", sa.Integer(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("paged_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_incidents")),
        sa.UniqueConstraint("open_key", name=op.f("uq_fleet_incidents_open_key")),
    )
    op.create_index(op.f("ix_fleet_incidents_fingerprint"), "fleet_incidents", ["fingerprint"],
                    unique=False)


def _events() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("host_id", HOST, nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_host_id", "events", ["host_id", "id"], unique=False)
    op.create_index(op.f("ix_events_created_at"), "events", ["created_at"], unique=False)


def downgrade() -> None:
    for table in ("events", "fleet_incidents", "fleet_pauses", "breakers", "rollouts",
                  "leases", "reports", "hosts"):
        op.drop_table(table)  # their indexes go with them
    op.drop_index("ux_actions_host_source", table_name="actions")
    op.drop_index("ix_incidents_fleet", table_name="incidents")
    op.drop_index("ux_incidents_host_alert", table_name="incidents")
    op.drop_index("ux_incidents_host_source", table_name="incidents")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("transitions")
        batch.drop_column("source_id")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("alert_key")
        batch.drop_column("source_id")
        batch.drop_column("fleet_fingerprint")
