"""The journal's seal: every action row carries its write's sequence number and HMAC, and
an append-only log numbers every sealed write (healer.store.seal).

Rows written before this revision have no seal; the root agent seals them once, at its
first start with a key, and audits that (healer.act.seal).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    op.create_table(
        "journal_log",
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("row_mac", sa.String(length=64), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("host_id", "seq", name=op.f("pk_journal_log")),
    )
    op.create_index("ix_journal_log_action", "journal_log", ["host_id", "action_id", "seq"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_journal_log_action", table_name="journal_log")
    op.drop_table("journal_log")
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("mac")
        batch.drop_column("seq")
