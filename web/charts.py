"""Which series the dashboard draws, where their points come from, and how many.

Live charts read the daemon's in-memory window (``LiveState.series``); without one they
fall back to the store (per-minute rollups, full resolution around incidents).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from healer.models import ActionRecord, Incident, Sample
from healer.store.repository import Repository
from web.context import AppContext

# Checked by pydantic (the Rust regex crate: linear time) on the untrusted query, and
# published in the OpenAPI document.
METRIC_NAME_PATTERN = r"^[a-z0-9_]+(?:\.[a-z0-9_]+){1,6}$"


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    metrics: tuple[str, ...]
    unit: str = ""
    rate: bool = False  # counters: draw the per-second rate


HOST_CHARTS: tuple[Chart, ...] = (
    Chart("psi", "Pressure stall, some avg10", ("psi.cpu.some_avg10", "psi.memory.some_avg10",
                                                "psi.io.some_avg10"), "%"),
    Chart("mem", "Memory available", ("mem.available_bytes",), "B"),
    Chart("load", "Load average", ("load.1m", "load.5m", "load.15m")),
    Chart("listen", "TCP listen overflows", ("net.tcp.listen_overflows_total",), "/s", rate=True),
)

# Per-GPU charts: (id, title, unit, metric under gpu.<index>.), the collector's contract names.
_GPU_CHARTS: tuple[tuple[str, str, str, str], ...] = (
    ("temp", "temperature", "°C", "temperature_celsius"),
    ("power", "power draw", "W", "power_draw_watts"),
    ("util", "utilization", "%", "utilization_percent"),
)
_GPU_INDEX_RE = re.compile(r"^gpu\.(\d+)\.")


def gpu_charts(sample: Sample | None) -> list[Chart]:
    """Temperature, power and utilization charts for every GPU in the latest sample."""
    if sample is None:
        return []
    indexes = sorted({int(m.group(1)) for n in sample.metrics if (m := _GPU_INDEX_RE.match(n))})
    return [
        Chart(f"gpu{i}-{fid}", f"GPU {i} {title}", (f"gpu.{i}.{metric}",), unit)
        for i in indexes
        for fid, title, unit, metric in _GPU_CHARTS
        if f"gpu.{i}.{metric}" in sample.metrics
    ]


def downsample(points: list[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    """At most ``limit`` points: bucket means in time order (keeps the shape of a 1 Hz hour)."""
    if len(points) <= limit:
        return points
    size = len(points) / limit
    out = []
    for i in range(limit):
        bucket = points[int(i * size):int((i + 1) * size)] or [points[-1]]
        out.append((bucket[-1][0], sum(v for _, v in bucket) / len(bucket)))
    return out


def read_series(ctx: AppContext, name: str, seconds: float) -> list[tuple[float, float]]:
    """Points of ``name`` over the last ``seconds``: live window first, then the store."""
    if ctx.live is not None:
        points = list(ctx.live.series(name, seconds))
        if points:
            return points
    since = ctx.clock() - timedelta(seconds=seconds)
    return ctx.repo.metric_series(name, since)


# Journal states that get a marker on the verification chart.
_MARKERS = {"applying": "apply", "verified": "verify", "rolled_back": "rollback",
            "rollback_failed": "rollback failed"}


def verification_chart(repo: Repository, record: ActionRecord, incident: Incident | None,
                       now: datetime) -> dict[str, object] | None:
    """The metric around a change, before and after, with apply/verify/rollback markers."""
    spec = record.verification.spec if record.verification else None
    metric = spec.metric if spec else None
    if metric is None and incident is not None and incident.evidence.metrics:
        metric = next(iter(incident.evidence.metrics))
    if metric is None:
        return None
    stamps = [(a.at, _MARKERS[str(a.detail.get("to"))])
              for a in reversed(repo.list_audit(subject=f"action:{record.id}"))
              if a.event == "action.transition" and a.detail.get("to") in _MARKERS]
    if not stamps:
        return None
    start = stamps[0][0] - timedelta(minutes=15)
    end = min(now, stamps[-1][0] + timedelta(minutes=15))
    points = repo.metric_series(metric, start, end)
    if not points and incident is not None:
        points = list(incident.evidence.metrics.get(metric, []))
    markers = [{"ts": at.timestamp(), "label": label} for at, label in stamps]
    rate = bool(spec and spec.rate) or metric.endswith("_total")  # counters: draw per-second
    return {"metric": metric, "points": downsample(points, 600), "markers": markers,
            "rate": rate}
