from __future__ import annotations

import math
import tracemalloc

from healer.models import KmsgRecord, ProcessInfo, Sample
from healer.window import MetricWindow


def _s(ts: float, **metrics: float) -> Sample:
    return Sample(ts=ts, metrics={k.replace("_", "."): v for k, v in metrics.items()})


def test_series_returns_the_last_seconds_oldest_first() -> None:
    w = MetricWindow(10, 1)
    for t in range(20):
        w.append(Sample(ts=float(t), metrics={"a": float(t)}))
    assert w.series("a", 3) == [(16.0, 16.0), (17.0, 17.0), (18.0, 18.0), (19.0, 19.0)]
    assert len(w.values("a", 1000)) == 10  # capacity bounds it
    assert w.latest() is not None and w.latest().ts == 19.0  # type: ignore[union-attr]


def test_missing_metric_is_a_gap_not_a_zero() -> None:
    w = MetricWindow(60, 1)
    w.append(Sample(ts=1.0, metrics={"a": 1.0, "b": 5.0}))
    w.append(Sample(ts=2.0, metrics={"a": 2.0}))
    w.append(Sample(ts=3.0, metrics={"a": 3.0, "b": 7.0, "c": 1.0}))
    assert w.values("b", 60) == [5.0, 7.0]
    assert w.values("c", 60) == [1.0]
    assert w.names() == ["a", "b", "c"]


def test_rate_handles_counter_resets() -> None:
    w = MetricWindow(60, 1)
    for t, v in enumerate([100.0, 110.0, 120.0, 5.0, 15.0]):
        w.append(Sample(ts=float(t), metrics={"x_total": v}))
    # increases: 10 + 10 + 5 (reset: counts from 0) + 10 = 35 over 4 s
    assert w.rate("x_total", 60) == 35 / 4
    assert w.rate("nope", 60) is None


def test_kmsg_and_processes_are_kept() -> None:
    w = MetricWindow(60, 1)
    rec = KmsgRecord(seq=1, priority=3, ts_us=1, message="oom")
    w.append(Sample(ts=1.0, metrics={}, kmsg=(rec,), processes=(ProcessInfo(pid=1, name="x"),)))
    w.append(Sample(ts=100.0, metrics={}))
    assert w.kmsg(200) == [rec] and w.kmsg(10) == []
    procs = w.processes()
    assert procs is not None and procs[0].pid == 1


def test_an_hour_of_500_metrics_stays_near_15_mb() -> None:
    tracemalloc.start()
    w = MetricWindow(3600, 1)
    names = [f"m.metric_{i}" for i in range(500)]
    w.append(Sample(ts=0.0, metrics=dict.fromkeys(names, 1.0)))
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert current < 16 * 1024 * 1024
    assert not math.isnan(w.values("m.metric_3", 10)[0])
