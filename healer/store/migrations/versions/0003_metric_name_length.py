"""Metric names up to 600 characters on PostgreSQL (deep cgroup paths, textfile labels).

SQLite does not enforce VARCHAR lengths, so its tables are left as they are (rebuilding a
large rollups table would cost minutes for nothing). On PostgreSQL widening a VARCHAR
changes only the catalog: no table rewrite, no index rebuild.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("rollups", "raw_samples")
OLD, NEW = sa.String(length=200), sa.String(length=600)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.alter_column(table, "name", type_=NEW, existing_type=OLD, existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.alter_column(table, "name", type_=OLD, existing_type=NEW, existing_nullable=False)
