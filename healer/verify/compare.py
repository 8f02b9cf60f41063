"""Compare the window before a change with the window after it. Pure: series come in as data.

The baseline is summarized once, when the change is applied, and stored in the journal;
``evaluate`` then only needs the after-window, so a restarted daemon can finish the job.
The verdicts (``healer.models.Verdict``):

- regressed: a guard got worse beyond its noise (judged as soon as ``min_samples``
  after-samples exist), or the symptom got worse than before (except after a capacity
  raise, ``VerifySpec.capacity``: there a symptom that goes on is never the raise's doing);
- insufficient: the symptom goes on, at the same rate or lower, and no guard regressed.
  Told early, once the symptom shows again after the settle time: a new kernel-log line of
  its kind, or ``min_samples`` after-points (the newest among them) short of the target;
  otherwise at the end of a full window. A symptom that looks worse early is not called
  worse until a full window shows it;
- fixed: the symptom stayed away for a full window after the settle time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from healer.models import GuardSpec, KmsgRecord, Summary, Verdict, VerifyResult, VerifySpec
from healer.verify.quiet import matching
from healer.verify.slo import judge_slos
from healer.verify.stats import Point, is_counter, median, summarize, to_rates, values_between

# (metric name, since, until) -> points; the daemon's metric window, or the store's samples.
SeriesFn = Callable[[str, float, float], Sequence[Point]]
# seconds -> the kernel-log records that arrived within the last ``seconds`` (the window's kmsg).
KmsgFn = Callable[[float], Sequence[KmsgRecord]]
CONTEXT_SLACK = 10.0  # seconds of older lines read only for their context captures
# Symptom lines after a change count as "worse than before" only past twice the number the
# rate before would give, plus this many: a handful of lines is noise, not a trend.
KMSG_WORSE_SLACK = 3.0
Outcome = tuple[Verdict | None, str]
SYMPTOMS = ("to_zero", "below", "above")  # targets that say "the symptom is gone"


def _values(
    spec: VerifySpec, series: SeriesFn, name: str, since: float, until: float
) -> list[float]:
    # Rates need the point just before the window, so fetch a little earlier and cut after.
    rate = is_counter(name) or (spec.rate and name == spec.metric)
    if not rate:
        return values_between(series(name, since, until), since, until)
    points = series(name, since - spec.window_seconds, until)
    return values_between(to_rates(points), since, until)


def summarize_baseline(spec: VerifySpec, series: SeriesFn, applied_at: float) -> dict[str, Summary]:
    """Summaries of every verified metric over the window that ends at the write.

    A symptom target (to_zero, below, above) is summarized from its onset on: the first
    point that missed the target. Before it the fault had not begun, and zeros from then
    would make the symptom look worse after any change. A symptom seen in fewer than
    ``min_samples`` points has no baseline: "worse than before" cannot be told."""
    out: dict[str, Summary] = {}
    for name in spec.metrics:
        values = _values(spec, series, name, applied_at - spec.window_seconds, applied_at)
        if name == spec.metric and spec.direction in SYMPTOMS:
            onset = next((i for i, v in enumerate(values) if not _met(spec, v)), len(values))
            values = values[onset:]
            if len(values) < spec.min_samples:
                continue
        if values:
            out[name] = Summary(**summarize(values))
    return out


def kmsg_baseline(spec: VerifySpec, kmsg: KmsgFn | None) -> float | None:
    """Symptom lines per second over the window that ends now (call it at the write)."""
    if not spec.quiet_kmsg or kmsg is None:
        return None
    counted = {r.seq for r in kmsg(spec.window_seconds)}
    records = kmsg(spec.window_seconds + CONTEXT_SLACK)
    hits = {r.seq for p in spec.quiet_kmsg for r, _ in matching(p, records, counted)}
    return len(hits) / spec.window_seconds


def _noise(spec: VerifySpec, base: Summary, percent: float) -> float:
    return max(percent / 100 * abs(base.median), spec.mad_k * base.mad)


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
    change = after_med - base.median if g.worse == "up" else base.median - after_med
    prefix = f"guard.{g.metric}"
    numbers |= {f"{prefix}.baseline_median": base.median, f"{prefix}.after_median": after_med,
                f"{prefix}.allowed": allowed, f"{prefix}.after_n": float(len(after))}
    if change > allowed:
        return (f"guard {g.metric} regressed: {base.median:g} -> {after_med:g} "
                f"(allowed {'+' if g.worse == 'up' else '-'}{allowed:g})")
    return None


def _new_lines(spec: VerifySpec, kmsg: KmsgFn, start: float, now: float,
               numbers: dict[str, float]) -> list[int]:
    """Symptom lines since ``start``; their numeric captures' largest values go to numbers
    as ``kmsg.max.<capture>`` (an OOM report's anon_rss_kb: evidence for the next step)."""
    since = max(0.0, now - start)
    counted = {r.seq for r in kmsg(since)}
    records = kmsg(since + CONTEXT_SLACK)
    seqs: set[int] = set()
    for pattern in spec.quiet_kmsg:
        for rec, caps in matching(pattern, records, counted):
            seqs.add(rec.seq)
            for name, value in caps.items():
                if value.isdigit() and len(value) <= 20:
                    key = f"kmsg.max.{name}"
                    numbers[key] = max(numbers.get(key, 0.0), float(value))
    numbers["kmsg.new_matches"] = float(len(seqs))
    return sorted(seqs)


def _kmsg_symptom(spec: VerifySpec, kmsg: KmsgFn, before: float | None, start: float,
                  now: float, numbers: dict[str, float]) -> Outcome:
    """insufficient (or regressed, when clearly worse) once symptom lines come back."""
    seqs = _new_lines(spec, kmsg, start, now, numbers)
    if not seqs:
        return None, ""
    n, expected = len(seqs), (before or 0.0) * max(0.0, now - start)
    numbers["kmsg.expected_at_rate_before"] = expected
    seen = (f"{n} kernel-log line(s) of its kind since the change "
            f"(seq {', '.join(str(q) for q in seqs[:5])}), about {expected:.1f} at the rate before")
    if n > 2 * expected + KMSG_WORSE_SLACK:
        if not spec.capacity:
            return "regressed", f"symptom worse than before: {seen}"
        return "insufficient", f"symptom continues, more often than before: {seen}"
    return "insufficient", f"symptom continues: {seen}"


def _met(spec: VerifySpec, value: float) -> bool:
    """One after-point reaches a to_zero/below/above target."""
    if spec.direction == "to_zero":
        return value <= spec.zero_tolerance
    assert spec.threshold is not None
    return value < spec.threshold if spec.direction == "below" else value > spec.threshold


def _worse(spec: VerifySpec, base: Summary | None, after: list[float]) -> bool:
    """The target is worse than before beyond its noise (never so for a capacity raise)."""
    if base is None or spec.capacity:
        return False
    med = median(after)
    lower_is_better = spec.direction in ("down", "to_zero", "below")
    worse_by = (med - base.median) if lower_is_better else (base.median - med)
    return worse_by > _noise(spec, base, spec.target_tolerance_percent)


def _target_numbers(spec: VerifySpec, base: Summary | None, after: list[float],
                    numbers: dict[str, float]) -> None:
    numbers |= {"target.after_median": median(after), "target.after_max": max(after),
                "target.after_n": float(len(after))}
    if base is not None:
        numbers["target.baseline_median"] = base.median


def _metric_symptom(spec: VerifySpec, baseline: Mapping[str, Summary], series: SeriesFn,
                    start: float, now: float, numbers: dict[str, float]) -> Outcome:
    """insufficient once ``min_samples`` after-points, the newest among them, miss the target
    and the symptom is not worse than before; None (not yet) otherwise."""
    if spec.metric is None or spec.direction not in SYMPTOMS:
        return None, ""
    after = _values(spec, series, spec.metric, start, now)
    missed = [v for v in after if not _met(spec, v)]
    if len(missed) < spec.min_samples or _met(spec, after[-1]):
        return None, ""
    base = baseline.get(spec.metric)
    if _worse(spec, base, after):
        return None, ""  # worse is judged on a full window, not on the first few points
    _target_numbers(spec, base, after, numbers)
    return "insufficient", (f"symptom continues: target {spec.metric} missed "
                            f"{spec.direction} in {len(missed)} of {len(after)} points "
                            f"(median {median(after):g}, max {max(after):g})")


def _target(spec: VerifySpec, base: Summary | None, after: list[float]) -> Outcome:
    """Judge the target over a full after-window."""
    assert spec.metric is not None
    med = median(after)
    if _worse(spec, base, after):
        assert base is not None
        return "regressed", f"target {spec.metric} got worse: {base.median:g} -> {med:g}"
    if spec.direction == "to_zero":
        ok = max(after) <= spec.zero_tolerance
    elif spec.direction in ("below", "above"):
        ok = _met(spec, med)
    elif base is None:
        return None, f"target {spec.metric}: no baseline to compare with"
    else:
        step = spec.min_change_percent / 100 * abs(base.median)
        if spec.direction == "down":
            ok = med <= base.median - step and med < base.median
        else:
            ok = med >= base.median + step and med > base.median
    if ok:
        return "fixed", f"target {spec.metric} {spec.direction}: median {med:g}"
    return "insufficient", f"target {spec.metric} not {spec.direction} yet: median {med:g}"


def evaluate(spec: VerifySpec, baseline: Mapping[str, Summary], series: SeriesFn,
             applied_at: float, now: float, kmsg: KmsgFn | None = None,
             kmsg_before: float | None = None) -> VerifyResult:
    """The verdict on the after-window so far; None means keep waiting. ``kmsg_before``:
    symptom lines per second before the change (``kmsg_baseline``)."""
    numbers: dict[str, float] = {"after_seconds": max(0.0, now - applied_at)}
    start = applied_at + spec.settle_seconds
    for guard in spec.guards:
        after = _values(spec, series, guard.metric, start, now)
        reason = _guard(spec, guard, baseline.get(guard.metric), after, numbers)
        if reason:
            return VerifyResult(verdict="regressed", reasons=(reason,), numbers=numbers)
    if now >= start:
        for outcome in _early(spec, baseline, series, kmsg, kmsg_before, start, now, numbers):
            if outcome[0] is not None:
                return VerifyResult(verdict=outcome[0], reasons=(outcome[1],), numbers=numbers)
    if now - start < spec.window_seconds:
        return VerifyResult(verdict=None, numbers=numbers, reasons=(
            f"waiting for a full window: {max(0.0, now - start):.1f}/{spec.window_seconds:g} s",))
    verdict, reasons = _full_window(spec, baseline, series, kmsg, start, now, numbers)
    return VerifyResult(verdict=verdict, reasons=tuple(r for r in reasons if r), numbers=numbers)


def _early(spec: VerifySpec, baseline: Mapping[str, Summary], series: SeriesFn,
           kmsg: KmsgFn | None, kmsg_before: float | None, start: float, now: float,
           numbers: dict[str, float]) -> Iterator[Outcome]:
    """The symptom's early signs, in order: its kernel-log lines, then its metric."""
    if spec.quiet_kmsg and kmsg is not None:
        yield _kmsg_symptom(spec, kmsg, kmsg_before, start, now, numbers)
    yield _metric_symptom(spec, baseline, series, start, now, numbers)


def _full_window(spec: VerifySpec, baseline: Mapping[str, Summary], series: SeriesFn,
                 kmsg: KmsgFn | None, start: float, now: float,
                 numbers: dict[str, float]) -> tuple[Verdict | None, tuple[str, ...]]:
    quiet = ""
    if spec.quiet_kmsg:
        if kmsg is None:
            return None, ("quiet_kmsg: no kernel-log source to check",)
        quiet = f"no matching kernel-log line for {now - start:.0f} s"
    if spec.slos:
        verdict, reason = judge_slos(spec.slos, series, now - spec.window_seconds, now,
                                     spec.min_samples, numbers)
        return verdict, (reason,)
    if spec.metric is None:
        return "fixed", (quiet,)
    after = _values(spec, series, spec.metric, now - spec.window_seconds, now)
    if len(after) < spec.min_samples:
        return None, (f"target {spec.metric}: {len(after)} samples, need {spec.min_samples}",)
    base = baseline.get(spec.metric)
    _target_numbers(spec, base, after, numbers)
    verdict, reason = _target(spec, base, after)
    return verdict, (reason, quiet)
