"""The web's view of approvals; recording and counting votes live in healer.store.votes.

The web records votes and never moves the journal: the root agent's engine decides a
request on its next cycle, so a proposal returned right after a vote may still be
``awaiting_approval``. ``approved_by``/``rejected_by`` list the votes that count now
(users who exist and hold the approver role); ``votes`` lists them all.
"""

from __future__ import annotations

from collections.abc import Sequence

from healer.models import ActionRecord
from healer.store.repository import Repository
from healer.store.rows import ApprovalRow, Transition, UserRow
from healer.store.votes import expires_at, needed, tally, users_by_id
from web.schemas import ActionOut, ApprovalOut, ProposalOut, VoteOut


def approval_status(record: ActionRecord, votes: list[ApprovalRow], users: dict[int, UserRow],
                    ttl: float) -> ApprovalOut:
    """Where the approval of ``record`` stands."""
    counted = tally(votes, users)
    counting = set(counted.approvers) | set(counted.rejecters)
    return ApprovalOut(
        needed=needed(record),
        approved_by=list(counted.approvers),
        rejected_by=list(counted.rejecters),
        expires_at=expires_at(record, ttl),
        votes=[VoteOut.of(v, counts=v.user in counting) for v in votes],
    )


def record_status(repo: Repository, record: ActionRecord, ttl: float) -> ApprovalOut:
    """``approval_status`` with the record's votes and the current users read from the store."""
    votes = repo.list_approvals(record.id) if record.id is not None else []
    return approval_status(record, votes, users_by_id(repo) if votes else {}, ttl)


def proposal_out(repo: Repository, record: ActionRecord, ttl: float,
                 moves: Sequence[Transition]) -> ProposalOut:
    """The API view of a proposal, with its votes and its transitions."""
    return ProposalOut(**ActionOut.fields_of(record, moves),
                       approval=record_status(repo, record, ttl))
