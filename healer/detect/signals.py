"""Metric, process and GPU signals: pure functions over the window and the current sample.

Each evaluator returns ``Hit``s: a value, the labels it found (``{gpu}`` from a metric
name, ``pid`` from a process) and whether the condition holds. Holding a threshold for
a duration, and clearing it with hysteresis, is ``Hysteresis``'s small state machine.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from guardrails import linear
from healer.detect.view import WindowView
from healer.models import GpuState, ProcessInfo
from playbooks.operators import fill_template
from playbooks.schema import (
    Absent,
    Baseline,
    GpuProcessSignal,
    GpuThrottle,
    Op,
    ProcessPredicate,
    Rate,
    Threshold,
    Trend,
)

_OPS = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def compare(op: Op, a: float, b: float) -> bool:
    """Apply a named comparison operator."""
    return bool(_OPS[op](a, b))


@dataclass
class Hit:
    """One evaluation of a signal for one set of labels."""

    value: float
    captures: dict[str, str] = field(default_factory=dict)
    ok: bool = True
    count: int = 0  # kernel-log records matched this cycle
    window_count: int = 0  # ... and within the signal's window
    lines: tuple[str, ...] = ()
    key: tuple[str, str] | None = None  # kernel-log hits: their (scope, subject), known


_LABEL = re.compile(r"\{([a-z_]+)\}")  # over playbook text only


class MetricIndex:
    """Expands ``gpu.{gpu}.temperature_celsius`` against the window's metric names."""

    def __init__(self) -> None:
        self._names: frozenset[str] = frozenset()
        self._cache: dict[str, list[tuple[str, dict[str, str]]]] = {}

    def refresh(self, names: Iterable[str]) -> None:
        """Take this cycle's names; expansions are recomputed only when the set changes."""
        names = frozenset(names)
        if names != self._names:
            self._names = names
            self._cache.clear()

    def expand(self, pattern: str) -> list[tuple[str, dict[str, str]]]:
        """Concrete names matching ``pattern`` with their labels; a literal maps to itself."""
        if "{" not in pattern:
            return [(pattern, {})]
        if pattern not in self._cache:
            # The pattern is the playbook's; the names it meets hold cgroup paths that
            # tenants choose, so the match runs on RE2 (linear time).
            parts = _LABEL.split(pattern)  # literal, label, literal, label, ..., literal
            rx = linear.compile("^" + "".join(
                linear.escape(part) if i % 2 == 0 else f"(?P<{part}>\\S+?)"
                for i, part in enumerate(parts)) + "$")
            found = []
            for name in sorted(self._names):
                m = rx.match(name)
                if m:
                    found.append((name, m.groupdict()))
            self._cache[pattern] = found
        return self._cache[pattern]


def eval_threshold(sig: Threshold, metrics: Mapping[str, float], index: MetricIndex) -> list[Hit]:
    """Current value (or ratio) per concrete metric; ``ok`` is the firing condition."""
    hits = []
    for name, labels in index.expand(sig.metric):
        value = metrics.get(name)
        if value is None:
            continue
        if sig.divide_by is not None:
            denom = metrics.get(fill_template(sig.divide_by, labels))
            if not denom:
                continue
            value = value / denom
        hits.append(Hit(value, dict(labels), compare(sig.op, value, sig.value)))
    return hits


def eval_rate(sig: Rate, window: WindowView, index: MetricIndex) -> list[Hit]:
    hits = []
    for name, labels in index.expand(sig.metric):
        rate = window.rate(name, sig.seconds)
        if rate is not None:
            hits.append(Hit(rate, dict(labels), rate > sig.gt))
    return hits


def _deviation(sig: Baseline, history: Sequence[float], x: float) -> float:
    """Signed deviation of ``x`` in sigmas from the baseline of ``history``."""
    if sig.method == "ewma":  # exponentially weighted mean and variance (West 1979)
        mean, var = history[0], 0.0
        for v in history[1:]:
            diff = v - mean
            incr = sig.alpha * diff
            mean += incr
            var = (1 - sig.alpha) * (var + diff * incr)
        spread = math.sqrt(var)
    else:  # median and MAD, scaled to sigma for normal data
        mean = statistics.median(history)
        spread = 1.4826 * statistics.median(abs(v - mean) for v in history)
    delta = x - mean
    if abs(delta) < sig.min_delta or delta == 0:
        return 0.0
    return math.copysign(math.inf, delta) if spread == 0 else delta / spread


def eval_baseline(sig: Baseline, window: WindowView, index: MetricIndex) -> list[Hit]:
    hits = []
    for name, labels in index.expand(sig.metric):
        values = window.values(name, sig.history_seconds)
        if len(values) < sig.min_history + 1:
            continue  # not enough history to learn from: never fires
        dev = _deviation(sig, values[:-1], values[-1])
        ok = {"up": dev > sig.k, "down": dev < -sig.k, "both": abs(dev) > sig.k}[sig.direction]
        hits.append(Hit(values[-1], dict(labels), ok))
    return hits


def eval_absent(sig: Absent, window: WindowView, uptime: float) -> list[Hit]:
    if uptime < sig.seconds:
        return []  # the window is younger than the gap we look for
    return [Hit(sig.seconds, {}, not window.series(sig.metric, sig.seconds))]


def _process_value(sig: ProcessPredicate, p: ProcessInfo) -> float | None:
    raw = getattr(p, sig.field)
    if raw is None or raw < sig.min_field:
        return None
    if sig.ratio_of is None:
        return float(raw)
    denom = getattr(p, sig.ratio_of)
    return float(raw) / denom if denom else None


def eval_process(sig: ProcessPredicate, processes: Sequence[ProcessInfo]) -> list[Hit]:
    """Matching processes, largest first; each carries ``pid`` (and ``cgroup``) labels."""
    if sig.per == "cgroup":
        return _eval_per_cgroup(sig, processes)
    scored = []
    for p in processes:
        value = _process_value(sig, p)
        if value is not None and compare(sig.op, value, sig.value):
            scored.append((value, p))
    scored.sort(key=lambda vp: -vp[0])
    if sig.top:
        scored = scored[: sig.top]
    hits = []
    for value, p in scored:
        labels = {"pid": str(p.pid), "process": p.name[:64]}
        if p.cgroup:
            labels["cgroup"] = p.cgroup
        hits.append(Hit(value, labels))
    return hits


def _eval_per_cgroup(sig: ProcessPredicate, processes: Sequence[ProcessInfo]) -> list[Hit]:
    """The field summed per cgroup over the scanned processes; matches carry ``cgroup``."""
    totals: dict[str, float] = {}
    for p in processes:
        value = _process_value(sig, p)
        if p.cgroup and value is not None:
            totals[p.cgroup] = totals.get(p.cgroup, 0.0) + value
    scored = sorted(((v, cg) for cg, v in totals.items() if compare(sig.op, v, sig.value)),
                    key=lambda vc: -vc[0])
    if sig.top:
        scored = scored[: sig.top]
    return [Hit(value, {"cgroup": cg}) for value, cg in scored]


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope (units per second) of ``(ts, value)`` points."""
    n = len(points)
    ts, vs = zip(*points, strict=True)
    mt, mv = sum(ts) / n, sum(vs) / n
    den = num = 0.0
    for t, v in points:  # one pass: the detector runs this for every cgroup, every cycle
        dt = t - mt
        den += dt * dt
        num += dt * (v - mv)
    return 0.0 if den == 0 else num / den


def rising_fraction(points: Sequence[tuple[float, float]]) -> float:
    """The share of steps that go up: near 1 for a leak, near 0.5 for a sawtooth."""
    vals = [v for _, v in points]
    steps = [b - a for a, b in pairwise(vals) if b != a]
    return sum(1 for s in steps if s > 0) / len(steps) if steps else 0.0


def trend_holds(sig: Trend | GpuProcessSignal, points: Sequence[tuple[float, float]]) -> bool:
    """Whether a series has the trend the signal asks for."""
    s = slope(points)
    if isinstance(sig, GpuProcessSignal):
        return s > sig.slope_gt and rising_fraction(points) >= sig.rising_fraction
    if sig.slope_gt is not None:
        return s > sig.slope_gt and rising_fraction(points) >= sig.rising_fraction
    return sig.slope_le is not None and s <= sig.slope_le


def sustained(sig: Trend, points: Sequence[tuple[float, float]], end: float) -> bool:
    """Each of ``sig.segments`` equal slices of ``[end - seconds, end]`` has the slope alone."""
    width = sig.seconds / sig.segments
    for k in range(sig.segments):
        lo = end - sig.seconds + k * width
        part = [(t, v) for t, v in points if lo <= t <= lo + width]
        if len(part) < 2:
            return False  # the series does not span the window (a new cgroup, a gap)
        s = slope(part)
        if not (s > sig.slope_gt if sig.slope_gt is not None else s <= (sig.slope_le or 0.0)):
            return False
    return True


def eval_trend(sig: Trend, window: WindowView, index: MetricIndex,
               now: float | None = None) -> list[Hit]:
    """Slope per concrete metric over ``seconds`` (ending at ``now``, else the last point)."""
    hits = []
    for name, labels in index.expand(sig.metric):
        points = window.series(name, sig.seconds)
        if len(points) >= sig.min_points:
            ok = trend_holds(sig, points)
            if ok and sig.segments > 1:
                ok = sustained(sig, points, points[-1][0] if now is None else now)
            hits.append(Hit(slope(points), dict(labels), ok))
    if sig.when_missing:
        hits.append(Hit(0.0, {}, True))  # scopes without enough data take the declared default
    return hits


def eval_gpu_throttle(sig: GpuThrottle, gpus: Sequence[GpuState]) -> list[Hit]:
    hits = []
    words = [w.lower() for w in sig.reasons_contain]
    for gpu in gpus:
        if not gpu.present or not gpu.ok:
            continue
        reasons = [r.lower() for r in gpu.throttle_reasons]
        throttled = any(w in r for r in reasons for w in words)
        value = gpu.metrics.get(sig.metric, math.nan) if sig.metric else 1.0
        ok = throttled and (sig.metric is None or compare(sig.op, value, sig.value))
        hits.append(Hit(value, {"gpu": str(gpu.index)}, ok))
    return hits


def eval_gpu_hog(sig: GpuProcessSignal, gpus: Sequence[GpuState]) -> list[Hit]:
    """One process holds the SMs while another on the same GPU is starved."""
    hits = []
    for gpu in gpus:
        procs = [p for p in gpu.processes if p.sm_util_percent is not None]
        if len(procs) < 2:
            continue
        procs.sort(key=lambda p: -(p.sm_util_percent or 0.0))
        hog, victim = procs[0], procs[-1]
        hog_pct, victim_pct = hog.sm_util_percent or 0.0, victim.sm_util_percent or 0.0
        ok = hog_pct >= sig.hog_min_percent and victim_pct <= sig.victim_max_percent
        labels = {"gpu": str(gpu.index), "pid": str(hog.pid), "victim_pid": str(victim.pid)}
        hits.append(Hit(hog_pct, labels, ok))
    return hits


def eval_gpu_memory_trend(
    sig: GpuProcessSignal, history: Mapping[tuple[int, int], Sequence[tuple[float, float]]]
) -> list[Hit]:
    """Per (gpu, pid) memory history: steady growth is a leak."""
    hits = []
    for (gpu, pid), points in history.items():
        if len(points) >= sig.min_points:
            ok = trend_holds(sig, points)
            hits.append(Hit(slope(points), {"gpu": str(gpu), "pid": str(pid)}, ok))
    return hits


class Hysteresis:
    """Hold a condition for ``for_s`` before firing; hold its clearing for ``clear_for_s``."""

    def __init__(self) -> None:
        self.active = False
        self._true_since: float | None = None
        self._clear_since: float | None = None

    def update(self, firing: bool, clearing: bool, now: float, for_s: float,
               clear_for_s: float) -> bool:
        """Feed this cycle's raw conditions; returns whether the signal is active."""
        if not self.active:
            if not firing:
                self._true_since = None
            elif self._true_since is None:
                self._true_since = now
            if self._true_since is not None and now - self._true_since >= for_s:
                self.active, self._clear_since = True, None
        else:
            if not clearing:
                self._clear_since = None
            elif self._clear_since is None:
                self._clear_since = now
            if self._clear_since is not None and now - self._clear_since >= clear_for_s:
                self.active, self._true_since = False, None
        return self.active
