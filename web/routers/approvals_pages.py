"""The approvals inbox and its approve/reject forms (approver role, CSRF-checked)."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from healer.logs import logfmt
from healer.models import ActionState
from healer.store.votes import VoteRefused, record_vote
from web.auth import Principal, mutates, requires
from web.context import get_ctx
from web.render import render
from web.schemas import PathId
from web.views import proposal_view

log = logging.getLogger("healer.web")
router = APIRouter(include_in_schema=False)


@router.get("/approvals", response_class=HTMLResponse)
def inbox(request: Request, who: Annotated[Principal, Depends(requires("viewer"))],
          msg: str = "") -> HTMLResponse:
    """Requests waiting for a person: diff, why, guard reasons, votes, countdown."""
    ctx = get_ctx(request)
    latest = ctx.live.latest() if ctx.live is not None else None
    views = []
    for record in ctx.repo.list_actions(states=[ActionState.AWAITING_APPROVAL], limit=200,
                                        **ctx.hosts()):
        incident = ctx.repo.get_incident(record.incident_id) if record.incident_id else None
        views.append(proposal_view(ctx.repo, record, incident, latest,
                                   ctx.settings.approval_ttl_seconds))
    return render(request, "approvals.html.j2", who, proposals=views, msg=msg[:300],
                  can_vote=who.has("approver"), now=ctx.clock())


def _vote(request: Request, who: Principal, action_id: int, approve: bool,
          comment: str) -> RedirectResponse:
    ctx = get_ctx(request)
    try:
        result = record_vote(ctx.repo, action_id, who.name, approve, comment, now=ctx.clock(),
                             ttl_seconds=ctx.settings.approval_ttl_seconds, via="web")
        msg = (f"Action {action_id}: your {'approval' if approve else 'rejection'} is "
               "recorded; healer decides on its next cycle.")
        log.info(logfmt(msg=f"vote {'approve' if approve else 'reject'}", action=action_id,
                        user=who.name, via="web", state=result.record.state.value))
    except VoteRefused as exc:
        msg = f"Not recorded: {exc.detail}"
    return RedirectResponse(f"/approvals?msg={quote(msg)}", status_code=303)


Approver = Annotated[Principal, Depends(mutates("approver"))]
Comment = Annotated[str, Form(max_length=2000)]


@router.post("/approvals/{action_id}/approve")
def approve(request: Request, who: Approver, action_id: PathId,
            comment: Comment = "") -> RedirectResponse:
    """Approve from the inbox form."""
    return _vote(request, who, action_id, True, comment)


@router.post("/approvals/{action_id}/reject")
def reject(request: Request, who: Approver, action_id: PathId,
           comment: Comment = "") -> RedirectResponse:
    """Reject from the inbox form."""
    return _vote(request, who, action_id, False, comment)
