"""The root agent's half of the LLM path: take up the answers ``healer serve`` stored.

The LLM job (healer.diagnose.pending) runs in the unprivileged process and writes what the
LLM answered as records. The agent reads them here, validates them again, joins them to
the playbook's diagnosis (a covered case keeps its playbook answer; a disagreeing LLM is a
second opinion), and hands every proposal to the change engine, whose guard decides it
like any other. Nothing here talks to the LLM, so the agent never loads its client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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


def stored_answer(row: LLMAnswerRow) -> tuple[Diagnosis, str | None]:
    """An answer record as the LLM's diagnosis and its failure reason, validated again."""
    if row.answer is None:
        reason = row.failure or "none"
        return unknown(f"LLM gave no diagnosis ({reason})", "llm"), reason
    try:
        result = LLMResult.model_validate(row.answer)
    except ValidationError:
        return unknown("the LLM's answer record does not validate", "llm"), "invalid"
    return Diagnosis(root_cause=result.root_cause, explanation=result.explanation,
                     confidence=result.confidence, source="llm",
                     proposals=result.proposals), None


def rejoin(repo: Repository, incident_id: int, base: Diagnosis) -> Diagnosis:
    """A new playbook diagnosis of ``incident_id`` with the LLM's answer already taken up."""
    row = repo.taken_llm_answer(incident_id)
    if row is None:
        return base
    answer, failure = stored_answer(row)
    return combine(base, answer, model=row.model, failure=failure)


def take_up_answers(repo: Repository, library: Library, propose: Propose,
                    limit: int = 20) -> int:
    """Join the LLM's stored answers to their incidents' diagnoses and journal its proposals
    through ``propose`` (the change engine: the guard decides each). Returns answers taken."""
    taken = 0
    for row in repo.untaken_llm_answers(limit):
        incident = repo.get_incident(row.incident_id)
        if incident is not None and incident.diagnosis is None:
            continue  # the playbook's diagnosis lands first; the answer waits for it
        repo.mark_llm_answer_taken(row.id, repo.now())
        if incident is None or incident.id is None:
            continue
        answer, failure = stored_answer(row)
        combined = combine(incident.diagnosis or unknown("no diagnosis"), answer,
                           model=row.model, failure=failure)
        repo.set_diagnosis(incident.id, combined)
        log.info(logfmt(msg=f"llm answer taken up: {answer.root_cause}", incident=incident.id,
                    source=combined.source, failure=failure))
        if incident.status == IncidentStatus.OPEN:  # a resolved incident needs no change
            playbook = library.get(incident.playbook)
            for proposal in llm_proposals(combined):
                propose(incident, proposal, playbook)
        taken += 1
    return taken
