"""A daemon thread that runs a few periodic steps, each deciding when it runs again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from healer.logs import logfmt

log = logging.getLogger("healer.fleet")

Step = Callable[[], float]  # does one round; returns seconds until it wants to run again
ERROR_PAUSE = 5.0  # after a step's bug: the thread lives on, and does not spin


class Worker:
    """Runs ``steps`` on one thread, soonest due first, until ``stop``; ``wake`` makes every
    step, or one, due now."""

    def __init__(self, name: str, steps: Sequence[Step], *,
                 abort: Callable[[], None] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._steps = list(steps)
        self._due = [0.0] * len(self._steps)
        self._abort = abort  # ends a request in flight (a long poll) at once on stop
        self._mono = monotonic
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self, step: int | None = None, after: float = 0.0) -> None:
        """Run every step (or the one at index ``step``) as soon as the thread is free, or
        ``after`` seconds from now (when that is sooner than it was due)."""
        due = self._mono() + after if after > 0 else 0.0
        if step is None:
            self._due = [min(d, due) for d in self._due]
        else:
            self._due[step] = min(self._due[step], due)
        self._wake.set()

    def stop(self) -> None:
        """Ask the thread to end, cutting a request in flight short; ``join`` waits."""
        self._stop.set()
        self._wake.set()
        if self._abort is not None:
            self._abort()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self._mono()
            i = min(range(len(self._steps)), key=self._due.__getitem__)
            if self._due[i] > now:
                self._wake.wait(self._due[i] - now)
                self._wake.clear()
                continue
            try:
                delay = self._steps[i]()
            except Exception:  # a bug in one round must not end the thread
                log.exception(logfmt(msg="fleet step failed", thread=self.name))
                delay = ERROR_PAUSE
            self._due[i] = self._mono() + max(0.0, delay)
