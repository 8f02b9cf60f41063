"""Compare the window before a change with the window after it. Pure: series come in as data.

The baseline is summarized once, when the change is applied, and stored in the journal;
``evaluate`` then only needs the after-window, so a restarted daemon can finish the job.
Guards are judged as soon as ``min_samples`` after-samples exist (a regression rolls back
fast); the target only once a full window after the settle time has been seen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from healer.models import KmsgRecord
from healer.verify.quiet import matching
from healer.verify.slo import judge_slos
from healer.verify.spec import GuardSpec, VerifyResult, VerifySpec
from healer.verify.stats import Point, is_counter, median, summarize, to_rates, values_between

# (metric name, since, until) -> points; the daemon's metric window, or the store's samples.
SeriesFn = Callable[[str, float, float], Sequence[Point]]
Summary = Mapping[str, float]
# seconds -> the kernel-log records that arrived within the last ``seconds`` (the window's kmsg).
KmsgFn = Callable[[float], Sequence[KmsgRecord]]
CONTEXT_SLACK = 10.0  # seconds of older lines read only for their context captures


def _values(
    spec: VerifySpec, series: SeriesFn, name: str, since: float, until: float
) -> list[float]:
    # Rates need the point just before the window, so fetch a little earlier and cut after.
    rate = is_counter(name) or (spec.rate and name == spec.metric)
    if not rate:
        return values_between(series(name, since, until), since, until)
    points = series(name, since - spec.window_seconds, until)
    return values_between(to_rates(points), since, until)


def summarize_baseline(
    spec: VerifySpec, series: SeriesFn, applied_at: float
) -> dict[str, dict[str, float]]:
    """Summaries of every verified metric over the window that ends at the write."""
    out: dict[str, dict[str, float]] = {}
    for name in spec.metrics:
        values = _values(spec, series, name, applied_at - spec.window_seconds, applied_at)
        if values:
            out[name] = summarize(values)
    return out


def _noise(spec: VerifySpec, base: Summary, percent: float) -> float:
    return max(percent / 100 * abs(base["median"]), spec.mad_k * base["mad"])


def _guard(spec: VerifySpec, g: GuardSpec, base: Summary | None, after: list[float],
           numbers: dict[str, float]) -> str | None:
    """A reason when the guard regressed past its tolerance, else None."""
    if base is None or len(after) < spec.min_samples:
        return None
    after_med = median(after)
    if g.max_increase is not None:
        allowed = g.max_increase
    else:
        allowed = _noise(spec, base, g.max_regression_percent or 0.0)
    change = after_med - base["median"] if g.worse == "up" else base["median"] - after_med
    prefix = f"guard.{g.metric}"
    numbers |= {f"{prefix}.baseline_median": base["median"], f"{prefix}.after_median": after_med,
                f"{prefix}.allowed": allowed, f"{prefix}.after_n": float(len(after))}
    if change > allowed:
        return (f"guard {g.metric} regressed: {base['median']:g} -> {after_med:g} "
                f"(allowed {'+' if g.worse == 'up' else '-'}{allowed:g})")
    return None


def _quiet(spec: VerifySpec, kmsg: KmsgFn | None, start: float, now: float,
           numbers: dict[str, float]) -> tuple[bool | None, str]:
    """quiet_kmsg: False at the first new matching line after the settle time, else None."""
    if kmsg is None:
        return None, "quiet_kmsg: no kernel-log source to check"
    since = max(0.0, now - start)
    counted = {r.seq for r in kmsg(since)}
    records = kmsg(since + CONTEXT_SLACK)
    hits = sorted({r.seq for p in spec.quiet_kmsg for r in matching(p, records, counted)})
    numbers["kmsg.new_matches"] = float(len(hits))
    if hits:
        seqs = ", ".join(str(s) for s in hits[:5])
        return False, (f"{len(hits)} new kernel-log line(s) of the kind this fixes after the "
                       f"change (seq {seqs})")
    return None, f"no matching kernel-log line for {since:.0f} s"


def _target(spec: VerifySpec, base: Summary | None, after: list[float]) -> tuple[bool | None, str]:
    """Judge the target over a full after-window: pass, fail (worse), or undecided."""
    assert spec.metric is not None
    med = median(after)
    if base is not None:
        tol = _noise(spec, base, spec.target_tolerance_percent)
        lower_is_better = spec.direction in ("down", "to_zero", "below")
        worse_by = (med - base["median"]) if lower_is_better else (base["median"] - med)
        if worse_by > tol:
            return False, f"target {spec.metric} got worse: {base['median']:g} -> {med:g}"
    if spec.direction == "to_zero":
        ok = max(after) <= spec.zero_tolerance
    elif spec.direction in ("below", "above"):
        assert spec.threshold is not None
        ok = med < spec.threshold if spec.direction == "below" else med > spec.threshold
    elif base is None:
        return None, f"target {spec.metric}: no baseline to compare with"
    else:
        step = spec.min_change_percent / 100 * abs(base["median"])
        if spec.direction == "down":
            ok = med <= base["median"] - step and med < base["median"]
        else:
            ok = med >= base["median"] + step and med > base["median"]
    if ok:
        return True, f"target {spec.metric} {spec.direction}: median {med:g}"
    return None, f"target {spec.metric} not yet {spec.direction}: median {med:g}"


def evaluate(spec: VerifySpec, baseline: Mapping[str, Summary], series: SeriesFn,
             applied_at: float, now: float, kmsg: KmsgFn | None = None) -> VerifyResult:
    """Compare the after-window with the stored baseline; None means keep waiting."""
    numbers: dict[str, float] = {"after_seconds": max(0.0, now - applied_at)}
    start = applied_at + spec.settle_seconds
    for guard in spec.guards:
        after = _values(spec, series, guard.metric, start, now)
        reason = _guard(spec, guard, baseline.get(guard.metric), after, numbers)
        if reason:
            return VerifyResult(passed=False, reasons=(reason,), numbers=numbers)
    quiet: tuple[bool | None, str] = (True, "")
    if spec.quiet_kmsg and now >= start:
        quiet = _quiet(spec, kmsg, start, now, numbers)
        if quiet[0] is False:
            return VerifyResult(passed=False, reasons=(quiet[1],), numbers=numbers)
    if now - start < spec.window_seconds:
        return VerifyResult(passed=None, numbers=numbers, reasons=(
            f"waiting for a full window: {max(0.0, now - start):.1f}/{spec.window_seconds:g} s",))
    if spec.quiet_kmsg and kmsg is None:
        return VerifyResult(passed=None, reasons=(quiet[1],), numbers=numbers)
    if spec.slos:
        passed, reason = judge_slos(spec.slos, series, now - spec.window_seconds, now,
                                    spec.min_samples, numbers)
        return VerifyResult(passed=passed, reasons=(reason,), numbers=numbers)
    if spec.metric is None:
        return VerifyResult(passed=True, reasons=(quiet[1],), numbers=numbers)
    passed, reason = _judge_target(spec, baseline, series, now, numbers)
    reasons = (reason, quiet[1]) if quiet[1] else (reason,)
    return VerifyResult(passed=passed, reasons=reasons, numbers=numbers)


def _judge_target(spec: VerifySpec, baseline: Mapping[str, Summary], series: SeriesFn,
                  now: float, numbers: dict[str, float]) -> tuple[bool | None, str]:
    assert spec.metric is not None
    after = _values(spec, series, spec.metric, now - spec.window_seconds, now)
    if len(after) < spec.min_samples:
        return None, f"target {spec.metric}: {len(after)} samples, need {spec.min_samples}"
    base = baseline.get(spec.metric)
    numbers |= {"target.after_median": median(after), "target.after_max": max(after),
                "target.after_n": float(len(after))}
    if base is not None:
        numbers["target.baseline_median"] = base["median"]
    return _target(spec, base, after)
