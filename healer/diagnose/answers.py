"""The root agent's half of the LLM path: take up the answers ``healer serve`` stored, and
the fleet's answers the control plane relays.

The LLM job (healer.diagnose.pending) runs in the unprivileged process and writes what the
LLM answered as records. The agent reads them here, validates them again, joins them to
the playbook's diagnosis (a covered case keeps its playbook answer; a disagreeing LLM is a
second opinion), and hands every proposal to the change engine, whose guard decides it
like any other. Nothing here talks to the LLM, so the agent never loads its client.

In a fleet, the control plane asks the LLM once per fleet fingerprint and relays the
answer to every host with that incident (``FleetAnswers``). It is the same untrusted
input: validated again, provenance ``llm`` and ``in_playbook`` recomputed here against
this host's playbook diagnosis (healer.diagnose.opinion), so it is never automatic
outside the playbook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from healer.diagnose.base import unknown
from healer.diagnose.opinion import combine, llm_proposals
from healer.diagnose.schema import LLMResult
from healer.logs import logfmt
from healer.models import Diagnosis, Incident, IncidentStatus, Proposal
from healer.store.repository import Repository
from healer.store.rows import LLMAnswerRow
from playbooks.loader import Library
from playbooks.schema import Playbook

log = logging.getLogger("healer.diagnose.answers")

Propose = Callable[[Incident, Proposal, Playbook | None], object]  # ChangeEngine.propose


FLEET_ANSWER_WAITS = timedelta(minutes=10)  # for the playbook's diagnosis to land first


def validated(raw: dict[str, Any]) -> tuple[Diagnosis, str | None]:
    """An answer's JSON (``LLMResult``) as the LLM's diagnosis and its failure reason."""
    try:
        result = LLMResult.model_validate(raw)
    except ValidationError:
        return unknown("the LLM's answer record does not validate", "llm"), "invalid"
    return Diagnosis(root_cause=result.root_cause, explanation=result.explanation,
                     confidence=result.confidence, source="llm",
                     proposals=result.proposals), None


def stored_answer(row: LLMAnswerRow) -> tuple[Diagnosis, str | None]:
    """An answer record as the LLM's diagnosis and its failure reason, validated again."""
    if row.answer is None:
        reason = row.failure or "none"
        return unknown(f"LLM gave no diagnosis ({reason})", "llm"), reason
    return validated(row.answer)


def rejoin(repo: Repository, incident_id: int, base: Diagnosis) -> Diagnosis:
    """A new playbook diagnosis of ``incident_id`` with the LLM's answer already taken up."""
    row = repo.taken_llm_answer(incident_id)
    if row is None:
        return base
    answer, failure = stored_answer(row)
    return combine(base, answer, model=row.model, failure=failure)


def join(repo: Repository, library: Library, propose: Propose, incident: Incident,
         answer: Diagnosis, *, model: str, failure: str | None) -> None:
    """Join the LLM's ``answer`` to ``incident``'s diagnosis and journal its proposals
    through ``propose`` (the change engine: the guard decides each)."""
    assert incident.id is not None
    combined = combine(incident.diagnosis or unknown("no diagnosis"), answer,
                       model=model, failure=failure)
    repo.set_diagnosis(incident.id, combined)
    log.info(logfmt(msg=f"llm answer taken up: {answer.root_cause}", incident=incident.id,
                    source=combined.source, failure=failure))
    if incident.status == IncidentStatus.OPEN:  # a resolved incident needs no change
        playbook = library.get(incident.playbook)
        for proposal in llm_proposals(combined):
            propose(incident, proposal, playbook)


def take_up_answers(repo: Repository, library: Library, propose: Propose,
                    limit: int = 20) -> int:
    """Join the LLM's stored answers to their incidents' diagnoses and journal its proposals
    through ``propose``. Returns answers taken."""
    taken = 0
    for row in repo.untaken_llm_answers(limit):
        incident = repo.get_incident(row.incident_id)
        if incident is not None and incident.diagnosis is None:
            continue  # the playbook's diagnosis lands first; the answer waits for it
        repo.mark_llm_answer_taken(row.id, repo.now())
        if incident is None or incident.id is None:
            continue
        answer, failure = stored_answer(row)
        join(repo, library, propose, incident, answer, model=row.model, failure=failure)
        taken += 1
    return taken


@dataclass(frozen=True)
class _Relayed:
    fingerprint: str
    answer: dict[str, Any]
    model: str
    until: datetime


@dataclass
class FleetAnswers:
    """The fleet's LLM answers, waiting to be joined to this host's open incidents with
    their fleet fingerprint (each incident takes one LLM answer, local or relayed)."""

    _waiting: list[_Relayed] = field(default_factory=list)

    def add(self, fingerprint: str, answer: dict[str, Any], model: str, now: datetime) -> None:
        """Keep a relayed answer until its incidents are diagnosed by their playbook."""
        self._waiting.append(_Relayed(fingerprint, answer, model, now + FLEET_ANSWER_WAITS))

    def take_up(self, repo: Repository, library: Library, propose: Propose,
                now: datetime) -> int:
        """Join every answer whose incidents are ready; returns incidents that took one."""
        if not self._waiting:
            return 0
        open_incidents = list(repo.iter_incidents(IncidentStatus.OPEN))
        taken, still = 0, []
        for relayed in self._waiting:
            mine = [i for i in open_incidents if i.fleet_fingerprint == relayed.fingerprint]
            if any(i.diagnosis is None for i in mine) and now < relayed.until:
                still.append(relayed)  # the playbook's diagnosis lands first
                continue
            answer, failure = validated(relayed.answer)
            for incident in mine:
                diag = incident.diagnosis
                if diag is not None and (diag.source == "llm" or diag.second_opinion):
                    continue  # it already has an LLM's answer
                join(repo, library, propose, incident, answer, model=relayed.model,
                     failure=failure)
                taken += 1
        self._waiting = still
        return taken
