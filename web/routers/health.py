"""``GET /healthz`` (anonymous) and ``GET /metrics`` (Prometheus; public unless configured)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from healer.store.errors import StoreError
from web.auth import requires
from web.context import get_ctx
from web.live import agent_state
from web.schemas import HealthOut

router = APIRouter(tags=["health"])
# The loop is late by ``lag`` when the next sample is overdue by that long. Past one interval
# it is "degraded"; past five, no stage may be stalling silently: "error", answered 503.
DEGRADED_INTERVALS = 1.0
ERROR_INTERVALS = 5.0


def _status(database: str, lag: float | None, interval: float, dead: bool
            ) -> Literal["ok", "degraded", "error"]:
    if database == "error" or dead or (lag is not None and lag > ERROR_INTERVALS * interval):
        return "error"
    if lag is not None and lag > DEGRADED_INTERVALS * interval:
        return "degraded"
    return "ok"


@router.get("/healthz", response_model=HealthOut)
def healthz(request: Request, response: Response) -> HealthOut:
    """Liveness: the database answers and the sampling loop keeps its schedule."""
    ctx = get_ctx(request)
    database: Literal["ok", "error"] = "ok"
    try:
        ctx.repo.kv_get("web", "healthz")  # one cheap read proves the database answers
    except StoreError:
        database = "error"
    age = lag = None
    agent: Literal["alive", "dead"] | None = None
    if ctx.live is not None:  # a dashboard apart from the agent has no loop to judge
        sample = ctx.live.latest()
        now = ctx.clock().timestamp()
        since = sample.ts if sample is not None else ctx.started.timestamp()
        age = max(0.0, now - sample.ts) if sample is not None else None
        lag = max(0.0, now - since - ctx.settings.interval_seconds)
        if ctx.live.separate_agent:
            agent = agent_state(ctx.live.agent(), now, ctx.settings.interval_seconds,
                                ctx.started.timestamp())
    status = _status(database, lag, ctx.settings.interval_seconds, agent == "dead")
    if status == "error":
        response.status_code = 503
    return HealthOut(status=status, host_id=ctx.settings.host_id, database=database,
                     last_sample_age_seconds=age, loop_lag_seconds=lag, agent=agent)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text exposition of healer's registry."""
    ctx = get_ctx(request)
    if not ctx.settings.metrics_public:
        requires("viewer")(request)
    body = generate_latest(ctx.telemetry.serve_registry)
    snapshot = ctx.live.agent() if ctx.live is not None else None
    agent = (snapshot.agent_metrics.encode() if snapshot is not None
             else generate_latest(ctx.telemetry.agent_registry))  # the loop runs in-process
    return Response(body + agent, media_type=CONTENT_TYPE_LATEST)
