"""The fleet agent's side: its report outbox, and votes relayed by the control plane.

``fleet_reports`` keeps the agent's reports (incident changes, journal transitions,
samples) until the control plane acks them; ``approvals.origin`` tells a vote of a local
user from one the control plane relayed (docs/fleet-protocol.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fleet_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_reports")),
        sa.UniqueConstraint("host_id", "seq", name=op.f("uq_fleet_reports_host_id_seq")),
    )
    op.create_index("ix_fleet_reports_subject", "fleet_reports", ["host_id", "subject"],
                    unique=False)
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=16), server_default="local",
                                   nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("origin")
    op.drop_index("ix_fleet_reports_subject", table_name="fleet_reports")
    op.drop_table("fleet_reports")
