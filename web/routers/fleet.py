"""A control plane's fleet: ``GET /api/v1/hosts``, ``GET /api/v1/fleet`` (the switches,
rollouts, breakers, fleet incidents), ``POST /api/v1/fleet/pause|resume``, and the
dashboard's fleet view with the pause switch.

Pausing and resuming need the approver role (and a CSRF token for cookie sessions) and
are audited. Every agent hears of it through ``/events`` within two seconds; a pause
stops automatic changes, never a rollback. A host selector that is empty or matches
every host is refused (400).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from guardrails.fleet import Remedy, in_flight_cap, wave_open
from healer.logs import logfmt
from healer.models import IncidentStatus
from healer.store.fleet_types import FleetStatus, HostRow
from healer.store.repo_hosts import SelectorRefused, parse_selector
from web.auth import Principal, mutates, requires
from web.context import AppContext, get_ctx
from web.render import render
from web.schemas import UtcDatetime

log = logging.getLogger("healer.web.fleet")
router = APIRouter(tags=["fleet"])
Viewer = Annotated[Principal, Depends(requires("viewer"))]
Approver = Annotated[Principal, Depends(mutates("approver"))]


class HostOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    host_id: str
    last_heartbeat_at: UtcDatetime | None
    mode: str | None
    open_incidents: int
    paused: bool
    agent_version: str | None
    clock_skew_seconds: float | None
    labels: dict[str, str]

    @classmethod
    def of(cls, h: HostRow, fleet_paused: bool) -> HostOut:
        return cls(host_id=h.host_id, last_heartbeat_at=h.last_heartbeat_at, mode=h.mode,
                   open_incidents=h.open_incidents, paused=h.paused or fleet_paused,
                   agent_version=h.agent_version, clock_skew_seconds=h.clock_skew_seconds,
                   labels=h.labels)


class SwitchIn(BaseModel):
    """What to pause or resume: the fleet (nothing given), one remedy
    (``playbook:kind:target``), or the hosts a selector matches (``rack=r12,zone=a``)."""

    model_config = ConfigDict(extra="forbid")
    remedy: str | None = Field(default=None, max_length=600)
    hosts: str | None = Field(default=None, max_length=2000)
    reason: str = Field(default="", max_length=2000)


def _status(ctx: AppContext) -> FleetStatus:
    assert ctx.fleet is not None  # mounted only on a control plane
    return ctx.repo.fleet_status(ctx.fleet.policy)


@router.get("/api/v1/hosts", response_model=list[HostOut])
def list_hosts(request: Request, _: Viewer) -> list[HostOut]:
    """Every host the control plane knows, by id."""
    ctx = get_ctx(request)
    paused = _status(ctx).paused
    return [HostOut.of(h, paused) for h in ctx.repo.list_hosts()]


@router.get("/api/v1/fleet", response_model=FleetStatus)
def fleet_status(request: Request, _: Viewer) -> FleetStatus:
    """The kill switch, rollouts, leases in flight, open breakers and fleet incidents."""
    return _status(get_ctx(request))


def switch(ctx: AppContext, who: Principal, body: SwitchIn, pause: bool) -> list[str]:
    """Pause or resume what ``body`` names; returns what changed (400 on a bad remedy or
    a refused selector)."""
    try:
        remedy = Remedy.parse(body.remedy) if body.remedy else None
    except ValueError:
        raise HTTPException(400, "remedy: playbook:kind:target, e.g. "
                                 "listen-backlog-too-small:sysctl_write:net.core.somaxconn"
                            ) from None
    if body.hosts is not None:
        try:
            hosts = ctx.repo.pause_hosts(parse_selector(body.hosts), pause, who.name)
        except SelectorRefused as e:
            raise HTTPException(400, str(e)) from None
        done = [f"{'paused' if pause else 'resumed'} {len(hosts)} host(s)"]
    elif pause:
        changed = ctx.repo.fleet_pause(remedy, who.name, body.reason)
        done = ["paused" if changed else "already paused"]
    else:
        done = ctx.repo.fleet_resume(remedy, who.name) or ["nothing to resume"]
    log.info(logfmt(msg=f"fleet {'pause' if pause else 'resume'}", user=who.name,
                    remedy=body.remedy, hosts=body.hosts, done="; ".join(done)))
    return done


@router.post("/api/v1/fleet/pause")
def pause(request: Request, who: Approver, body: SwitchIn) -> dict[str, Any]:
    """Stop automatic actions: fleet-wide, for one remedy, or on the selected hosts."""
    return {"done": switch(get_ctx(request), who, body, True)}


@router.post("/api/v1/fleet/resume")
def resume(request: Request, who: Approver, body: SwitchIn) -> dict[str, Any]:
    """Lift a pause; a remedy's resume also closes its breaker; a fleet-wide one resolves
    the open systemic fleet incidents."""
    return {"done": switch(get_ctx(request), who, body, False)}


# --- dashboard -------------------------------------------------------------------------------
@router.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
def fleet_page(request: Request, who: Viewer, msg: str = "") -> HTMLResponse:
    """Hosts, incidents across hosts, remedies in canary, waves, breakers, the switch."""
    ctx = get_ctx(request)
    assert ctx.fleet is not None
    status = _status(ctx)
    now = ctx.clock()
    waves = {r.id: wave_open(r.rollout, ctx.fleet.verify_window(r.rollout.remedy.playbook),
                             ctx.fleet.policy, now) for r in status.rollouts}
    return render(request, "fleet.html.j2", who, fleet=status, hosts=ctx.repo.list_hosts(),
                  incidents=ctx.repo.list_incidents(IncidentStatus.OPEN, limit=200,
                                                    every_host=True),
                  waves=waves, cap=in_flight_cap(status.reporting_hosts, ctx.fleet.policy),
                  msg=msg[:300], can_edit=who.has("approver"))


@router.post("/fleet/switch", include_in_schema=False)
def switch_from_page(request: Request, who: Approver,
                     action: Annotated[str, Form(pattern="^(pause|resume)$")],
                     remedy: Annotated[str, Form(max_length=600)] = "",
                     hosts: Annotated[str, Form(max_length=2000)] = "") -> RedirectResponse:
    """The page's pause and resume buttons."""
    body = SwitchIn(remedy=remedy or None, hosts=hosts or None)
    try:
        msg = "; ".join(switch(get_ctx(request), who, body, action == "pause"))
    except HTTPException as e:
        msg = str(e.detail)
    return RedirectResponse(f"/fleet?msg={quote(msg[:300])}", status_code=303)
