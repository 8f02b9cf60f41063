"""Operator-declared service-level objectives: the workload's own word on "recovered".

``Settings.slo_metrics`` lists objectives such as ``textfile.app_latency_seconds<=0.05``
or ``textfile.app_p95_seconds<=textfile.app_slo_seconds`` (an application that reports its
own objective). A playbook whose ``verify`` says ``slo: true`` is verified on them when
any are declared: every objective must hold (the median of the after-window meets it).
Host-level signals such as PSI can stay high after a good fix (a hog still runs, at a
lower weight); the application's objective is what the fix is for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from healer.models import Slo, Verdict
from healer.verify.stats import Point, median, values_between

_CMP: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b, "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b, ">": lambda a, b: a > b,
}
SeriesFn = Callable[[str, float, float], Sequence[Point]]


def parse_slos(texts: Iterable[str]) -> tuple[Slo, ...]:
    """Every declared objective, parsed."""
    return tuple(Slo.parse(t) for t in texts)


def judge_slos(slos: Sequence[Slo], series: SeriesFn, since: float, until: float,
               min_samples: int, numbers: dict[str, float]) -> tuple[Verdict | None, str]:
    """fixed when every objective holds over [since, until]; insufficient while any does
    not; None while any lacks ``min_samples`` points (or its objective)."""
    missed = []
    for slo in slos:
        vals = values_between(series(slo.metric, since, until), since, until)
        goal: float | None = slo.objective
        if slo.objective_metric is not None:
            goals = values_between(series(slo.objective_metric, since, until), since, until)
            goal = median(goals) if goals else None
        if len(vals) < min_samples or goal is None:
            return None, f"SLO {slo}: {len(vals)} samples, need {min_samples}"
        med = median(vals)
        numbers |= {f"slo.{slo.metric}.after_median": med, f"slo.{slo.metric}.objective": goal}
        if not _CMP[slo.op](med, goal):
            missed.append(f"{slo.metric} median {med:g} (objective {slo.op}{goal:g})")
    if missed:
        return "insufficient", "SLO not met: " + "; ".join(missed)
    return "fixed", "every SLO met: " + ", ".join(str(s) for s in slos)
