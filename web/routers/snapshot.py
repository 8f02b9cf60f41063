"""``GET /api/v1/snapshot`` and ``GET /api/v1/series``: the live host picture."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import StringConstraints

from web.auth import Principal, requires
from web.charts import METRIC_NAME_PATTERN, downsample, read_series
from web.context import get_ctx
from web.schemas import SeriesOut, SnapshotOut

router = APIRouter(prefix="/api/v1", tags=["snapshot"])
Viewer = Annotated[Principal, Depends(requires("viewer"))]
MetricName = Annotated[str, StringConstraints(pattern=METRIC_NAME_PATTERN, max_length=200)]


@router.get("/snapshot", response_model=SnapshotOut)
def snapshot(request: Request, _: Viewer) -> SnapshotOut:
    """The latest sample, GPU states, new kernel-log records and the LLM circuit state."""
    ctx = get_ctx(request)
    live = ctx.live
    sample = live.latest() if live is not None else None
    llm = live.llm_status() if live is not None else None
    return SnapshotOut.of(ctx.settings.host_id, sample, dict(llm) if llm is not None else None)


@router.get("/series", response_model=SeriesOut)
def series(
    request: Request, _: Viewer,
    name: Annotated[list[MetricName], Query(min_length=1, max_length=32)],
    seconds: Annotated[float, Query(gt=0, le=86400 * 14)] = 3600,
    points: Annotated[int, Query(ge=10, le=5000)] = 360,
) -> SeriesOut:
    """Points (epoch seconds, value) per metric name over the last ``seconds``."""
    ctx = get_ctx(request)
    data = {n: downsample(read_series(ctx, n, seconds), points) for n in dict.fromkeys(name)}
    return SeriesOut(seconds=seconds, series=data)
