"""What agents learn through ``GET /api/v1/agent/events``: votes, the pause, breakers,
alert incidents and fleet diagnoses, as rows whose ids are the agents' cursors.

``emit`` writes one inside the caller's transaction and, on PostgreSQL, sends
``NOTIFY healer_events, '<host_id>'`` (``'*'`` for every host) with it: PostgreSQL
delivers a notification only when its transaction commits, so a woken long poll always
finds the row. Writers take one advisory transaction lock first, so ids commit in the
order they were drawn and a cursor never skips a row committed late.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from healer.store.fleet_types import EventRow
from healer.store.repo_base import RepoBase
from healer.store.tables import EventTable

CHANNEL = "healer_events"
EVERY_HOST = "*"  # the NOTIFY payload of an event for every host
EVENTS_LOCK_KEY = 0x6865616C6576  # pg_advisory_xact_lock key: "healev"
PAGE = 200  # events per answer; an agent asks again at once for the rest


def advisory_key(text: str) -> int:
    """A signed 64-bit advisory lock key for ``text`` (the same in every process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def xact_lock(s: sa.Connection, key: int) -> None:
    """Hold PostgreSQL advisory lock ``key`` until this transaction ends. SQLite needs
    none: its writers are serialised already (BEGIN IMMEDIATE, healer.store.engine)."""
    if s.dialect.name == "postgresql":
        s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def try_xact_lock(s: sa.Connection, key: int) -> bool:
    """Take advisory lock ``key`` for this transaction if nobody holds it; True on SQLite."""
    if s.dialect.name != "postgresql":
        return True
    return bool(s.scalar(sa.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}))


def emit(s: sa.Connection, type: str, payload: dict[str, Any], host_id: str | None,
         now: datetime) -> None:
    """Queue an event for ``host_id`` (None: every host) in the caller's transaction."""
    xact_lock(s, EVENTS_LOCK_KEY)
    s.execute(sa.insert(EventTable).values(host_id=host_id, type=type, payload=payload,
                                           created_at=now))
    if s.dialect.name == "postgresql":
        s.execute(sa.text("SELECT pg_notify(:c, :p)"),
                  {"c": CHANNEL, "p": host_id if host_id is not None else EVERY_HOST})


class EventsRepo(RepoBase):
    """Reading the events table (writing is ``emit``, inside other writes)."""

    def events_after(self, host_id: str, after: int, limit: int = PAGE) -> list[EventRow]:
        """Events for ``host_id`` or every host with an id above ``after``, oldest first
        (a cursor older than the long-poll hub's memory, web.events)."""
        return self._events(after, limit, sa.or_(EventTable.c.host_id == host_id,
                                                 EventTable.c.host_id.is_(None)))

    def events_since(self, after: int, limit: int) -> list[EventRow]:
        """Every host's events with an id above ``after``, oldest first, up to ``limit``:
        what a replica's long-poll hub keeps in memory (web.events)."""
        return self._events(after, limit)

    def _events(self, after: int, limit: int, *where: sa.ColumnElement[bool]) -> list[EventRow]:
        q = (sa.select(EventTable.c.id, EventTable.c.host_id, EventTable.c.type,
                       EventTable.c.payload, EventTable.c.created_at)
             .where(EventTable.c.id > after, *where).order_by(EventTable.c.id).limit(limit))
        return [EventRow(id=i, host_id=h, type=t, payload=p, created_at=at)
                for i, h, t, p, at in self._probe(q)]

    def latest_event_id(self) -> int:
        """The newest event's id (0 when there is none)."""
        with self._tx(write=False) as s:
            return int(s.scalar(sa.select(sa.func.max(EventTable.c.id))) or 0)

    @contextmanager
    def one_replica(self, name: str) -> Iterator[bool]:
        """Hold session advisory lock ``name`` while the block runs, if no other replica
        holds it (``pg_try_advisory_lock``): yields whether this one got it. SQLite has one
        process writing anyway: always True."""
        if self._engine.dialect.name != "postgresql":
            yield True
            return
        key = advisory_key(f"healer-job:{name}")
        with self._engine.connect() as conn:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"),
                                    {"k": key}).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()

    def prune_events(self, before: datetime) -> int:
        """Drop events created before ``before``; returns how many."""
        with self._tx() as s:
            done = s.execute(sa.delete(EventTable).where(EventTable.c.created_at < before))
            return int(done.rowcount)
