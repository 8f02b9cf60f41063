"""The notification outbox and the small key/value store."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from healer.store.repo_base import RepoBase, _insert, get_row
from healer.store.rows import OutboxRow
from healer.store.tables import KvTable, OutboxTable

MAX_ERROR_LEN = 2000


def _outbox(r: sa.Row[Any]) -> OutboxRow:
    return OutboxRow(
        id=r.id,
        channel=r.channel,
        event=r.event,
        payload=r.payload,
        dedupe_key=r.dedupe_key,
        attempts=r.attempts,
        next_attempt=r.next_attempt,
        delivered_at=r.delivered_at,
        last_error=r.last_error,
        dead=r.dead,
    )


class OutboxRepo(RepoBase):
    """At-least-once delivery bookkeeping, idempotent by (channel, dedupe_key)."""

    def enqueue_notification(
        self, channel: str, event: str, payload: dict[str, Any], dedupe_key: str
    ) -> bool:
        """Queue one message for one channel; False if this channel already has the key."""
        now = self.now()
        row = {
            "host_id": self.host_id,
            "channel": channel,
            "event": event,
            "payload": payload,
            "dedupe_key": dedupe_key,
            "attempts": 0,
            "next_attempt": now,
            "created_at": now,
            "delivered_at": None,
            "last_error": None,
            "dead": False,
        }
        keys = ("host_id", "channel", "dedupe_key")
        with self._tx() as s:
            return self._insert_ignore(s, OutboxTable, [row], keys) == 1

    def due_notifications(self, now: datetime, limit: int = 50) -> list[OutboxRow]:
        """Undelivered, live messages whose next attempt is due, oldest due first."""
        q = (
            sa.select(OutboxTable)
            .where(
                OutboxTable.c.host_id == self.host_id,
                OutboxTable.c.delivered_at.is_(None),
                OutboxTable.c.dead.is_(False),
                OutboxTable.c.next_attempt <= now,
            )
            .order_by(OutboxTable.c.next_attempt, OutboxTable.c.id)
            .limit(limit)
        )
        with self._tx(write=False) as s:
            return [_outbox(r) for r in s.execute(q)]

    def get_notification(self, id: int) -> OutboxRow | None:
        """One outbox row by id."""
        with self._tx(write=False) as s:
            row = get_row(s, OutboxTable, id)
            return None if row is None else _outbox(row)

    def mark_delivered(self, id: int, at: datetime) -> None:
        """Record a successful delivery (counts as an attempt)."""
        with self._tx() as s:
            s.execute(
                sa.update(OutboxTable)
                .where(OutboxTable.c.id == id, OutboxTable.c.delivered_at.is_(None))
                .values(delivered_at=at, attempts=OutboxTable.c.attempts + 1, last_error=None)
            )

    def mark_failed(self, id: int, error: str, next_attempt: datetime, give_up: bool) -> None:
        """Record a failed attempt and when to try again; give_up marks the row dead."""
        with self._tx() as s:
            s.execute(
                sa.update(OutboxTable)
                .where(OutboxTable.c.id == id, OutboxTable.c.delivered_at.is_(None))
                .values(
                    attempts=OutboxTable.c.attempts + 1,
                    last_error=error[:MAX_ERROR_LEN],
                    next_attempt=next_attempt,
                    dead=give_up,
                )
            )

    # -- kv ----------------------------------------------------------------------------
    def kv_get(self, namespace: str, key: str) -> str | None:
        """The value, or None when absent or expired."""
        q = sa.select(KvTable.c.value).where(
            KvTable.c.host_id == self.host_id,
            KvTable.c.namespace == namespace,
            KvTable.c.key == key,
            sa.or_(KvTable.c.expires_at.is_(None), KvTable.c.expires_at > self.now()),
        )
        with self._tx(write=False) as s:
            return s.scalar(q)

    def kv_put(
        self, namespace: str, key: str, value: str, ttl_seconds: float | None = None
    ) -> None:
        """Insert or replace a value; it disappears after ttl_seconds when given."""
        now = self.now()
        expires = None if ttl_seconds is None else now + timedelta(seconds=ttl_seconds)
        row = {"host_id": self.host_id, "namespace": namespace, "key": key, "value": value,
               "expires_at": expires, "updated_at": now}
        with self._tx() as s:
            self._upsert(s, KvTable, row, ("host_id", "namespace", "key"),
                         ("value", "expires_at", "updated_at"))

    def kv_delete(self, namespace: str, key: str) -> None:
        """Remove a key if present."""
        with self._tx() as s:
            s.execute(
                sa.delete(KvTable).where(
                    KvTable.c.host_id == self.host_id,
                    KvTable.c.namespace == namespace,
                    KvTable.c.key == key,
                )
            )

    # -- leases: a kv row held by one holder until it expires ----------------------------
    def kv_claim(self, namespace: str, key: str, holder: str, ttl_seconds: float) -> bool:
        """Take ``key`` for ``holder`` unless another holder has it unexpired; True if taken.

        One statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE expired, RETURNING), so
        of several processes racing for one key exactly one wins, on SQLite and PostgreSQL
        alike; an expired lease (its holder died) is taken over.
        """
        now = self.now()
        row = {"host_id": self.host_id, "namespace": namespace, "key": key, "value": holder,
               "expires_at": now + timedelta(seconds=ttl_seconds), "updated_at": now}
        with self._tx() as s:
            stmt = _insert(s.dialect.name, KvTable)
            stmt = stmt.on_conflict_do_update(
                index_elements=["host_id", "namespace", "key"],
                set_={c: stmt.excluded[c] for c in ("value", "expires_at", "updated_at")},
                where=sa.and_(KvTable.c.expires_at.is_not(None), KvTable.c.expires_at <= now))
            return s.execute(stmt.returning(KvTable.c.key), row).first() is not None

    def kv_release(self, namespace: str, key: str, holder: str) -> None:
        """Give up ``key`` if ``holder`` still holds it (a lease taken over is left alone)."""
        with self._tx() as s:
            s.execute(sa.delete(KvTable).where(
                KvTable.c.host_id == self.host_id, KvTable.c.namespace == namespace,
                KvTable.c.key == key, KvTable.c.value == holder))

    def kv_live(self, namespace: str) -> list[str]:
        """The keys of ``namespace`` that have not expired."""
        q = sa.select(KvTable.c.key).where(
            KvTable.c.host_id == self.host_id, KvTable.c.namespace == namespace,
            sa.or_(KvTable.c.expires_at.is_(None), KvTable.c.expires_at > self.now()))
        with self._tx(write=False) as s:
            return list(s.scalars(q))
