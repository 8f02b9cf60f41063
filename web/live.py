"""``LiveState``: what the agent shares with the dashboard (no database involved).

``healer serve`` started by ``healer run`` reads the root agent's live file
(``healer.live.LiveReader``); a test that runs the loop in-process adapts its metric window
with ``WindowLive``. A dashboard with no agent (a fleet control plane) passes ``live=None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

from healer.models import LiveSnapshot, Sample


class LiveState(Protocol):
    """Latest sample, recent series and LLM circuit state, read by the web app."""

    # True when the loop runs in another process (the agent), whose heartbeat is judged.
    separate_agent: bool

    def latest(self) -> Sample | None:
        """The newest sample, or None before the first cycle."""
        ...

    def series(self, name: str, seconds: float) -> Sequence[tuple[float, float]]:
        """(epoch seconds, value) points of ``name`` over the last ``seconds``, oldest first."""
        ...

    def llm_status(self) -> Mapping[str, Any] | None:
        """The LLM circuit breaker's snapshot (``state``, ...), or None when the LLM is off."""
        ...

    def agent(self) -> LiveSnapshot | None:
        """The agent's last published snapshot (heartbeat, lag, its own metrics); None when
        the loop runs in this process (tests)."""
        ...


class _Window(Protocol):
    def latest(self) -> Sample | None: ...

    def series(self, name: str, seconds: float) -> Iterable[tuple[float, float]]: ...


class WindowLive:
    """Adapts the daemon's ``MetricWindow`` (``latest()``, ``series(name, seconds)``)."""

    separate_agent = False

    def __init__(self, window: _Window,
                 llm: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self._window, self._llm = window, llm

    def latest(self) -> Sample | None:
        """The window's newest sample."""
        return self._window.latest()

    def series(self, name: str, seconds: float) -> Sequence[tuple[float, float]]:
        """The window's points for ``name`` as float pairs."""
        return [(float(t), float(v)) for t, v in self._window.series(name, seconds)]

    def llm_status(self) -> Mapping[str, Any] | None:
        """The breaker snapshot, or None when no LLM is configured."""
        return self._llm() if self._llm is not None else None

    def agent(self) -> LiveSnapshot | None:
        """None: the loop runs in this process."""
        return None


# The agent writes a heartbeat every cycle; one older than this many intervals means it is
# gone (crashed, stopped, or wedged before it could write): /healthz answers 503 and every
# page shows a banner.
DEAD_INTERVALS = 3.0


def agent_state(snapshot: LiveSnapshot | None, now: float, interval: float,
                started: float) -> Literal["alive", "dead"]:
    """``dead`` when the agent's heartbeat is older than ``DEAD_INTERVALS`` intervals, or it
    never wrote one that long after this process started."""
    if snapshot is None:
        return "dead" if now - started > DEAD_INTERVALS * interval else "alive"
    limit = DEAD_INTERVALS * snapshot.interval_seconds
    return "dead" if now - snapshot.written_at > limit else "alive"
