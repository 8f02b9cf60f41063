"""What the fleet client's threads last learned, for the engine and the loop to read.

The threads write it as answers arrive; the sampling cycle only reads it, so nothing the
network does can hold the cycle up. Every field is behind one lock.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from healer.fleet.wire import Remedy
from healer.logs import logfmt

log = logging.getLogger("healer.fleet")


def jittered(seconds: float, fraction: float = 0.2, rng: random.Random | None = None) -> float:
    """``seconds`` ± ``fraction`` of it, at random: a fleet's agents do not call together."""
    spread = seconds * fraction
    return max(0.0, seconds + (rng or random).uniform(-spread, spread))


class FleetState:
    """The kill switch, the open breakers, reachability and clock skew."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._mono = monotonic
        self._paused = False
        self._breakers: set[Remedy] = set()
        self._last_ok: float | None = None
        self._failing_since: float | None = None
        self.started = monotonic()
        self.skew_seconds: float | None = None  # control plane's clock minus ours
        self.outdated: str | None = None  # why the control plane refuses this version

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def set_paused(self, paused: bool, source: str) -> None:
        """The fleet's kill switch (an event, or a heartbeat's answer)."""
        with self._lock:
            changed, self._paused = self._paused != paused, paused
        if changed:
            log.warning(logfmt(msg="fleet paused: no automatic change starts" if paused
                               else "fleet resumed", source=source))

    def set_breaker(self, remedy: Remedy, is_open: bool) -> None:
        """A remedy's circuit breaker opened or closed."""
        with self._lock:
            if is_open:
                self._breakers.add(remedy)
            else:
                self._breakers.discard(remedy)
        log.warning(logfmt(msg=f"fleet breaker {'open' if is_open else 'closed'}",
                           playbook=remedy.playbook, kind=remedy.kind, target=remedy.target))

    def breaker_open(self, remedy: Remedy) -> bool:
        with self._lock:
            return remedy in self._breakers

    def answered(self) -> None:
        """The control plane answered (any status it chose to send)."""
        with self._lock:
            self._last_ok, self._failing_since = self._mono(), None

    def unanswered(self) -> None:
        """A request got no answer at all."""
        with self._lock:
            if self._failing_since is None:
                self._failing_since = self._mono()

    def unreachable_for(self) -> float:
        """Seconds since the control plane last answered, while it does not (0: it does);
        never reached since start counts from the start."""
        with self._lock:
            if self._failing_since is None and self._last_ok is not None:
                return 0.0
            since = self._failing_since if self._last_ok is not None else self.started
            return max(0.0, self._mono() - (since or self.started))
