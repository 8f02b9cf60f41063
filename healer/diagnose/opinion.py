"""How an LLM's answer joins a playbook's diagnosis: beside it, never instead of it.

- No playbook matched (an unclassified kernel message): the LLM's answer, when it gives one,
  is the diagnosis (source ``llm``), its root cause a known id or the model's own slug.
- A playbook matched: its diagnosis and its remedies stand, whatever the LLM says and
  however sure it is. The LLM's answer is a second opinion shown beside it.
- Every LLM proposal keeps provenance ``llm``. It is ``in_playbook`` only when the LLM
  agrees with the playbook and the proposal's target is one of the playbook's own remedies;
  everything else waits for a person (guardrails rule V-outside-playbook), in auto mode too.

The root agent computes all of this itself from the playbook's diagnosis it stored: an
answer record never carries a flag that decides anything.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from healer.diagnose.base import UNKNOWN, unknown
from healer.models import Diagnosis, Opinion, Proposal

CONFIDENT = 0.6  # below this a playbook's answer is a guess: the LLM is asked beside it


def asks_llm(playbook: Any) -> bool:
    """Whether an incident of ``playbook`` (None: no playbook matched) wants an LLM's answer:
    no playbook, a playbook less sure than ``CONFIDENT``, or one asking for a second opinion."""
    if playbook is None:
        return True
    return bool(playbook.confidence < CONFIDENT or getattr(playbook, "second_opinion", False))


def asking_playbooks(playbooks: Iterable[Any]) -> frozenset[str]:
    """The ids of the playbooks whose incidents want an LLM's answer beside theirs."""
    return frozenset(pb.id for pb in playbooks if asks_llm(pb))


def combine(base: Diagnosis, llm: Diagnosis, *, model: str = "",
            failure: str | None = None) -> Diagnosis:
    """The playbook's diagnosis ``base`` with the LLM's answer ``llm`` joined to it."""
    if base.source == "llm":  # an earlier LLM answer stood in for no playbook
        base = unknown("no playbook matched")
    answered = failure is None and llm.root_cause != UNKNOWN
    if base.root_cause == UNKNOWN and answered:
        return Diagnosis(root_cause=llm.root_cause, explanation=llm.explanation,
                         confidence=llm.confidence, source="llm",
                         proposals=_tag(llm.proposals, ()))
    agrees = answered and llm.root_cause == base.root_cause
    remedies = {p.action.target for p in base.proposals} if agrees else set()
    opinion = Opinion(root_cause=llm.root_cause, explanation=llm.explanation[:4000],
                      confidence=llm.confidence, agrees=agrees, model=model[:200],
                      failure=failure, proposals=_tag(llm.proposals, remedies) if answered
                      else ())
    return base.model_copy(update={"second_opinion": opinion})


def llm_proposals(diagnosis: Diagnosis) -> tuple[Proposal, ...]:
    """The LLM's proposals in a combined diagnosis: its own, or its second opinion's."""
    if diagnosis.source == "llm":
        return diagnosis.proposals
    return diagnosis.second_opinion.proposals if diagnosis.second_opinion else ()


def all_proposals(diagnosis: Diagnosis) -> tuple[Proposal, ...]:
    """Every proposal of a combined diagnosis: its own, then its second opinion's."""
    opinion = diagnosis.second_opinion
    return diagnosis.proposals + (opinion.proposals if opinion else ())


def _tag(proposals: Iterable[Proposal], remedies: Collection[str]) -> tuple[Proposal, ...]:
    return tuple(p.model_copy(update={"provenance": "llm",
                                      "in_playbook": p.action.target in remedies})
                 for p in proposals)
