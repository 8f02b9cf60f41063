"""Targets automation stood down on after admin drift: ``GET /api/v1/targets/paused``,
``POST /api/v1/targets/resume``, and the dashboard's list with a Resume button.

Listing needs the viewer role; resuming needs the approver role (and a CSRF token for
cookie sessions) and is audited. Resuming is a database record like an approval: the
daemon's guard reads the paused set on every check. This is one target on this host, not
the fleet's kill switch.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from healer.logs import logfmt
from healer.store.errors import NotFound
from healer.store.rows import PausedTargetRow
from web.auth import Principal, mutates, requires
from web.context import get_ctx
from web.render import render
from web.schemas import UtcDatetime

log = logging.getLogger("healer.web")
router = APIRouter(tags=["targets"])
Viewer = Annotated[Principal, Depends(requires("viewer"))]
Approver = Annotated[Principal, Depends(mutates("approver"))]
TARGET_MAX = 4200  # PausedTargetTable.target


class PausedTargetOut(BaseModel):
    model_config = ConfigDict(frozen=True)
    target: str
    reason: str
    at: UtcDatetime

    @classmethod
    def of(cls, row: PausedTargetRow) -> PausedTargetOut:
        return cls(target=row.target, reason=row.reason, at=row.at)


class ResumeIn(BaseModel):
    """The target to resume: ``kind:scope:key``, as the list shows it."""

    model_config = ConfigDict(extra="forbid")
    target: str = Field(min_length=1, max_length=TARGET_MAX)


def _resume(request: Request, who: Principal, target: str) -> None:
    get_ctx(request).repo.resume_target(target, who.name)  # NotFound: not paused
    log.info(logfmt(msg="target resumed", target=target, user=who.name, via=who.via))


@router.get("/api/v1/targets/paused", response_model=list[PausedTargetOut])
def list_paused(request: Request, _: Viewer) -> list[PausedTargetOut]:
    """Paused targets, newest first."""
    return [PausedTargetOut.of(r) for r in get_ctx(request).repo.list_paused_targets()]


@router.post("/api/v1/targets/resume", status_code=204, response_class=Response)
def resume(request: Request, who: Approver, body: ResumeIn) -> Response:
    """Let automation change a paused target again (approver; audited)."""
    try:
        _resume(request, who, body.target)
    except NotFound:
        raise HTTPException(404, "this target is not paused") from None
    return Response(status_code=204)


# --- dashboard -------------------------------------------------------------------------------
@router.get("/targets", response_class=HTMLResponse, include_in_schema=False)
def targets_page(request: Request, who: Viewer, msg: str = "") -> HTMLResponse:
    """Every paused target, with Resume buttons for approvers."""
    return render(request, "targets.html.j2", who,
                  targets=get_ctx(request).repo.list_paused_targets(), msg=msg[:300],
                  can_edit=who.has("approver"))


@router.post("/targets/resume", include_in_schema=False)
def resume_from_page(request: Request, who: Approver,
                     target: Annotated[str, Form(min_length=1, max_length=TARGET_MAX)]
                     ) -> RedirectResponse:
    """The page's Resume button."""
    try:
        _resume(request, who, target)
        msg = f"Resumed: healer may change {target} again."
    except NotFound:
        msg = f"{target} is not paused."
    return RedirectResponse(f"/targets?msg={quote(msg[:300])}", status_code=303)
