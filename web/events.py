"""Long polls of ``GET /api/v1/agent/events``: who waits, and what wakes them.

A waiting request holds no thread and no database connection: it awaits a future on the
event loop. Two things resolve those futures, both naming the host (or every host):
PostgreSQL's ``NOTIFY`` (healer.store.listen, on a thread of its own, handed over with
``call_soon_threadsafe``), and a once-a-second look at the newest event id, for a
notification lost with its connection and for SQLite. Either wake makes the request read
the events table again. A wake between a request's read and its wait is not lost: each
host has a generation number, taken before the read and compared before waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

from healer.logs import logfmt
from healer.store.listen import EventListener
from healer.store.repo_events import EVERY_HOST
from healer.store.repository import Repository

log = logging.getLogger("healer.web.events")
POLL_SECONDS = 1.0
MAX_WAITERS = 20000  # long polls held at once by one replica; more are told to come back


class TooManyWaiters(Exception):
    """This replica holds as many long polls as it takes (answered 429)."""


Mark = tuple[int, int]


class EventHub:
    """Wakes the long polls of one replica; started on the first one."""

    def __init__(self, repo: Repository, *, poll_seconds: float = POLL_SECONDS,
                 listen: bool = True, max_waiters: int = MAX_WAITERS) -> None:
        self._repo = repo
        self._poll_seconds = poll_seconds
        self._listen = listen and repo.engine.dialect.name == "postgresql"
        self._max = max_waiters
        self._generation: dict[str, int] = defaultdict(int)
        self._everyone = 0
        self._futures: dict[str, set[asyncio.Future[None]]] = defaultdict(set)
        self._waiting = 0
        self._started = False
        self._poller: asyncio.Task[None] | None = None
        self._listener: EventListener | None = None
        self._seen = 0

    @property
    def waiting(self) -> int:
        """Long polls waiting now."""
        return self._waiting

    def mark(self, host_id: str) -> Mark:
        """Where ``host_id``'s wake-ups stand: take it before reading the events."""
        return self._generation[host_id], self._everyone

    def wake(self, host_id: str | None) -> None:
        """Wake ``host_id``'s long polls (None: every host's). On the event loop only."""
        if host_id is None:
            self._everyone += 1
            hosts: list[str] = list(self._futures)
        else:
            self._generation[host_id] += 1
            hosts = [host_id]
        for host in hosts:
            for future in self._futures.get(host, ()):
                if not future.done():
                    future.set_result(None)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of this replica's long-poll slots; TooManyWaiters when none is free."""
        if self._waiting >= self._max:
            raise TooManyWaiters
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1

    async def wait(self, host_id: str, mark: Mark, timeout: float) -> None:
        """Return when ``host_id`` is woken after ``mark``, or after ``timeout`` seconds."""
        await self.start()
        if self.mark(host_id) != mark or timeout <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._futures[host_id]
        waiters.add(future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            waiters.discard(future)
            if not waiters:
                self._futures.pop(host_id, None)

    async def start(self) -> None:
        """Start the poll and the LISTEN thread (the app's startup; else the first wait)."""
        if self._started:
            return
        self._started = True  # before the first await: two first waiters start it once
        loop = asyncio.get_running_loop()
        try:
            self._seen = await run_in_threadpool(self._repo.latest_event_id)
        except Exception as e:  # no database yet: the poll starts from the first event
            log.warning(logfmt(msg="event hub starts without the newest event id",
                               error=str(e)[:200]))
        self._poller = loop.create_task(self._poll(), name="healer-events-poll")
        if self._listen:
            self._listener = EventListener(self._repo.engine, self._notified(loop))
            self._listener.start()

    def _notified(self, loop: asyncio.AbstractEventLoop) -> Callable[[str], None]:
        def hand_over(payload: str) -> None:
            loop.call_soon_threadsafe(self.wake, None if payload == EVERY_HOST else payload)

        return hand_over

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            try:
                newest, hosts = await run_in_threadpool(self._repo.event_hosts_after,
                                                        self._seen)
            except Exception as e:  # a database hiccup: the next round tries again
                log.warning(logfmt(msg="event poll failed", error=str(e)[:200]))
                continue
            self._seen = newest
            for host in hosts:
                self.wake(host)

    async def close(self) -> None:
        """Stop the poller and the listener (the app's shutdown)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._listener is not None:
            await run_in_threadpool(self._listener.stop)
