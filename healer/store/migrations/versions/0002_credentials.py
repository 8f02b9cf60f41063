"""Credentials: tokens owned by users, with expiry and revocation; server-side sessions;
votes tied to user ids.

Existing votes are tied to the user of the same name; a vote whose name matches no user
(a token's name, ``local-admin``) keeps no user id and so no longer counts. Existing
people-role tokens have no owner, and human tokens must belong to a user now: they are
revoked here (``healer token list`` shows them) and must be created again with ``--user``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)
HUMAN_ROLES = ("viewer", "approver", "admin")

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("expires_at", TS, nullable=True))
        batch.add_column(sa.Column("revoked_at", TS, nullable=True))
        batch.create_foreign_key(op.f("fk_tokens_user_id_users"), "users", ["user_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index(op.f("ix_tokens_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_approvals_user_id_users"), "users", ["user_id"],
                                 ["id"], ondelete="SET NULL")
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("id_hash", name=op.f("uq_sessions_id_hash")),
    )
    op.create_index(op.f("ix_sessions_expires_at"), "sessions", ["expires_at"], unique=False)
    op.create_index(op.f("ix_sessions_user_id"), "sessions", ["user_id"], unique=False)
    _backfill()


def _backfill() -> None:
    approvals = sa.table("approvals", sa.column("user", sa.String), sa.column("user_id"))
    users = sa.table("users", sa.column("id"), sa.column("name", sa.String))
    owner = sa.select(users.c.id).where(users.c.name == approvals.c.user).scalar_subquery()
    op.execute(approvals.update().values(user_id=owner))
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":  # tables.UTCDateTime stores naive UTC there
        now = now.replace(tzinfo=None)
    tokens = sa.table("tokens", sa.column("user_id"), sa.column("role", sa.String),
                      sa.column("revoked_at", TS))
    op.execute(tokens.update()
               .where(tokens.c.user_id.is_(None), tokens.c.role.in_(HUMAN_ROLES))
               .values(revoked_at=now))


def downgrade() -> None:
    op.drop_index(op.f("ix_sessions_user_id"), table_name="sessions")
    op.drop_index(op.f("ix_sessions_expires_at"), table_name="sessions")
    op.drop_table("sessions")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_constraint(op.f("fk_approvals_user_id_users"), type_="foreignkey")
        batch.drop_column("user_id")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_index(op.f("ix_tokens_user_id"))
        batch.drop_constraint(op.f("fk_tokens_user_id_users"), type_="foreignkey")
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
        batch.drop_column("user_id")
