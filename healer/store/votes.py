"""Votes on proposals: recorded by the web, Slack and the CLI; counted by the root agent.

A vote is a row, never a state change. ``record_vote`` checks that the request is still
open and that the voter is a user with the approver role, and stores one vote per user
(a re-vote replaces theirs). The change engine (root) moves ``awaiting_approval`` to
``approved`` or ``rejected`` on its next cycle with ``decide``: only votes of users who
still exist and still hold the approver role count, one counting rejection rejects, and
``needed`` distinct counting users approve. At apply time the engine passes
``tally(...).approvers`` to the guard again, so a user removed or demoted in between no
longer counts there either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from guardrails.policy import approvals_needed
from healer.errors import HealerError
from healer.models import ActionRecord, ActionState
from healer.store.credentials import role_at_least
from healer.store.errors import NotFound, StaleState
from healer.store.repository import Repository
from healer.store.rows import ApprovalRow, UserRow

VOTER_ROLE = "approver"


class VoteRefused(HealerError):
    """The vote cannot be taken: ``status`` 403 (not an approver), 404 (no such action)
    or 409 (not awaiting, or expired)."""

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
    record: ActionRecord  # as it stands after the vote (the engine decides on its next cycle)
    votes: list[ApprovalRow]


def record_vote(repo: Repository, action_id: int, user: str, approve: bool, comment: str, *,
                now: datetime, ttl_seconds: float, via: str) -> VoteResult:
    """Record ``user``'s vote on an awaiting request; raises VoteRefused."""
    voter = repo.get_user(user)
    if voter is None or not role_at_least(voter.role, VOTER_ROLE):
        raise VoteRefused(403, f"{user!r} is not a healer user with the {VOTER_ROLE} role")
    record = repo.get_action(action_id)
    if record is None:
        raise VoteRefused(404, f"no action {action_id}")
    if record.state != ActionState.AWAITING_APPROVAL:
        raise VoteRefused(409, f"action {action_id} is {record.state.value}, not awaiting approval")
    deadline = expires_at(record, ttl_seconds)
    if deadline is not None and now >= deadline:
        raise VoteRefused(409, f"action {action_id}: the approval request has expired")
    try:
        votes = repo.add_approval(action_id, voter.name, approve, comment, via=via)
    except StaleState as exc:  # the engine decided or expired it in between
        raise VoteRefused(409, str(exc)) from exc
    except NotFound as exc:  # the user was removed in between
        raise VoteRefused(403, str(exc)) from exc
    return VoteResult(repo.get_action(action_id) or record, votes)


@dataclass(frozen=True)
class Tally:
    approvers: tuple[str, ...]  # distinct counting users, by name
    rejecters: tuple[str, ...]


def tally(votes: Sequence[ApprovalRow], users: Mapping[int, UserRow]) -> Tally:
    """The votes that count: by users who exist now and hold the approver role now, and
    the control plane's (``fleet:<user>``: it authenticated them as approvers; the trust
    the fleet protocol gives it, which the guard's re-check at apply time bounds)."""
    counting = [(users[v.user_id].name, v.approve) for v in votes
                if v.origin == "local" and v.user_id is not None and v.user_id in users
                and role_at_least(users[v.user_id].role, VOTER_ROLE)]
    counting += [(v.user, v.approve) for v in votes if v.origin == "fleet"]
    return Tally(approvers=tuple(sorted({n for n, ok in counting if ok})),
                 rejecters=tuple(sorted({n for n, ok in counting if not ok})))


def users_by_id(repo: Repository) -> dict[int, UserRow]:
    """Every user, keyed by id (what ``tally`` checks votes against)."""
    return {u.id: u for u in repo.list_users()}


def decide(record: ActionRecord, counted: Tally) -> tuple[ActionState, str] | None:
    """The state the counted votes move an awaiting request to, with the reason; or None."""
    if counted.rejecters:
        return ActionState.REJECTED, f"rejected by {', '.join(counted.rejecters)}"
    if len(counted.approvers) >= needed(record):
        return ActionState.APPROVED, (f"approved by {', '.join(counted.approvers)} "
                                      f"({len(counted.approvers)} of {needed(record)} needed)")
    return None
