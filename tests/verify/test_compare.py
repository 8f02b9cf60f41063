"""Verification compares a baseline window with an after window, robustly."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from healer.verify import GuardSpec, VerifySpec, evaluate, summarize_baseline
from healer.verify.stats import mad, median, to_rates

T0 = 1_700_000_000.0  # the moment of the write


class Series:
    """Points per metric, as the metric window would return them."""

    def __init__(self, **metrics: Sequence[tuple[float, float]]) -> None:
        self.metrics = {k.replace("__", "."): list(v) for k, v in metrics.items()}

    def __call__(self, name: str, since: float, until: float) -> list[tuple[float, float]]:
        return [(t, v) for t, v in self.metrics.get(name, []) if since <= t <= until]


def flat(value: float, start: float, end: float, step: float = 1.0) -> list[tuple[float, float]]:
    n = int((end - start) / step)
    return [(start + i * step, value) for i in range(n + 1)]


def counter(rate: float, start: float, end: float, base: float = 0.0) -> list[tuple[float, float]]:
    return [(t, base + rate * (t - start)) for t, _ in flat(0, start, end)]


SPEC = VerifySpec(metric="net.tcp.listen_overflows_total", direction="to_zero",
                  guards=(GuardSpec(metric="psi.cpu.some_avg10", max_regression_percent=50),),
                  window_seconds=10, settle_seconds=1)


def judge(spec: VerifySpec, series: Series, now: float):  # type: ignore[no-untyped-def]
    baseline = summarize_baseline(spec, series, T0)
    return evaluate(spec, baseline, series, T0, now)


def test_counter_falling_to_zero_rate_passes_after_a_full_window() -> None:
    overflows = counter(50, T0 - 30, T0) + [(t, 1500.0) for t, _ in flat(0, T0 + 1, T0 + 20)]
    series = Series(net__tcp__listen_overflows_total=overflows,
                    psi__cpu__some_avg10=flat(2.0, T0 - 30, T0 + 20))
    result = judge(SPEC, series, T0 + 12)
    assert result.verdict == "fixed"
    assert result.numbers["target.after_max"] == 0.0


def test_verdict_waits_until_a_full_after_window_exists() -> None:
    overflows = counter(50, T0 - 30, T0) + [(t, 1500.0) for t, _ in flat(0, T0 + 1, T0 + 5)]
    series = Series(net__tcp__listen_overflows_total=overflows)
    result = judge(SPEC, series, T0 + 5)
    assert result.verdict is None
    assert "full window" in result.reasons[0]


def test_guard_regression_fails_fast_with_its_numbers() -> None:
    overflows = counter(50, T0 - 30, T0 + 5)
    psi = flat(2.0, T0 - 30, T0) + flat(40.0, T0 + 1, T0 + 5)
    series = Series(net__tcp__listen_overflows_total=overflows, psi__cpu__some_avg10=psi)
    result = judge(SPEC, series, T0 + 5)
    assert result.verdict == "regressed"
    assert "guard psi.cpu.some_avg10 regressed" in result.reasons[0]
    assert result.numbers["guard.psi.cpu.some_avg10.after_median"] == 40.0


def test_a_single_spike_does_not_fail_a_guard() -> None:
    psi = [*flat(2.0, T0 - 30, T0), (T0 + 2, 2.0), (T0 + 3, 90.0), (T0 + 4, 2.0), (T0 + 5, 2.1)]
    overflows = counter(50, T0 - 30, T0) + [(t, 1500.0) for t, _ in flat(0, T0 + 1, T0 + 5)]
    series = Series(net__tcp__listen_overflows_total=overflows, psi__cpu__some_avg10=psi)
    assert judge(SPEC, series, T0 + 5).verdict is None


def test_guard_is_not_judged_on_one_sample() -> None:
    psi = [*flat(2.0, T0 - 30, T0), (T0 + 2, 90.0)]
    series = Series(net__tcp__listen_overflows_total=counter(50, T0 - 30, T0 + 2),
                    psi__cpu__some_avg10=psi)
    assert judge(SPEC, series, T0 + 2).verdict is None


def test_target_that_got_worse_fails() -> None:
    spec = VerifySpec(metric="app.latency_seconds", direction="down", window_seconds=10,
                      settle_seconds=0)
    series = Series(app__latency_seconds=flat(0.1, T0 - 20, T0) + flat(0.5, T0 + 1, T0 + 12))
    result = judge(spec, series, T0 + 12)
    assert result.verdict == "regressed" and "got worse" in result.reasons[0]


def test_down_needs_the_minimum_improvement() -> None:
    spec = VerifySpec(metric="app.latency_seconds", direction="down", window_seconds=10,
                      settle_seconds=0, min_change_percent=10)
    slightly = Series(app__latency_seconds=flat(1.0, T0 - 20, T0) + flat(0.95, T0 + 1, T0 + 12))
    clearly = Series(app__latency_seconds=flat(1.0, T0 - 20, T0) + flat(0.5, T0 + 1, T0 + 12))
    assert judge(spec, slightly, T0 + 12).verdict == "insufficient"
    assert judge(spec, clearly, T0 + 12).verdict == "fixed"


def test_below_threshold_uses_the_median() -> None:
    spec = VerifySpec(metric="gpu.0.temperature_celsius", direction="below", threshold=87,
                      window_seconds=5, settle_seconds=0)
    temps = flat(90.0, T0 - 10, T0) + [(T0 + i, v) for i, v in enumerate([89, 86, 85, 88, 84, 83])]
    assert judge(spec, Series(gpu__0__temperature_celsius=temps), T0 + 5).verdict == "fixed"


def test_up_direction_with_absolute_guard_increase() -> None:
    spec = VerifySpec(metric="app.throughput", direction="up", window_seconds=5, settle_seconds=0,
                      guards=(GuardSpec(metric="gpu.0.temperature_celsius", max_increase=3),))
    series = Series(app__throughput=flat(100, T0 - 10, T0) + flat(150, T0 + 1, T0 + 6),
                    gpu__0__temperature_celsius=flat(70, T0 - 10, T0) + flat(72, T0 + 1, T0 + 6))
    assert judge(spec, series, T0 + 6).verdict == "fixed"
    hotter = Series(app__throughput=flat(100, T0 - 10, T0) + flat(150, T0 + 1, T0 + 6),
                    gpu__0__temperature_celsius=flat(70, T0 - 10, T0) + flat(80, T0 + 1, T0 + 6))
    assert judge(spec, hotter, T0 + 6).verdict == "regressed"


def test_stats_are_robust_and_rates_skip_counter_resets() -> None:
    assert median([1, 2, 100]) == 2 and mad([1, 2, 3, 100]) == 1.0
    assert to_rates([(0, 0), (1, 10), (2, 3), (4, 7)]) == [(1, 10.0), (4, 2.0)]
    with pytest.raises(ValueError):
        median([])
