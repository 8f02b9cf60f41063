"""One ``LISTEN healer_events`` connection per control-plane replica, on its own thread.

Each notification's payload (a host id, or ``*`` for every host) is handed to
``on_event``; the web's event hub turns it into wake-ups of the long polls waiting on
this replica. The connection is one of the replica's own, outside the pool (a LISTEN
must stay on one session); when it drops, the thread reconnects with a backoff, and the
hub's polling covers the gap. Nothing here decides anything: a missed notification only
costs latency.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
import sqlalchemy as sa

from healer.logs import logfmt
from healer.store.repo_events import CHANNEL

log = logging.getLogger("healer.store.listen")
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)
POLL_SECONDS = 1.0  # how often the thread looks up from the socket to see if it must stop


def conninfo(engine: sa.Engine) -> str:
    """A libpq URI for ``engine``'s database (psycopg, not SQLAlchemy, syntax)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class EventListener:
    """``LISTEN healer_events`` until ``stop()``; calls ``on_event(payload)`` per notify."""

    def __init__(self, engine: sa.Engine, on_event: Callable[[str], None]) -> None:
        self._dsn = conninfo(engine)
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healer-listen", daemon=True)
        self.connected = threading.Event()  # set while LISTEN is in place

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except psycopg.Error as e:
                self.connected.clear()
                wait = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                log.warning(logfmt(msg="event listener lost its connection",
                                   error=str(e).splitlines()[0][:200], retry_seconds=wait))
                self._stop.wait(wait)

    def _listen(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=POLL_SECONDS):
                    self._on_event(note.payload)
        self.connected.clear()
