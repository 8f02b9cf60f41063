"""Silences of unclassified kernel messages: ``GET|POST|DELETE /api/v1/silences`` and the
dashboard's silence button and list.

Listing needs the viewer role; adding and removing need the approver role (and a CSRF token
for cookie sessions) and are audited. A silence covers one template of an unclassified
incident, never a message a playbook claims: ``create_app`` is handed the check
(``healer.models.SilenceCheck``, built over the daemon's playbook library).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from healer.logs import logfmt
from healer.models import Incident, SilenceRefused, split_fingerprint
from healer.store.errors import NotFound
from healer.store.rows import SilenceRow
from web.auth import Principal, mutates, requires
from web.context import get_ctx
from web.render import render
from web.schemas import UtcDatetime

log = logging.getLogger("healer.web")
router = APIRouter(tags=["silences"])
Viewer = Annotated[Principal, Depends(requires("viewer"))]
Approver = Annotated[Principal, Depends(mutates("approver"))]
DURATIONS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
             "30d": timedelta(days=30)}


class SilenceIn(BaseModel):
    """A new silence: one of template, fingerprint or incident_id; a comment; an expiry."""

    model_config = ConfigDict(extra="forbid")
    template: str | None = Field(default=None, max_length=512)
    fingerprint: str | None = Field(default=None, max_length=2048)
    incident_id: int | None = Field(default=None, ge=1, le=2**62)
    comment: str = Field(min_length=1, max_length=2000)
    duration_seconds: int | None = Field(default=None, ge=60, le=365 * 86400)
    expires_at: UtcDatetime | None = None


class SilenceOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    template: str
    comment: str
    created_by: str
    created_at: UtcDatetime
    expires_at: UtcDatetime
    active: bool

    @classmethod
    def of(cls, row: SilenceRow, now: datetime) -> SilenceOut:
        return cls(id=row.id, template=row.template, comment=row.comment,
                   created_by=row.created_by, created_at=row.created_at,
                   expires_at=row.expires_at, active=row.active(now))


def _incident(request: Request, body: SilenceIn) -> Incident | None:
    repo = get_ctx(request).repo
    if body.incident_id is not None:
        found = repo.get_incident(body.incident_id)
        if found is None or found.host_id != repo.host_id:
            raise HTTPException(404, f"no incident {body.incident_id}")
        return found
    if body.fingerprint is not None:
        playbook, scope, subject = split_fingerprint(body.fingerprint)
        found = repo.find_incident(playbook, scope, subject=subject) if subject else None
        if found is None:
            raise HTTPException(404, "no incident with this fingerprint")
        return found
    return None


def _add(request: Request, who: Principal, body: SilenceIn) -> SilenceRow:
    ctx = get_ctx(request)
    chosen = [x for x in (body.template, body.fingerprint, body.incident_id) if x is not None]
    if len(chosen) != 1:
        raise HTTPException(422, "give exactly one of template, fingerprint, incident_id")
    now = ctx.clock()
    duration = None if body.duration_seconds is None else timedelta(
        seconds=body.duration_seconds)
    incident = _incident(request, body)
    try:
        req = ctx.silence_check(comment=body.comment, now=now,
                                template=None if incident else body.template,
                                incident=incident,
                                duration=duration, expires_at=body.expires_at)
    except SilenceRefused as exc:
        raise HTTPException(422, exc.problem) from None
    row = ctx.repo.add_silence(req.template, req.comment, who.name, req.expires_at)
    log.info(logfmt(msg="silence added", id=row.id, user=who.name, via=who.via,
                    until=row.expires_at.isoformat()))
    return row


@router.get("/api/v1/silences", response_model=list[SilenceOut])
def list_silences(request: Request, _: Viewer, active: bool = False) -> list[SilenceOut]:
    """Silences, newest first; ``active=true`` for those not expired."""
    ctx = get_ctx(request)
    now = ctx.clock()
    rows = ctx.repo.list_silences(active_at=now if active else None)
    return [SilenceOut.of(r, now) for r in rows]


@router.post("/api/v1/silences", response_model=SilenceOut, status_code=201)
def add_silence(request: Request, who: Approver, body: SilenceIn) -> SilenceOut:
    """Silence an unclassified template until it expires (approver; audited)."""
    return SilenceOut.of(_add(request, who, body), get_ctx(request).clock())


@router.delete("/api/v1/silences/{silence_id}", status_code=204, response_class=Response)
def remove_silence(request: Request, who: Approver,
                   silence_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    """Remove a silence (approver; audited)."""
    try:
        get_ctx(request).repo.remove_silence(silence_id, who.name)
    except NotFound:
        raise HTTPException(404, f"no silence {silence_id}") from None
    log.info(logfmt(msg="silence removed", id=silence_id, user=who.name, via=who.via))
    return Response(status_code=204)


# --- dashboard -------------------------------------------------------------------------------
@router.get("/silences", response_class=HTMLResponse, include_in_schema=False)
def silences_page(request: Request, who: Viewer, msg: str = "") -> HTMLResponse:
    """Every silence, with remove buttons for approvers."""
    ctx = get_ctx(request)
    return render(request, "silences.html.j2", who, silences=ctx.repo.list_silences(),
                  now=ctx.clock(), msg=msg[:300], can_edit=who.has("approver"))


@router.post("/incidents/{incident_id}/silence", include_in_schema=False)
def silence_incident(request: Request, who: Approver,
                     incident_id: Annotated[int, Path(ge=1, le=2**62)],
                     comment: Annotated[str, Form(max_length=2000)] = "",
                     duration: Annotated[str, Form(max_length=8)] = "24h") -> RedirectResponse:
    """The incident page's button: silence its template."""
    if not comment.strip():
        msg = "Not silenced: a comment says why the message is harmless."
    else:
        seconds = int(DURATIONS.get(duration, DURATIONS["24h"]).total_seconds())
        body = SilenceIn(incident_id=incident_id, comment=comment, duration_seconds=seconds)
        try:
            row = _add(request, who, body)
            msg = f"Silence {row.id} added until {row.expires_at:%Y-%m-%d %H:%M} UTC."
        except HTTPException as exc:
            msg = f"Not silenced: {exc.detail}"
    return RedirectResponse(f"/silences?msg={quote(msg)}", status_code=303)


@router.post("/silences/{silence_id}/remove", include_in_schema=False)
def remove_from_page(request: Request, who: Approver,
                     silence_id: Annotated[int, Path(ge=1, le=2**62)]) -> RedirectResponse:
    """The silences page's remove button."""
    try:
        get_ctx(request).repo.remove_silence(silence_id, who.name)
        msg = f"Silence {silence_id} removed."
    except NotFound:
        msg = f"No silence {silence_id}."
    return RedirectResponse(f"/silences?msg={quote(msg)}", status_code=303)
