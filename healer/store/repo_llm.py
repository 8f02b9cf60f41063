"""LLM answers: written by whichever process asked the LLM, taken up by the root agent."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from healer.models import Incident, IncidentStatus
from healer.store.repo_base import RepoBase
from healer.store.repo_journal import _incident
from healer.store.rows import LLMAnswerRow
from healer.store.tables import IncidentTable, LlmAnswerTable


def _answer(r: sa.Row[Any]) -> LLMAnswerRow:
    return LLMAnswerRow(id=r.id, incident_id=r.incident_id, model=r.model,
                        prompt_version=r.prompt_version, answer=r.answer, failure=r.failure,
                        cached=r.cached, calls=r.calls, tokens=r.tokens,
                        created_at=r.created_at, taken_at=r.taken_at)


class LLMRepo(RepoBase):
    """LLM-answer methods of the Repository."""

    def incidents_awaiting_llm(self, model: str, prompt_version: str, *,
                               asking: Collection[str], known: Collection[str],
                               limit: int = 50, every_host: bool = False) -> list[Incident]:
        """Open incidents of this host (or, on a control plane, of every host) that want an
        LLM's answer and have none yet from ``model`` with ``prompt_version``, oldest
        first. An incident wants one when its playbook is in ``asking``, or is none of the
        ``known`` playbooks (unclassified)."""
        answered = sa.exists().where(LlmAnswerTable.c.incident_id == IncidentTable.c.id,
                                     LlmAnswerTable.c.model == model,
                                     LlmAnswerTable.c.prompt_version == prompt_version)
        mine = sa.true() if every_host else IncidentTable.c.host_id == self.host_id
        q = sa.select(IncidentTable).where(
            mine,
            IncidentTable.c.status == IncidentStatus.OPEN.value,
            sa.or_(IncidentTable.c.playbook.in_(list(asking)),
                   IncidentTable.c.playbook.not_in(list(known))),
            ~answered,
        ).order_by(IncidentTable.c.id).limit(limit)
        with self._tx(write=False) as s:
            return [_incident(r) for r in s.execute(q)]

    def fleet_fingerprint_of(self, incident_id: int) -> str:
        """An incident's fleet fingerprint ("" when it has none)."""
        q = sa.select(IncidentTable.c.fleet_fingerprint).where(IncidentTable.c.id == incident_id)
        with self._tx(write=False) as s:
            return str(s.scalar(q) or "")

    def add_llm_answer(self, incident_id: int, model: str, prompt_version: str, *,
                       answer: dict[str, Any] | None, failure: str | None, cached: bool,
                       calls: int = 0, tokens: int = 0) -> bool:
        """Record an answer; False when one for this incident, model and prompt version
        is already there (another process answered first)."""
        row = {"host_id": self.host_id, "incident_id": incident_id, "model": model,
               "prompt_version": prompt_version, "answer": answer,
               "failure": None if failure is None else failure[:64], "cached": cached,
               "calls": calls, "tokens": tokens, "created_at": self.now(), "taken_at": None}
        with self._tx() as s:
            return self._insert_ignore(s, LlmAnswerTable, [row],
                                       ("incident_id", "model", "prompt_version")) == 1

    def untaken_llm_answers(self, limit: int = 20) -> list[LLMAnswerRow]:
        """Answers the root agent has not taken up yet, oldest first."""
        q = sa.select(LlmAnswerTable).where(
            LlmAnswerTable.c.host_id == self.host_id, LlmAnswerTable.c.taken_at.is_(None),
        ).order_by(LlmAnswerTable.c.id).limit(limit)
        with self._tx(write=False) as s:
            return [_answer(r) for r in s.execute(q)]

    def mark_llm_answer_taken(self, answer_id: int, at: datetime) -> None:
        """The root agent took this answer up."""
        with self._tx() as s:
            s.execute(sa.update(LlmAnswerTable).where(
                LlmAnswerTable.c.id == answer_id, LlmAnswerTable.c.host_id == self.host_id,
            ).values(taken_at=at))

    def taken_llm_answer(self, incident_id: int) -> LLMAnswerRow | None:
        """The newest answer about ``incident_id`` that the root agent took up."""
        q = sa.select(LlmAnswerTable).where(
            LlmAnswerTable.c.host_id == self.host_id, LlmAnswerTable.c.incident_id == incident_id,
            LlmAnswerTable.c.taken_at.is_not(None),
        ).order_by(LlmAnswerTable.c.id.desc()).limit(1)
        with self._tx(write=False) as s:
            row = s.execute(q).first()
            return None if row is None else _answer(row)
