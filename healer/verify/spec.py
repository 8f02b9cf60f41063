"""Resolve a playbook's ``verify`` block into the ``VerifySpec`` the journal stores.

A ``VerifySpec`` (healer.models) is resolved when the proposal enters the journal (metric
placeholders filled in from the incident), so a restarted daemon can re-verify from the
journal alone. Its ``VerifyResult.verdict`` is fixed (keep), insufficient (keep; a
convergence steps again), regressed (roll back) or None (not enough evidence yet).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

from guardrails import linear
from healer.models import Direction, GuardSpec, Slo, VerifySpec
from healer.verify.quiet import patterns_from_signals
from playbooks.schema import Signal, Verify

# Guard metrics are "worse" when they rise, except these, which are worse when they fall
# (throughput, headroom, and the GPU's throughput proxies: its SM clock and per-process SM
# share, nvmlDeviceGetClockInfo / nvmlDeviceGetProcessUtilization).
_HIGHER_IS_BETTER = linear.compile(  # names hold cgroup paths: RE2

    r"throughput|available|free|_ops|per_second|goodput|accepted|clock_mhz|sm_util")


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill_placeholders(metric: str, labels: Mapping[str, str]) -> str | None:
    """Replace ``{label}`` parts of a metric name; None when a label is unknown."""
    missing = [m for m in _PLACEHOLDER.findall(metric) if m not in labels]
    if missing:
        return None
    return _PLACEHOLDER.sub(lambda m: labels[m.group(1)], metric)


def parse_direction(text: str) -> tuple[Direction, float | None]:
    """``down|up|to_zero|below:X|above:X`` as the playbook schema spells it."""
    name, _, number = text.partition(":")
    if name in ("below", "above"):
        return name, float(number)  # type: ignore[return-value]
    if name in ("down", "up", "to_zero"):
        return name, None  # type: ignore[return-value]
    raise ValueError(f"unknown verify direction {text!r}")


def spec_from_playbook(verify: Verify, labels: Mapping[str, str],
                       signals: Iterable[Signal] = (), slos: Iterable[Slo] = ()
                       ) -> VerifySpec | None:
    """Build a VerifySpec from a ``playbooks.schema.Verify`` (and, for ``quiet_kmsg``, the
    playbook's detect signals); None when a metric cannot be named or nothing is checkable.
    With ``slo: true`` and declared ``slos``, the SLOs replace the metric target."""
    metric, direction, threshold = None, None, None
    slos = tuple(slos) if verify.slo else ()
    if verify.metric is not None and verify.direction is not None and not slos:
        metric = resolve_metric(verify.metric, labels)
        if metric is None:
            return None
        direction, threshold = parse_direction(verify.direction)
    guards = []
    for guard in verify.guards:
        name = fill_placeholders(guard.metric, labels)
        if name is None:
            return None
        worse: Literal["up", "down"] = "down" if _HIGHER_IS_BETTER.search(name) else "up"
        guards.append(GuardSpec(metric=name, max_regression_percent=guard.max_regression_percent,
                                max_increase=guard.max_increase, worse=worse))
    quiet = patterns_from_signals(signals, labels) if verify.quiet_kmsg else ()
    if metric is None and not quiet and not slos:
        return None  # quiet_kmsg without a kmsg signal to watch: nothing to verify on
    rate = verify.rate_seconds is not None
    # A process scan comes every few seconds, not every cycle: two scans must do.
    min_samples = 2 if metric is not None and metric.startswith("process.") else 3
    return VerifySpec(metric=metric, direction=direction, threshold=threshold, rate=rate,
                      quiet_kmsg=quiet, slos=slos, guards=tuple(guards), min_samples=min_samples,
                      window_seconds=verify.window_seconds)


def resolve_metric(metric: str, labels: Mapping[str, str]) -> str | None:
    """Fill placeholders; a per-process metric (``process.<field>``) is pinned to the pid."""
    name = fill_placeholders(metric, labels)
    if name is None:
        return None
    head, _, field = name.partition(".")
    if head == "process" and "." not in field:
        pid = labels.get("pid", "")
        return f"process.{pid}.{field}" if pid.isdigit() else None
    return name
