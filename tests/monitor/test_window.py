from __future__ import annotations

import math
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

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


def _reference(samples: list[Sample], size: int, name: str, seconds: float
               ) -> list[tuple[float, float]]:
    kept = samples[-size:]
    cutoff = kept[-1].ts - seconds
    return [(s.ts, s.metrics[name]) for s in kept if s.ts >= cutoff and name in s.metrics]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.5, -3.0, 1e18])),
                min_size=1, max_size=400),
       st.integers(min_value=2, max_value=150))
def test_chunked_rings_read_back_exactly_what_was_appended(
        values: list[float | None], capacity: int) -> None:
    w = MetricWindow(capacity, 1)
    samples = []
    for t, v in enumerate(values):  # runs of equal values, gaps, several laps
        metrics = {"flat": 7.0} | ({} if v is None else {"x": v})
        samples.append(Sample(ts=float(t), metrics=metrics))
        w.append(samples[-1])
    for seconds in (0, 5, 61, 10_000):
        assert w.series("x", seconds) == _reference(samples, capacity, "x", seconds)
        assert w.series("flat", seconds) == _reference(samples, capacity, "flat", seconds)


def test_an_hour_of_mostly_flat_metrics_fits_in_a_few_mb() -> None:
    w = MetricWindow(3600, 1)
    flat = {f"vmstat.m_{i}_total": float(i) for i in range(550)}
    tracemalloc.start()
    for t in range(3600):  # 550 flat metrics, 100 that change every second
        moving = {f"cpu.m_{i}_percent": float((t * 7 + i) % 101) for i in range(100)}
        w.append(Sample(ts=float(t), metrics=flat | moving))
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert current < 5 * 1024 * 1024  # 650 full rings would be 18.7 MB
    assert w.values("vmstat.m_3_total", 3600) == [3.0] * 3600
    assert w.values("cpu.m_1_percent", 2) == [float((3597 * 7 + 1) % 101),
                                              float((3598 * 7 + 1) % 101),
                                              float((3599 * 7 + 1) % 101)]


def test_a_name_with_no_point_left_in_the_window_is_dropped() -> None:
    w = MetricWindow(120, 1)
    w.append(Sample(ts=0.0, metrics={"gone": 1.0, "kept": 1.0}))
    for t in range(1, 240):
        w.append(Sample(ts=float(t), metrics={"kept": 1.0}))
    assert w.names() == ["kept"]
    assert w.series("gone", 1000) == []
