"""Unclassified incidents and silences: incidents gain a subject; operators' silences.

An incident's identity becomes playbook + scope + subject: the subject is the device,
interface or binary a playbook names, or the message template of an unclassified kernel
line. A silence marks one such template harmless until it expires.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("subject", sa.String(length=512), nullable=False,
                                   server_default=""))
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("template", sa.String(length=512), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
    )
    op.create_index("ix_silences_host_expires", "silences", ["host_id", "expires_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_silences_host_expires", table_name="silences")
    op.drop_table("silences")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("subject")
