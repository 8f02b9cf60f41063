"""Long polls of ``GET /api/v1/agent/events``: who waits, and what wakes them.

A waiting request holds no thread and no database connection: it awaits a future on the
event loop. Two things resolve those futures, both naming the host (or every host):
PostgreSQL's ``NOTIFY`` (healer.store.listen, on a thread of its own, handed over with
``call_soon_threadsafe``), and a once-a-second look for newer events, for a notification
lost with its connection and for SQLite. A wake between a request's read and its wait is
not lost: each host has a generation number, taken before the read and compared before
waiting.

The hub keeps the newest events (of every host) in memory, read once per wake: a
broadcast (a pause) wakes every long poll at once, and each answers from this tail instead
of reading the table, one read per replica instead of one per agent. Event ids commit in
order (healer.store.repo_events), so the tail holds every event after ``_tail_from``; a
poll whose cursor is older reads the table as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

from healer.logs import logfmt
from healer.store.fleet_types import EventRow
from healer.store.listen import EventListener
from healer.store.repo_events import EVERY_HOST, PAGE
from healer.store.repository import Repository

log = logging.getLogger("healer.web.events")
POLL_SECONDS = 1.0
MAX_WAITERS = 20000  # long polls held at once by one replica; more are told to come back
TAIL_EVENTS = 10000  # the newest events kept in memory for the long polls
TAIL_READ = 2000  # events read at once into the tail


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
        self._seen = 0  # the newest event read into the tail
        self._tail: deque[EventRow] = deque()
        self._tail_from = -1  # the tail holds every event after this id (-1: none yet)
        self._reading: asyncio.Task[None] | None = None
        self._woken: set[str | None] = set()  # hosts to wake once the read in flight is done
        self._again = False
        self._refreshing = asyncio.Lock()
        self.stopping = False  # the replica is stopping: every long poll answers at once

    @property
    def waiting(self) -> int:
        """Long polls waiting now."""
        return self._waiting

    def tail(self, host_id: str, after: int, limit: int = PAGE) -> list[EventRow] | None:
        """``host_id``'s events (its own and every host's) after ``after`` from memory, up
        to ``limit``; None when the tail does not reach back that far (read the table)."""
        if self._tail_from < 0 or after < self._tail_from:
            return None
        found: list[EventRow] = []
        for row in reversed(self._tail):  # newest first: a cursor is usually near the end
            if row.id <= after:
                break
            if row.host_id is None or row.host_id == host_id:
                found.append(row)
        found.reverse()
        return found[:limit]

    def stop_waiting(self) -> None:
        """Answer every long poll now, and each one after at once: the replica is stopping,
        and its agents ask another replica. Called when the server's shutdown begins,
        before it waits for requests to finish and cancels the rest. On the event loop
        only."""
        self.stopping = True
        self.wake(None)

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
        if self.stopping or self.mark(host_id) != mark or timeout <= 0:
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
            self._tail_from = self._seen
        except Exception as e:  # no database yet: the poll starts from the first event
            log.warning(logfmt(msg="event hub starts without the newest event id",
                               error=str(e)[:200]))
        self._poller = loop.create_task(self._poll(), name="healer-events-poll")
        if self._listen:
            self._listener = EventListener(self._repo.engine, self._notified(loop))
            self._listener.start()

    def _notified(self, loop: asyncio.AbstractEventLoop) -> Callable[[str], None]:
        def hand_over(payload: str) -> None:
            loop.call_soon_threadsafe(self.notified, None if payload == EVERY_HOST else payload)

        return hand_over

    def notified(self, host_id: str | None) -> None:
        """An event for ``host_id`` (None: every host) was committed: read the new events
        into the tail, then wake that host's long polls. Notifications that come while a
        read is out share the next read. On the event loop only."""
        self._woken.add(host_id)
        if self._reading is not None and not self._reading.done():
            self._again = True
            return
        self._reading = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            self._again = False
            woken, self._woken = self._woken, set()
            for host in woken | await self._refresh():
                self.wake(host)
            if not self._again:
                return

    async def _refresh(self) -> set[str | None]:
        """Read the events after the newest in the tail (one read at a time); the hosts
        they are for."""
        hosts: set[str | None] = set()
        async with self._refreshing:
            while True:
                try:
                    rows = await run_in_threadpool(self._repo.events_since, self._seen,
                                                   TAIL_READ)
                except Exception as e:  # a database hiccup: polls read the table meanwhile
                    log.warning(logfmt(msg="event read failed", error=str(e)[:200]))
                    self._tail_from = -1
                    return {None}
                if self._tail_from < 0:
                    self._tail_from = self._seen
                self._tail.extend(rows)
                self._seen = rows[-1].id if rows else self._seen
                hosts.update(row.host_id for row in rows)
                while len(self._tail) > TAIL_EVENTS:
                    self._tail_from = self._tail.popleft().id
                if len(rows) < TAIL_READ:
                    return hosts

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            if self._reading is not None and not self._reading.done():
                continue
            for host in await self._refresh():
                self.wake(host)

    async def close(self) -> None:
        """Stop the poller, a read in flight and the listener (the app's shutdown)."""
        for task in (self._poller, self._reading):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._listener is not None:
            await run_in_threadpool(self._listener.stop)
