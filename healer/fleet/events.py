"""The events long poll: what the control plane tells this host, within about two seconds.

``GET /events`` is held up to 25 s and answered at once when something is pending. The
kill switch and breakers take effect here, on arrival (healer.fleet.state): the engine
reads them on its next cycle, so a pause stops new changes within a cycle of the event.
A turn (a lease of a remedy this host waits for ended) ends the lease client's wait, so
the next cycle asks again.
Votes, alerts and fleet diagnoses change the journal and the incidents, which only the
sampling cycle does: they wait in the inbox for ``FleetLink.drain``. The cursor is kept in
the store once the events before it were handled, so a restart replays what it did not
finish (each is idempotent: a vote per person, an alert per fingerprint).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from healer.fleet.sender import Backoff
from healer.fleet.state import FleetState, jittered
from healer.fleet.transport import Backpressure, FleetError, Outdated, Transport
from healer.fleet.wire import (
    EVENT,
    BreakerEvent,
    DiagnosisEvent,
    EventsReply,
    IncidentEvent,
    PauseEvent,
    Remedy,
    ResumeEvent,
    TurnEvent,
    VoteEvent,
)
from healer.logs import logfmt
from healer.store.repository import Repository

log = logging.getLogger("healer.fleet")

LONG_POLL_SECONDS = 25  # the protocol's longest hold
SLACK_SECONDS = 10.0  # socket timeout beyond the hold
OUTDATED_RETRY = 60.0
CURSOR_KEY = "events_cursor"
KV_NAMESPACE = "fleet"

CycleEvent = VoteEvent | IncidentEvent | DiagnosisEvent


@dataclass(frozen=True)
class Batch:
    """Events for the sampling cycle, and the cursor to keep once they are handled."""

    cursor: str
    events: tuple[CycleEvent, ...]


@dataclass
class EventPoller:
    """One long poll per step; ``inbox`` holds what the cycle must handle."""

    transport: Transport
    repo: Repository
    state: FleetState
    wait_seconds: int = LONG_POLL_SECONDS
    on_turn: Callable[[Remedy], None] = lambda remedy: None  # the lease client's ``turn``
    inbox: deque[Batch] = field(default_factory=deque)
    _cursor: str | None = None
    _backoff: Backoff = field(default_factory=Backoff)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def poll(self) -> float:
        """Wait for events (up to ``wait_seconds``); seconds before the next poll."""
        if self._cursor is None:
            self._cursor = self.repo.kv_get(KV_NAMESPACE, CURSOR_KEY) or ""
        query: dict[str, str | int] = {"host_id": self.repo.host_id, "after": self._cursor,
                                       "wait": self.wait_seconds}
        try:
            raw = self.transport.call("GET", "events", query=query,
                                      timeout=self.wait_seconds + SLACK_SECONDS)
            self.state.answered()
            reply = EventsReply.model_validate(raw)
        except Backpressure as exc:
            self.state.answered()
            return jittered(exc.retry_after, 0.2)
        except Outdated:
            self.state.answered()
            return jittered(OUTDATED_RETRY)
        except FleetError as exc:
            log.info(logfmt(msg="events: no answer from the control plane", error=exc))
            self.state.unanswered()
            return self._backoff.next()
        except ValidationError:
            log.error(logfmt(msg="events answer does not validate"))
            return self._backoff.next()
        self._backoff.reset()
        self._take(reply)
        return 0.0

    def _take(self, reply: EventsReply) -> None:
        for_cycle: list[CycleEvent] = []
        for raw in reply.events:
            try:
                event = EVENT.validate_python(raw)
            except ValidationError:
                log.warning(logfmt(msg="event ignored: unknown or malformed",
                                   type=str(raw.get("type"))[:40]))
                continue
            if isinstance(event, PauseEvent):
                self.state.set_paused(True, "event")
            elif isinstance(event, ResumeEvent):
                if event.remedy is None:
                    self.state.set_paused(False, "event")
                else:
                    self.state.set_breaker(event.remedy, False)
            elif isinstance(event, BreakerEvent):
                self.state.set_breaker(event.remedy, event.open)
            elif isinstance(event, TurnEvent):
                self.on_turn(event.remedy)
            else:
                for_cycle.append(event)
        cursor = reply.cursor or self._cursor or ""
        self._cursor = cursor
        with self._lock:
            # Behind batches not yet handled, the cursor waits its turn in the inbox too.
            queued = bool(for_cycle or self.inbox)
            if queued:
                self.inbox.append(Batch(cursor, tuple(for_cycle)))
        if not queued and reply.events:
            self.keep_cursor(cursor)

    def take(self) -> list[Batch]:
        """Every batch waiting for the cycle (the cycle thread)."""
        with self._lock:
            batches = list(self.inbox)
            self.inbox.clear()
        return batches

    def keep_cursor(self, cursor: str) -> None:
        """Remember ``cursor`` across restarts: everything before it was handled."""
        self.repo.kv_put(KV_NAMESPACE, CURSOR_KEY, cursor)
