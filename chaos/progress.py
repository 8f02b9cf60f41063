"""Progress while a suite runs: a live status line per scenario on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from chaos.result import ScenarioResult

_SPIN = "|/-\\"


class Progress:
    """Writes to stream (stderr) only when it is a TTY; machine output stays on stdout."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.total, self.done = total, 0
        self._started: dict[str, float] = {}
        self._tick = 0

    def status(self, scenario: str, text: str) -> None:
        """Rewrite the current scenario's line."""
        if not self.live:
            return
        t0 = self._started.setdefault(scenario, time.monotonic())
        self._tick += 1
        line = (
            f"[{self.done + 1}/{self.total}] {_SPIN[self._tick % 4]} {scenario:<22} "
            f"{time.monotonic() - t0:5.0f}s  {text}"
        )
        self.stream.write("\r\033[K" + line[:150])
        self.stream.flush()

    def finished(self, r: ScenarioResult) -> None:
        """Replace the live line with the scenario's verdict."""
        self.done += 1
        if not self.live:
            return
        mark = "SKIP" if r.skipped else ("PASS" if r.passed else "FAIL")
        why = r.skip_reason if r.skipped else "; ".join(r.failures)[:90]
        det = f"detect {r.detect_seconds:.1f}s" if r.detect_seconds is not None else ""
        mttr = f"mttr {r.mttr_seconds:.1f}s" if r.mttr_seconds is not None else ""
        self.stream.write(
            f"\r\033[K{mark} {r.scenario:<22} {r.duration_seconds:5.0f}s  "
            f"{det:<14}{mttr:<13}{why}\n"
        )
        self.stream.flush()
