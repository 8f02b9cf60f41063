"""The schema comes from Alembic, matches tables.py, and SQLite runs durable (WAL, FULL)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from healer.settings import Settings
from healer.store.engine import migrate, open_engine, open_store
from healer.store.tables import Base


def _revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_create_every_table_on_an_empty_database(db_url: str) -> None:
    engine = open_engine(db_url)
    migrate(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert _revision(engine) == "0001"
    engine.dispose()


def test_migrate_is_idempotent_on_restart(db_url: str) -> None:
    first = open_engine(db_url)
    migrate(first)
    first.dispose()
    second = open_engine(db_url)  # a restart: new engine, same file
    migrate(second)
    migrate(second)
    assert _revision(second) == "0001"
    second.dispose()


def test_migrated_schema_matches_table_metadata(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    assert diffs == []


def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


def test_open_store_creates_state_dir_and_binds_host(tmp_path: Path) -> None:
    state = tmp_path / "state" / "nested"
    repo = open_store(Settings(state_dir=state, host_id="gpu-7"))
    assert (state / "healer.db").exists()
    assert repo.host_id == "gpu-7"
    assert repo.integrity_check() == "ok"
    repo.engine.dispose()
