"""What verification compares, and what it concluded: frozen values, stored in the journal.

A ``VerifySpec`` is resolved from a playbook's ``verify`` block when the proposal enters
the journal (metric placeholders filled in from the incident), so a restarted daemon can
re-verify from the journal alone. ``VerifyResult.passed`` is True (keep), False (roll
back) or None (not enough evidence yet: keep waiting until the deadline).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from guardrails import linear
from healer.verify.quiet import KmsgPattern, patterns_from_signals
from healer.verify.slo import Slo

Direction = Literal["down", "up", "to_zero", "below", "above"]

# Guard metrics are "worse" when they rise, except these, which are worse when they fall
# (throughput, headroom, and the GPU's throughput proxies: its SM clock and per-process SM
# share, nvmlDeviceGetClockInfo / nvmlDeviceGetProcessUtilization).
_HIGHER_IS_BETTER = linear.compile(  # names hold cgroup paths: RE2

    r"throughput|available|free|_ops|per_second|goodput|accepted|clock_mhz|sm_util")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GuardSpec(_Frozen):
    """A metric that must not regress past an explicit tolerance while the change is tried."""

    metric: str
    max_regression_percent: float | None = Field(default=None, ge=0)
    max_increase: float | None = Field(default=None, ge=0)  # absolute, in the metric's units
    worse: Literal["up", "down"] = "up"


class VerifySpec(_Frozen):
    """The target metric and direction and/or quiet kernel-log patterns, the guards, and the
    windows and tolerances. ``quiet_kmsg``: any new matching line after the settle time fails
    the verification (the fix did not work: roll back); passing needs a full quiet window."""

    metric: str | None = None
    direction: Direction | None = None
    quiet_kmsg: tuple[KmsgPattern, ...] = ()
    slos: tuple[Slo, ...] = ()  # operator SLOs; when set they are the target (verify/slo.py)
    threshold: float | None = None  # for below / above
    rate: bool = False  # compare the per-second rate (counters; *_total always are)
    guards: tuple[GuardSpec, ...] = ()
    window_seconds: float = Field(default=30.0, gt=0)  # baseline length and judged after-window
    settle_seconds: float = Field(default=2.0, ge=0)  # samples right after the write are ignored
    min_samples: int = Field(default=3, ge=2)  # never judge on one sample
    min_change_percent: float = Field(default=10.0, ge=0)  # up/down: required improvement
    target_tolerance_percent: float = Field(default=20.0, ge=0)  # target worse than this: fail
    zero_tolerance: float = Field(default=0.0, ge=0)  # to_zero: the largest rate that counts as 0
    mad_k: float = Field(default=3.0, ge=0)  # noise floor: k * MAD of the baseline
    deadline_seconds: float | None = None  # default: settle + 3 windows

    @model_validator(mode="after")
    def _target(self) -> VerifySpec:
        if (self.metric is None) != (self.direction is None):
            raise ValueError("metric and direction go together")
        if self.metric is None and not self.quiet_kmsg and not self.slos:
            raise ValueError("give a metric and direction, quiet_kmsg patterns or slos")
        return self

    @property
    def deadline(self) -> float:
        """Seconds after the write by which verification must have passed."""
        if self.deadline_seconds is not None:
            return self.deadline_seconds
        return self.settle_seconds + 3 * self.window_seconds

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric verification reads: the target, then the guards."""
        target = () if self.metric is None else (self.metric,)
        return (*target, *(g.metric for g in self.guards))


class VerifyResult(_Frozen):
    """The verdict (None: keep waiting), the reasons, and the numbers behind it."""

    passed: bool | None
    reasons: tuple[str, ...] = ()
    numbers: dict[str, float] = Field(default_factory=dict)


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


def spec_from_playbook(verify: Any, labels: Mapping[str, str],
                       signals: Iterable[Any] = (), slos: Iterable[Slo] = ()
                       ) -> VerifySpec | None:
    """Build a VerifySpec from a ``playbooks.schema.Verify`` (and, for ``quiet_kmsg``, the
    playbook's detect signals); None when a metric cannot be named or nothing is checkable.
    With ``slo: true`` and declared ``slos``, the SLOs replace the metric target."""
    metric, direction, threshold = None, None, None
    slos = tuple(slos) if getattr(verify, "slo", False) else ()
    if verify.metric is not None and not slos:
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
    quiet = patterns_from_signals(signals, labels) if getattr(verify, "quiet_kmsg", False) else ()
    if metric is None and not quiet and not slos:
        return None  # quiet_kmsg without a kmsg signal to watch: nothing to verify on
    rate = getattr(verify, "rate_seconds", None) is not None
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
