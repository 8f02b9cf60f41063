"""``GET /api/v1/incidents[/{id}]``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from healer.models import IncidentStatus
from web.auth import Principal, requires
from web.context import get_ctx
from web.schemas import HostQuery, IncidentOut, PathId

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"])
Viewer = Annotated[Principal, Depends(requires("viewer"))]


@router.get("", response_model=list[IncidentOut])
def list_incidents(
    request: Request, _: Viewer,
    status: IncidentStatus | None = None,
    host: HostQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[IncidentOut]:
    """Incidents, newest first: ``host``'s, else every host's on a control plane."""
    ctx = get_ctx(request)
    return [IncidentOut.of(i) for i in ctx.repo.list_incidents(status, limit=limit,
                                                               **ctx.hosts(host))]


@router.get("/{incident_id}", response_model=IncidentOut)
def get_incident(request: Request, _: Viewer, incident_id: PathId) -> IncidentOut:
    """One incident."""
    incident = get_ctx(request).repo.get_incident(incident_id)
    if incident is None:
        raise HTTPException(404, f"no incident {incident_id}")
    return IncidentOut.of(incident)
