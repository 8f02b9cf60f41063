"""Initial schema: every table healer keeps, created explicitly.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Timestamps are UTC; healer.store.tables.UTCDateTime adds the zone back on SQLite.
TS = sa.DateTime(timezone=True)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=4200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    op.create_index(op.f("ix_audit_at"), "audit", ["at"], unique=False)
    op.create_index(op.f("ix_audit_subject"), "audit", ["subject"], unique=False)

    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("playbook", sa.String(length=200), nullable=False),
        sa.Column("scope", sa.String(length=1024), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("diagnosis", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(
        "ix_incidents_fingerprint",
        "incidents",
        ["host_id", "playbook", "scope", "status"],
        unique=False,
    )

    op.create_table(
        "kv",
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("namespace", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("host_id", "namespace", "key", name=op.f("pk_kv")),
    )
    op.create_index(op.f("ix_kv_expires_at"), "kv", ["expires_at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=512), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("dead", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint(
            "host_id", "channel", "dedupe_key", name=op.f("uq_outbox_host_id_channel_dedupe_key")
        ),
    )
    op.create_index(
        "ix_outbox_due", "outbox", ["host_id", "delivered_at", "dead", "next_attempt"], unique=False
    )

    op.create_table(
        "paused_targets",
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("target", sa.String(length=4200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.PrimaryKeyConstraint("host_id", "target", name=op.f("pk_paused_targets")),
    )
    op.create_table(
        "raw_samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_samples")),
        sa.UniqueConstraint("host_id", "name", "ts", name=op.f("uq_raw_samples_host_id_name_ts")),
    )
    op.create_index(op.f("ix_raw_samples_ts"), "raw_samples", ["ts"], unique=False)

    op.create_table(
        "rollups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("minute", TS, nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("avg", sa.Double(), nullable=False),
        sa.Column("last", sa.Double(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollups")),
        sa.UniqueConstraint(
            "host_id", "name", "minute", name=op.f("uq_rollups_host_id_name_minute")
        ),
    )
    op.create_index(op.f("ix_rollups_minute"), "rollups", ["minute"], unique=False)

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=512), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("slack_user_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
        sa.UniqueConstraint("slack_user_id", name=op.f("uq_users_slack_user_id")),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=4200), nullable=False),
        sa.Column("action", sa.JSON(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("provenance", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("original", sa.Text(), nullable=True),
        sa.Column("applied", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("applied_at", TS, nullable=True),
        sa.Column("deadline", TS, nullable=True),
        sa.Column("verification", sa.JSON(), nullable=True),
        sa.Column("approvals_needed", sa.Integer(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"], ["incidents.id"], name=op.f("fk_actions_incident_id_incidents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
    )
    op.create_index(op.f("ix_actions_applied_at"), "actions", ["applied_at"], unique=False)
    op.create_index("ix_actions_host_state", "actions", ["host_id", "state"], unique=False)
    op.create_index(op.f("ix_actions_incident_id"), "actions", ["incident_id"], unique=False)
    op.create_index(op.f("ix_actions_target"), "actions", ["target"], unique=False)

    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("approve", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"], ["actions.id"], name=op.f("fk_approvals_action_id_actions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint("action_id", "user", name=op.f("uq_approvals_action_id_user")),
    )


def downgrade() -> None:
    op.drop_table("approvals")
    op.drop_index(op.f("ix_actions_target"), table_name="actions")
    op.drop_index(op.f("ix_actions_incident_id"), table_name="actions")
    op.drop_index("ix_actions_host_state", table_name="actions")
    op.drop_index(op.f("ix_actions_applied_at"), table_name="actions")

    op.drop_table("actions")
    op.drop_table("users")
    op.drop_table("tokens")
    op.drop_index(op.f("ix_rollups_minute"), table_name="rollups")

    op.drop_table("rollups")
    op.drop_index(op.f("ix_raw_samples_ts"), table_name="raw_samples")

    op.drop_table("raw_samples")
    op.drop_table("paused_targets")
    op.drop_index("ix_outbox_due", table_name="outbox")

    op.drop_table("outbox")
    op.drop_index(op.f("ix_kv_expires_at"), table_name="kv")

    op.drop_table("kv")
    op.drop_index("ix_incidents_fingerprint", table_name="incidents")

    op.drop_table("incidents")
    op.drop_index(op.f("ix_audit_subject"), table_name="audit")
    op.drop_index(op.f("ix_audit_at"), table_name="audit")

    op.drop_table("audit")
