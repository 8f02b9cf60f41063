"""LLM answers: what an LLM said about an incident, waiting for the root agent.

The LLM client may run in another, unprivileged process: it writes its answer here, and
the root agent takes it up (``taken_at``), re-checking every proposal itself. The cache,
the one call in flight per fingerprint and the hourly budget live in ``kv``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TS = sa.DateTime(timezone=True)

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "llm_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("host_id", sa.String(length=253), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("prompt_version", sa.String(length=64), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("failure", sa.String(length=64), nullable=True),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("taken_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_llm_answers_incident_id_incidents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_answers")),
        sa.UniqueConstraint("incident_id", "model", "prompt_version",
                            name=op.f("uq_llm_answers_incident_id_model_prompt_version")),
    )
    op.create_index("ix_llm_answers_host_taken", "llm_answers", ["host_id", "taken_at"],
                    unique=False)


def downgrade() -> None:
    op.drop_index("ix_llm_answers_host_taken", table_name="llm_answers")
    op.drop_table("llm_answers")
