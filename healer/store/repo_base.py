"""The Repository's shared plumbing: one short transaction per call, errors translated.

SQLAlchemy Core on a Connection, not the ORM: the root agent carries this store, and the
ORM would cost it ~5 MB. Rows come back as ``sa.Row`` (read by column name).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVarTuple

import sqlalchemy as sa
from sqlalchemy.exc import NoResultFound, SQLAlchemyError

from healer.errors import StoreError
from healer.store.tables import AuditTable

Clock = Callable[[], datetime]
Ts = TypeVarTuple("Ts")
READONLY_OPTION = "healer_readonly"  # engine.py's begin hook opens a deferred transaction
AFTER_COMMIT = "healer_after_commit"  # Connection.info key: what to call once it committed


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(UTC)


class RepoBase:
    """Holds the engine, the host id and the clock; every method runs in its own transaction."""

    def __init__(self, engine: sa.Engine, host_id: str, clock: Clock = utcnow) -> None:
        self._engine = engine
        self._ro_engine = engine.execution_options(**{READONLY_OPTION: True})
        self.host_id = host_id
        self._clock = clock

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def now(self) -> datetime:
        """The repository clock (tz-aware UTC)."""
        return self._clock()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sa.Connection]:
        """One committed transaction; sqlalchemy errors become StoreError."""
        bind = self._engine if write else self._ro_engine
        hooks: list[Callable[[], None]] = []
        try:
            with bind.begin() as conn:
                # Connection.info belongs to the DBAPI connection and outlives this checkout:
                # the hooks of this transaction live in ``hooks``, and leave with it.
                conn.info[AFTER_COMMIT] = hooks
                try:
                    yield conn
                finally:
                    conn.info.pop(AFTER_COMMIT, None)
            for hook in hooks:  # reached only once the transaction committed
                hook()
        except SQLAlchemyError as e:
            raise StoreError(f"database error: {type(e).__name__}: {_short(e)}") from e

    @staticmethod
    def _after_commit(s: sa.Connection, hook: Callable[[], None]) -> None:
        """Call ``hook`` once ``s``'s transaction (a ``_tx``) committed, never when it rolls
        back."""
        hooks: list[Callable[[], None]] | None = s.info.get(AFTER_COMMIT)
        if hooks is None:
            raise StoreError("an after-commit hook outside a repository transaction")
        if hook not in hooks:
            hooks.append(hook)

    def _probe(self, q: sa.Select[*Ts],
               params: Mapping[str, Any] | None = None) -> list[sa.Row[*Ts]]:
        """``q``'s rows (with ``params`` for its bind parameters), read in a read-only
        transaction of its own and rolled back (there is nothing to commit): the probes
        made every cycle."""
        try:
            with self._ro_engine.connect() as conn:
                rows = list(conn.execute(q, params))
                conn.rollback()
                return rows
        except SQLAlchemyError as e:
            raise StoreError(f"database error: {type(e).__name__}: {_short(e)}") from e

    def _audit(
        self, s: sa.Connection, actor: str, event: str, subject: str,
        detail: dict[str, Any] | None
    ) -> None:
        """Add an audit row inside the caller's transaction."""
        insert_row(s, AuditTable, host_id=self.host_id, at=self.now(), actor=actor,
                   event=event, subject=subject, detail=detail or {})

    def _insert_ignore(
        self, session: sa.Connection, table: Any, rows: Sequence[dict[str, Any]],
        keys: Sequence[str]
    ) -> int:
        """INSERT ... ON CONFLICT DO NOTHING (SQLite and PostgreSQL); returns rows inserted."""
        if not rows:
            return 0
        one = len(rows) == 1
        stmt = _insert_ignoring(session.dialect.name, table, tuple(keys), one)
        if one:
            return len(session.execute(stmt, rows[0]).all())
        session.execute(stmt, list(rows))
        return len(rows)

    def _upsert(self, session: sa.Connection, table: Any, row: dict[str, Any], keys: Sequence[str],
                update: Sequence[str]) -> None:
        """INSERT, or UPDATE the ``update`` columns of the row with the same ``keys``: one
        atomic statement, where a read-then-insert would let a concurrent writer on
        PostgreSQL (READ COMMITTED) slip in between and fail this one on the unique key."""
        session.execute(_upserting(session.dialect.name, table, tuple(keys), tuple(update)), row)


@functools.cache
def _insert_ignoring(dialect: str, table: Any, keys: tuple[str, ...], returning: bool) -> Any:
    stmt = _insert(dialect, table).on_conflict_do_nothing(index_elements=list(keys))
    # RETURNING, not rowcount, counts one row: psycopg reports -1 for SQLAlchemy's INSERT.
    return stmt.returning(table.c[keys[0]]) if returning else stmt


@functools.cache
def _upserting(dialect: str, table: Any, keys: tuple[str, ...], update: tuple[str, ...]) -> Any:
    stmt = _insert(dialect, table)
    return stmt.on_conflict_do_update(index_elements=list(keys),
                                      set_={c: stmt.excluded[c] for c in update})


def _insert(dialect: str, table: Any) -> Any:
    """The INSERT of ``dialect`` (a dialect's name), which has ON CONFLICT (SQLite's and
    PostgreSQL's agree)."""
    # Each dialect's module loads on first use: the PostgreSQL one costs a SQLite host ~2 MB.
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    raise StoreError(f"unsupported database backend {dialect!r}")


# The statements below are built once per table and take their values as parameters: a
# statement built per call costs its construction and its cache key each time, about 4
# times its execution on SQLite. Given a parameter dict, an INSERT sets the columns the
# dict names, and an UPDATE sets them (its WHERE takes ``pk_0``, ...: no column's name).


@functools.cache
def _inserting(table: sa.Table) -> sa.Insert:
    return sa.insert(table)


@functools.cache
def _adding(table: sa.Table) -> sa.Insert:
    return sa.insert(table).returning(*table.c)


@functools.cache
def _by_key(table: sa.Table) -> sa.Select[Any]:
    """``table``'s row by primary key (parameters ``pk_0``, ...)."""
    return sa.select(table).where(*_key_match(table))


@functools.cache
def _updating(table: sa.Table) -> sa.Update:
    return sa.update(table).where(*_key_match(table)).returning(*table.c)


def _key_match(table: sa.Table) -> list[sa.ColumnElement[bool]]:
    return [c == sa.bindparam(f"pk_{i}") for i, c in enumerate(table.primary_key.columns)]


def _key_params(table: sa.Table, key: tuple[Any, ...]) -> dict[str, Any]:
    if len(key) != len(table.primary_key.columns):
        raise ValueError(f"{table.name}: {len(key)} key value(s) for "
                         f"{len(table.primary_key.columns)} key column(s)")
    return {f"pk_{i}": k for i, k in enumerate(key)}


def insert_row(s: sa.Connection, table: sa.Table, **values: Any) -> None:
    """INSERT one row."""
    s.execute(_inserting(table), values)


def add_row(s: sa.Connection, table: sa.Table, **values: Any) -> sa.Row[Any]:
    """INSERT one row and return it as stored (its id and server defaults included)."""
    return s.execute(_adding(table), values).one()


def get_row(s: sa.Connection, table: sa.Table, *key: Any) -> sa.Row[Any] | None:
    """The row with this primary key (its columns in table order), or None."""
    return s.execute(_by_key(table), _key_params(table, key)).first()


def change_row(s: sa.Connection, table: sa.Table, *key: Any, **values: Any) -> sa.Row[Any] | None:
    """UPDATE the row with this primary key and return it as stored; None when there is
    none."""
    if not values:
        raise ValueError(f"{table.name}: an UPDATE that sets nothing")
    return s.execute(_updating(table), {**values, **_key_params(table, key)}).first()


def update_row(s: sa.Connection, table: sa.Table, *key: Any, **values: Any) -> sa.Row[Any]:
    """UPDATE the row with this primary key, which must exist, and return it as stored."""
    row = change_row(s, table, *key, **values)
    if row is None:
        raise NoResultFound(f"{table.name}: no row with key {key!r}")
    return row


def _short(e: SQLAlchemyError) -> str:
    # The statement and parameters can carry evidence or hashes; keep the message short.
    orig = getattr(e, "orig", None)
    return str(orig if orig is not None else e).splitlines()[0][:300]
