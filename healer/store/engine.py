"""Open the database, apply migrations, and build a Repository for the daemon or the CLI.

SQLite is the single-host default. The daemon and the CLI (``healer approve``) open the
same file from two processes, so it runs in WAL mode (readers never block the writer)
with ``synchronous=FULL``: in WAL mode a commit is durable across power loss only when
FULL syncs the WAL on every commit (https://www.sqlite.org/pragma.html#pragma_synchronous).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from pydantic_core import to_jsonable_python
from sqlalchemy.exc import SQLAlchemyError

from healer.errors import StoreError
from healer.settings import Settings
from healer.store.repo_base import READONLY_OPTION
from healer.store.repository import Repository

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 5000


def _on_sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy emit BEGIN itself (the "begin" hook below); pysqlite's implicit
    # transactions would otherwise delay BEGIN past the first SELECT and break CAS writes.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _on_sqlite_begin(conn: sa.Connection) -> None:
    # Writers take the RESERVED lock up front (BEGIN IMMEDIATE), so a read-then-write
    # transaction can never fail half way with SQLITE_BUSY_SNAPSHOT; busy_timeout queues
    # them instead. Read-only calls use a deferred BEGIN and never wait on a writer in WAL.
    readonly = conn.get_execution_options().get(READONLY_OPTION, False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _json_dumps(value: Any) -> str:
    # JSON columns may be handed datetimes or enums inside verification details; store
    # them the way pydantic's JSON mode would rather than failing the journal write.
    return json.dumps(value, default=to_jsonable_python)


def open_engine(url: str) -> sa.Engine:
    """Create an engine; SQLite gets WAL, synchronous=FULL, foreign keys and a busy timeout."""
    try:
        sa_url = sa.make_url(url)
        if sa_url.get_backend_name() != "sqlite":
            return sa.create_engine(sa_url, pool_pre_ping=True, json_serializer=_json_dumps)
        engine = sa.create_engine(
            sa_url, connect_args={"check_same_thread": False}, json_serializer=_json_dumps
        )
    except (SQLAlchemyError, ValueError, ImportError) as e:
        raise StoreError(f"cannot open database {url!r}: {e}") from e
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def alembic_config(engine: sa.Engine | None = None) -> Config:
    """An Alembic Config built in code; script_location is the packaged migrations dir."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest revision (``alembic upgrade head``); safe to repeat."""
    cfg = alembic_config(engine)
    try:
        with engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
    except SQLAlchemyError as e:
        raise StoreError(f"migration failed: {e}") from e


def open_store(settings: Settings) -> Repository:
    """Create the state dir, open and migrate the database, and return a Repository."""
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise StoreError(f"cannot create state dir {settings.state_dir}: {e}") from e
    engine = open_engine(settings.db_url)
    migrate(engine)
    log.info("store opened: url=%s host_id=%s", engine.url.render_as_string(), settings.host_id)
    return Repository(engine, settings.host_id)
