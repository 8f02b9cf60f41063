"""The web's view of approvals; the voting itself lives in healer.act.approvals.

``cast_vote``, ``VoteRefused``, ``needed`` and ``expires_at`` are re-exported so the
routers keep one import; the CLI (``healer approve|reject``) uses the same functions.
"""

from __future__ import annotations

from healer.act.approvals import VoteRefused, VoteResult, cast_vote, expires_at, needed
from healer.models import ActionRecord
from healer.store.repository import Repository
from healer.store.rows import ApprovalRow
from web.schemas import ActionOut, ApprovalOut, ProposalOut, VoteOut

__all__ = ["VoteRefused", "VoteResult", "approval_status", "cast_vote", "expires_at", "needed",
           "proposal_out"]


def approval_status(record: ActionRecord, votes: list[ApprovalRow], ttl: float) -> ApprovalOut:
    """Where the approval of ``record`` stands."""
    return ApprovalOut(
        needed=needed(record),
        approved_by=sorted({v.user for v in votes if v.approve}),
        rejected_by=sorted({v.user for v in votes if not v.approve}),
        expires_at=expires_at(record, ttl),
        votes=[VoteOut.of(v) for v in votes],
    )


def proposal_out(repo: Repository, record: ActionRecord, ttl: float) -> ProposalOut:
    """The API view of a proposal, with its votes."""
    votes = repo.list_approvals(record.id) if record.id is not None else []
    return ProposalOut(**ActionOut.fields_of(record),
                       approval=approval_status(record, votes, ttl))
