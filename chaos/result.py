"""One scenario's result, with the fields SCENARIOS.md names, plus the timeline for charts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

Outcome = str  # "verified" | "rolled_back" | "escalated" | "none"


@dataclass
class Timeline:
    """The key metric over time and the event markers on it, in wall-clock seconds.

    ``t0`` is the inject time; ``relative()`` gives seconds since it, as the charts draw.
    """

    metric: str = ""
    points: list[tuple[float, float]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    t0: float = 0.0

    def mark(self, label: str, at: float | None = None) -> None:
        """Add an event marker at wall time ``at`` (default now), once per label."""
        if any(lbl == label for _, lbl in self.events):
            return
        self.events.append((at or time.time(), label))

    def add(self, value: float, at: float | None = None) -> None:
        self.points.append((at or time.time(), value))

    def relative(self) -> dict[str, Any]:
        """``{"metric", "points": [[s, v]], "events": [[s, label]]}`` with s since inject."""
        t0 = self.t0 or (self.points[0][0] if self.points else 0.0)
        return {
            "metric": self.metric,
            "points": [[round(t - t0, 3), v] for t, v in list(self.points)],
            "events": sorted([round(t - t0, 3), lbl] for t, lbl in list(self.events)),
        }


@dataclass
class ScenarioResult:
    """The JSON object ``healer chaos run NAME --json`` prints."""

    scenario: str
    passed: bool = False
    detected: bool = False
    detect_seconds: float | None = None
    root_cause: str | None = None
    expected_root_cause: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    outcome: Outcome = "none"
    mttr_seconds: float | None = None
    steady_state_before: bool = False
    steady_state_after: bool = False
    host_untouched: bool = True
    # The fault's magnitude: {"value", "unit", "low", "high", "point", "seed"} (point: low,
    # middle, high, or draw with its seed), for scenarios whose severity is drawn.
    severity: dict[str, Any] | None = None
    # A convergence's steps: {"step", "id", "old", "new", "state", "outcome", "ceiling"};
    # "stopped": why it asked a person ("steps" or "ceiling"), if it did.
    steps: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None
    # Beyond the required fields: why, and what else was measured.
    skipped: bool = False
    skip_reason: str | None = None
    failures: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    duration_seconds: float = 0.0
    host_diff: dict[str, Any] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)

    @property
    def label(self) -> str:
        """The scenario's name, with its magnitude when it has one: cgroup-oom@high=600MB."""
        sev = self.severity
        if not sev:
            return self.scenario
        return f"{self.scenario}@{sev['point']}={sev['value']}{sev['unit']}"

    def fail(self, why: str) -> None:
        """Record a failed criterion (the result cannot pass any more)."""
        if why not in self.failures:
            self.failures.append(why)

    def to_dict(self, timeline: bool = False) -> dict[str, Any]:
        """The result as JSON; the timeline only when asked (reports carry it)."""
        d = asdict(self)
        d.pop("timeline")
        if timeline:
            d["timeline"] = self.timeline.relative()
        return d


class Sampler:
    """A background thread that records ``probe()`` once a second into a Timeline."""

    def __init__(self, tl: Timeline, probe: Callable[[], float | None], period: float = 1.0):
        self.tl, self.probe, self.period = tl, probe, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                v = self.probe()
            except Exception:
                v = None
            if v is not None:
                self.tl.add(float(v))
            self._stop.wait(self.period)
