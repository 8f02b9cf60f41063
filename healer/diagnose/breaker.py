"""A circuit breaker for the LLM endpoint: after N consecutive failures, stop calling.

States follow the classic pattern (closed -> open -> half_open -> closed): while open no
request is made; after the cool-down one trial call is let through, and its outcome
closes or re-opens the circuit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from healer.telemetry import Telemetry

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Thread-safe; ``telemetry.llm_circuit_open`` mirrors whether it is open."""

    def __init__(self, failure_threshold: int = 5, cooldown_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 telemetry: Telemetry | None = None) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._telemetry = telemetry
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> BreakerState:
        """closed, open (no calls), or half_open (the cool-down is over)."""
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown_seconds:
            return "open"
        return "half_open"

    def allow(self) -> bool:
        """True when a call may be made now (one trial at a time when half open)."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half_open" and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False
        self._export(False)

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._opened_at is not None or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            opened = self._opened_at is not None
        self._export(opened)

    def snapshot(self) -> dict[str, object]:
        """State for the UI: state, consecutive failures, seconds until a retry."""
        with self._lock:
            state = self._state()
            retry_in = 0.0
            if self._opened_at is not None:
                retry_in = max(0.0, self.cooldown_seconds - (self._clock() - self._opened_at))
            failures = self._failures
        self._export(state == "open")
        return {"state": state, "consecutive_failures": failures, "retry_in_seconds": retry_in}

    def _export(self, is_open: bool) -> None:
        if self._telemetry is not None:
            self._telemetry.llm_circuit_open.set(1 if is_open else 0)
