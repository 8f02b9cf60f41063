"""``LiveState``: what the running daemon shares with the dashboard (no database involved).

The daemon builds one from its metric window and LLM circuit breaker, e.g.
``WindowLive(window, llm=breaker.snapshot if settings.llm_enabled else None)``.
A dashboard running apart from the daemon passes ``live=None`` and charts come from the
store's rollups instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from healer.models import Sample


class LiveState(Protocol):
    """Latest sample, recent series and LLM circuit state, read by the web app."""

    def latest(self) -> Sample | None:
        """The newest sample, or None before the first cycle."""
        ...

    def series(self, name: str, seconds: float) -> Sequence[tuple[float, float]]:
        """(epoch seconds, value) points of ``name`` over the last ``seconds``, oldest first."""
        ...

    def llm_status(self) -> Mapping[str, Any] | None:
        """The LLM circuit breaker's snapshot (``state``, ...), or None when the LLM is off."""
        ...


class _Window(Protocol):
    def latest(self) -> Sample | None: ...

    def series(self, name: str, seconds: float) -> Iterable[tuple[float, float]]: ...


class WindowLive:
    """Adapts the daemon's ``MetricWindow`` (``latest()``, ``series(name, seconds)``)."""

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
