"""The fleet's LLM answers, handed to the agents whose incidents asked for them.

The LLM job (healer.diagnose.pending, ``fleet=True``) answers each fleet fingerprint
once and records the answer for every incident that shares it; this job turns each
such record into a ``diagnosis`` event for the incident's host. The agent treats it as
untrusted input: it recomputes provenance and ``in_playbook`` and guards every proposal.
"""

from __future__ import annotations

from healer.store.repository import Repository

BATCH = 100


def deliver_answers(repo: Repository) -> int:
    """Send every untaken answer to its incident's host; returns how many went out."""
    return sum(repo.deliver_diagnosis(row) for row in repo.untaken_llm_answers(limit=BATCH))
