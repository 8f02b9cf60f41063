"""``GET /healthz`` (anonymous) and ``GET /metrics`` (Prometheus; public unless configured)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from healer.errors import StoreError
from web.auth import requires
from web.context import get_ctx
from web.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz(request: Request, response: Response) -> HealthOut:
    """Liveness: the database answers and samples are fresh."""
    ctx = get_ctx(request)
    database: Literal["ok", "error"] = "ok"
    try:
        ctx.repo.kv_get("web", "healthz")  # one cheap read proves the database answers
    except StoreError:
        database = "error"
    age = None
    sample = ctx.live.latest() if ctx.live is not None else None
    if sample is not None:
        age = max(0.0, ctx.clock().timestamp() - sample.ts)
    stale = age is not None and age > max(10.0, 10 * ctx.settings.interval_seconds)
    status: Literal["ok", "degraded", "error"] = (
        "error" if database == "error" else "degraded" if stale else "ok")
    if status == "error":
        response.status_code = 503
    return HealthOut(status=status, host_id=ctx.settings.host_id, database=database,
                     last_sample_age_seconds=age)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text exposition of healer's registry."""
    ctx = get_ctx(request)
    if not ctx.settings.metrics_public:
        requires("viewer")(request)
    return Response(generate_latest(ctx.telemetry.registry), media_type=CONTENT_TYPE_LATEST)
