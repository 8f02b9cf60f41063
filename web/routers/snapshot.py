"""``GET /api/v1/snapshot`` and ``GET /api/v1/series``: the live host picture."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from web.auth import Principal, requires
from web.charts import METRIC_NAME_RE, downsample, read_series
from web.context import get_ctx
from web.schemas import SeriesOut, SnapshotOut

router = APIRouter(prefix="/api/v1", tags=["snapshot"])
Viewer = Annotated[Principal, Depends(requires("viewer"))]


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
    name: Annotated[list[str], Query(max_length=32)],
    seconds: Annotated[float, Query(gt=0, le=86400 * 14)] = 3600,
    points: Annotated[int, Query(ge=10, le=5000)] = 360,
) -> SeriesOut:
    """Points (epoch seconds, value) per metric name over the last ``seconds``."""
    ctx = get_ctx(request)
    bad = [n for n in name if not METRIC_NAME_RE.match(n)]
    if bad:
        raise HTTPException(422, f"malformed metric name {bad[0][:80]!r}")
    data = {n: downsample(read_series(ctx, n, seconds), points) for n in dict.fromkeys(name)}
    return SeriesOut(seconds=seconds, series=data)
