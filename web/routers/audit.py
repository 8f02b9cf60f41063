"""``GET /api/v1/audit``: who did what, and every journal state change."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from web.auth import Principal, requires
from web.context import get_ctx
from web.schemas import AuditOut

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", response_model=list[AuditOut])
def list_audit(
    request: Request, _: Annotated[Principal, Depends(requires("viewer"))],
    subject: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[AuditOut]:
    """Audit rows, newest first, optionally for one subject (``action:7``)."""
    rows = get_ctx(request).repo.list_audit(limit=limit, subject=subject)
    return [AuditOut.of(a) for a in rows]
