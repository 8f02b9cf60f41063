"""``GET /api/v1/proposals`` and ``POST /api/v1/proposals/{id}/approve|reject``."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Request

from healer.logs import logfmt
from healer.models import ActionState
from healer.store.votes import record_vote
from web.approvals import proposal_out
from web.auth import Principal, mutates, requires
from web.context import get_ctx
from web.schemas import PathId, ProposalOut, VoteIn

log = logging.getLogger("healer.web")
router = APIRouter(prefix="/api/v1/proposals", tags=["proposals"])
Viewer = Annotated[Principal, Depends(requires("viewer"))]
Approver = Annotated[Principal, Depends(mutates("approver"))]


@router.get("", response_model=list[ProposalOut])
def list_proposals(
    request: Request, _: Viewer,
    status: ActionState = ActionState.AWAITING_APPROVAL,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ProposalOut]:
    """Proposals in ``status`` (default: waiting for a person), newest first."""
    ctx = get_ctx(request)
    ttl = ctx.settings.approval_ttl_seconds
    rows = ctx.repo.list_actions(states=[status], limit=limit, **ctx.hosts())
    moves = ctx.repo.transitions([r.id for r in rows if r.id is not None])
    return [proposal_out(ctx.repo, r, ttl, moves.get(r.id or 0, [])) for r in rows]


def _vote(request: Request, who: Principal, action_id: int, approve: bool,
          body: VoteIn | None) -> ProposalOut:
    ctx = get_ctx(request)
    ttl = ctx.settings.approval_ttl_seconds
    comment = body.comment if body is not None else ""
    result = record_vote(ctx.repo, action_id, who.name, approve, comment, now=ctx.clock(),
                         ttl_seconds=ttl, via=who.via)
    log.info(logfmt(
        msg=f"vote {'approve' if approve else 'reject'}", action=action_id, user=who.name,
        via=who.via, state=result.record.state.value))
    return proposal_out(ctx.repo, result.record, ttl,
                        ctx.repo.transitions([action_id]).get(action_id, []))


@router.post("/{action_id}/approve", response_model=ProposalOut)
def approve(request: Request, who: Approver, action_id: PathId,
            body: Annotated[VoteIn | None, Body()] = None) -> ProposalOut:
    """Record an approval (one user's vote toward the quorum).

    The answer is the proposal after the vote; it stays ``awaiting_approval`` until the
    daemon counts the votes on its next cycle (then ``approved``), and the daemon re-checks
    the guard before applying.
    """
    return _vote(request, who, action_id, True, body)


@router.post("/{action_id}/reject", response_model=ProposalOut)
def reject(request: Request, who: Approver, action_id: PathId,
           body: Annotated[VoteIn | None, Body()] = None) -> ProposalOut:
    """Record a rejection: the daemon rejects the request on its next cycle."""
    return _vote(request, who, action_id, False, body)
