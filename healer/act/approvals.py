"""Approving and rejecting proposals: one implementation for the web, Slack and the CLI.

A vote is a database record. One "reject" rejects the proposal; it is approved when
``needed`` distinct people have approved (``approve`` = 1, ``quorum:N`` = N). The engine
re-checks the guard (with the recorded approvers) before applying, and expires stale
requests itself; this module only refuses votes once the TTL has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from guardrails.policy import approvals_needed
from healer.errors import HealerError
from healer.models import ActionRecord, ActionState
from healer.store.errors import StaleState
from healer.store.repository import Repository
from healer.store.rows import ApprovalRow


class VoteRefused(HealerError):
    """The vote cannot be taken: ``status`` 404 (no such action) or 409 (not awaiting)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def needed(record: ActionRecord) -> int:
    """Distinct approvals this record needs (at least one)."""
    if record.approvals_needed > 0:
        return record.approvals_needed
    try:
        n = approvals_needed(record.decision.approval or "approve")
    except ValueError:
        n = 1
    return max(1, n or 1)


def expires_at(record: ActionRecord, ttl_seconds: float) -> datetime | None:
    """When an awaiting request lapses: created + TTL, as the engine's expiry counts it."""
    if record.state != ActionState.AWAITING_APPROVAL:
        return None
    return record.created_at + timedelta(seconds=ttl_seconds)


@dataclass(frozen=True)
class VoteResult:
    record: ActionRecord
    votes: list[ApprovalRow]
    decided: bool  # True when this vote moved the record out of awaiting_approval


def cast_vote(repo: Repository, action_id: int, user: str, approve: bool, comment: str, *,
              now: datetime, ttl_seconds: float, via: str = "web") -> VoteResult:
    """Record ``user``'s vote and, when it decides the request, move the record."""
    record = repo.get_action(action_id)
    if record is None:
        raise VoteRefused(404, f"no action {action_id}")
    if record.state != ActionState.AWAITING_APPROVAL:
        raise VoteRefused(409, f"action {action_id} is {record.state.value}, not awaiting approval")
    deadline = expires_at(record, ttl_seconds)
    if deadline is not None and now >= deadline:
        raise VoteRefused(409, f"action {action_id}: the approval request has expired")
    votes = repo.add_approval(action_id, user, approve, comment)
    approvers = {v.user for v in votes if v.approve}
    target: ActionState | None = None
    if not approve:
        target = ActionState.REJECTED
    elif len(approvers) >= needed(record):
        target = ActionState.APPROVED
    if target is None:
        return VoteResult(record, votes, decided=False)
    note = f"{'approved' if approve else 'rejected'} via {via}: {comment}".strip()
    try:
        record = repo.transition(action_id, target, expect={ActionState.AWAITING_APPROVAL},
                                 actor=user, comment=note[:2000])
    except StaleState as exc:  # the engine expired it, or another vote decided it first
        raise VoteRefused(409, str(exc)) from exc
    return VoteResult(record, votes, decided=True)
