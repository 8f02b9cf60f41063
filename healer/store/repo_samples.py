"""Metric persistence (per-minute rollups, raw samples near incidents), retention, integrity."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from healer.models import Sample
from healer.store.repo_base import RepoBase, update_row
from healer.store.rows import Rollup
from healer.store.tables import (
    METRIC_NAME_LEN,
    KvTable,
    OutboxTable,
    RawSampleTable,
    RollupTable,
    SessionTable,
)

log = logging.getLogger(__name__)


def _merge(row: dict[str, Any], r: Rollup) -> None:
    # A restart mid-minute emits a second partial rollup for the same minute: combine them.
    total = row["count"] + r.count
    row["avg"] = (row["avg"] * row["count"] + r.avg * r.count) / total
    row["min"], row["max"] = min(row["min"], r.min), max(row["max"], r.max)
    row["last"], row["count"] = r.last, total


def _combined(a: Rollup, b: Rollup) -> Rollup:
    total = a.count + b.count
    return a.model_copy(update={"avg": (a.avg * a.count + b.avg * b.count) / total,
                                "min": min(a.min, b.min), "max": max(a.max, b.max),
                                "last": b.last, "count": total})


class SamplesRepo(RepoBase):
    """Rollups, raw samples, the series the dashboard and verification read, and pruning."""

    _long_names_logged = False

    def _too_long(self, names: Iterable[str]) -> set[str]:
        """The names too long to store (METRIC_NAME_LEN); logged once per repository."""
        long = {n for n in names if len(n) > METRIC_NAME_LEN}
        if long and not self._long_names_logged:
            self._long_names_logged = True
            log.warning("metric names longer than %d characters are not stored: %d, e.g. %.80s",
                        METRIC_NAME_LEN, len(long), min(long))
        return long

    def add_rollups(self, rows: Sequence[Rollup]) -> None:
        """Store per-minute rollups; a second row for the same minute is merged in."""
        too_long = self._too_long(r.name for r in rows)
        rows = [r for r in rows if r.name not in too_long] if too_long else rows
        if not rows:
            return
        minutes = {r.minute for r in rows}
        with self._tx() as s:
            q = sa.select(RollupTable).where(
                RollupTable.c.host_id == self.host_id, RollupTable.c.minute.in_(minutes)
            )
            existing = {(e.name, e.minute): dict(e._mapping) for e in s.execute(q)}
            merged: set[tuple[str, datetime]] = set()
            fresh: dict[tuple[str, datetime], Rollup] = {}
            for r in rows:
                key = (r.name, r.minute)
                row = existing.get(key)
                if row is not None:
                    _merge(row, r)
                    merged.add(key)
                elif key in fresh:
                    fresh[key] = _combined(fresh[key], r)
                else:
                    fresh[key] = r
            if fresh:  # one executemany for the minute's ~650 rows
                s.execute(sa.insert(RollupTable), [
                    {"host_id": self.host_id, "name": r.name, "minute": r.minute, "min": r.min,
                     "max": r.max, "avg": r.avg, "last": r.last, "count": r.count}
                    for r in fresh.values()])
            for key in merged:
                row = existing[key]
                update_row(s, RollupTable, row["id"], min=row["min"], max=row["max"],
                           avg=row["avg"], last=row["last"], count=row["count"])

    def add_raw_samples(self, samples: Sequence[Sample]) -> None:
        """Store full-resolution readings (healer.recorder picks which); repeats are ignored."""
        too_long = self._too_long({n for s in samples for n in s.metrics})
        rows = [
            {
                "host_id": self.host_id,
                "name": name,
                "ts": datetime.fromtimestamp(sample.ts, UTC),
                "value": value,
            }
            for sample in samples
            for name, value in sample.metrics.items()
            if name not in too_long
        ]
        with self._tx() as s:
            self._insert_ignore(s, RawSampleTable, rows, ("host_id", "name", "ts"))

    def metric_series(
        self, name: str, since: datetime, until: datetime | None = None
    ) -> list[tuple[float, float]]:
        """(epoch ts, value) oldest first: raw points, and rollup averages (at the minute's
        start) for minutes that have no raw points."""
        until = until or self.now()
        raw_q = (
            sa.select(RawSampleTable.c.ts, RawSampleTable.c.value)
            .where(
                RawSampleTable.c.host_id == self.host_id,
                RawSampleTable.c.name == name,
                RawSampleTable.c.ts >= since,
                RawSampleTable.c.ts <= until,
            )
            .order_by(RawSampleTable.c.ts)
        )
        roll_q = sa.select(RollupTable.c.minute, RollupTable.c.avg).where(
            RollupTable.c.host_id == self.host_id,
            RollupTable.c.name == name,
            RollupTable.c.minute >= since.replace(second=0, microsecond=0),
            RollupTable.c.minute <= until,
        )
        with self._tx(write=False) as s:
            raw = [(ts.timestamp(), v) for ts, v in s.execute(raw_q)]
            covered = {int(ts // 60) for ts, _ in raw}
            rolled = [
                (m.timestamp(), v)
                for m, v in s.execute(roll_q)
                if int(m.timestamp() // 60) not in covered
            ]
        return sorted(raw + rolled)

    def prune(self, now: datetime, rollup_days: float, raw_minutes: float) -> int:
        """Delete old rollups, raw samples, finished notifications, expired kv and expired
        sessions; keep the incidents, the journal and the audit log (they are the record).
        Returns rows deleted."""
        old = now - timedelta(days=rollup_days)
        raw_old = now - timedelta(minutes=raw_minutes)
        host = self.host_id
        with self._tx() as s:
            n = _delete(
                s,
                sa.delete(RollupTable).where(RollupTable.c.host_id == host,
                                             RollupTable.c.minute < old),
            )
            n += _delete(
                s,
                sa.delete(RawSampleTable).where(
                    RawSampleTable.c.host_id == host, RawSampleTable.c.ts < raw_old
                ),
            )
            n += _delete(
                s,
                sa.delete(OutboxTable).where(
                    OutboxTable.c.host_id == host,
                    sa.or_(
                        OutboxTable.c.delivered_at < old,
                        sa.and_(OutboxTable.c.dead.is_(True), OutboxTable.c.created_at < old),
                    ),
                ),
            )
            n += _delete(
                s, sa.delete(KvTable).where(KvTable.c.host_id == host, KvTable.c.expires_at <= now)
            )
            n += _delete(s, sa.delete(SessionTable).where(SessionTable.c.expires_at <= now))
            return n

    def integrity_check(self) -> str:
        """SQLite ``PRAGMA integrity_check`` ("ok" when sound); "ok" on other backends."""
        if self._engine.dialect.name != "sqlite":
            return "ok"
        with self._tx(write=False) as s:
            rows = s.execute(sa.text("PRAGMA integrity_check")).scalars().all()
        return "\n".join(str(r) for r in rows)


def _delete(s: sa.Connection, stmt: sa.Delete) -> int:
    return int(s.execute(stmt).rowcount)
