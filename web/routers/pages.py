"""HTML pages: the overview and the incidents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from healer.models import ActionState, IncidentStatus
from web.auth import Principal, requires
from web.charts import HOST_CHARTS, gpu_charts
from web.context import get_ctx
from web.render import render
from web.schemas import PathId
from web.views import convergences, incident_timeline

router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(requires("viewer"))]


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, who: Viewer) -> HTMLResponse:
    """Host health, live charts, open incidents, pending approvals, recent actions."""
    ctx = get_ctx(request)
    latest = ctx.live.latest() if ctx.live is not None else None
    llm = ctx.live.llm_status() if ctx.live is not None else None
    charts = [*HOST_CHARTS, *gpu_charts(latest)]
    return render(
        request, "overview.html.j2", who, charts=charts, latest=latest, llm=llm,
        incidents=ctx.repo.list_incidents(IncidentStatus.OPEN, limit=50, **ctx.hosts()),
        pending=ctx.repo.list_actions(states=[ActionState.AWAITING_APPROVAL], limit=50,
                                      **ctx.hosts()),
        actions=ctx.repo.list_actions(limit=15, **ctx.hosts()), mode=ctx.settings.mode,
    )


@router.get("/incidents", response_class=HTMLResponse)
def incidents(request: Request, who: Viewer) -> HTMLResponse:
    """Every incident, newest first."""
    return render(request, "incidents.html.j2", who,
                  incidents=get_ctx(request).repo.list_incidents(
                      limit=500, **get_ctx(request).hosts()))


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident(request: Request, who: Viewer, incident_id: PathId) -> HTMLResponse:
    """One incident as a timeline, with verification charts."""
    ctx = get_ctx(request)
    found = ctx.repo.get_incident(incident_id)
    if found is None:
        raise HTTPException(404, f"no incident {incident_id}")
    latest = ctx.live.latest() if ctx.live is not None else None
    timeline = incident_timeline(ctx.repo, found, latest, ctx.settings.approval_ttl_seconds,
                                 ctx.clock())
    steps = convergences(ctx.repo.list_actions(incident_id=incident_id, limit=200,
                                               every_host=True))
    return render(request, "incident.html.j2", who, incident=found, timeline=timeline,
                  convergences=steps)
