"""``GET /api/v1/actions[/{id}]``: the action journal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from healer.models import ActionState
from web.auth import Principal, requires
from web.context import get_ctx
from web.schemas import ActionOut, HostQuery, PathId, QueryId

router = APIRouter(prefix="/api/v1/actions", tags=["actions"])
Viewer = Annotated[Principal, Depends(requires("viewer"))]


@router.get("", response_model=list[ActionOut])
def list_actions(
    request: Request, _: Viewer,
    state: Annotated[list[ActionState] | None, Query()] = None,
    incident_id: QueryId | None = None,
    host: HostQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ActionOut]:
    """Journal records, newest first, optionally by state, incident and host (else every
    host's on a control plane), each with its transitions."""
    ctx = get_ctx(request)
    rows = ctx.repo.list_actions(states=state or None, incident_id=incident_id, limit=limit,
                                 **ctx.hosts(host))
    moves = ctx.repo.transitions([r.id for r in rows if r.id is not None])
    return [ActionOut.of(r, moves.get(r.id or 0, [])) for r in rows]


@router.get("/{action_id}", response_model=ActionOut)
def get_action(request: Request, _: Viewer, action_id: PathId) -> ActionOut:
    """One journal record."""
    repo = get_ctx(request).repo
    record = repo.get_action(action_id)
    if record is None:
        raise HTTPException(404, f"no action {action_id}")
    return ActionOut.of(record, repo.transitions([action_id]).get(action_id, []))
