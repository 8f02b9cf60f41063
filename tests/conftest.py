"""Fixtures every test package can use: a throwaway PostgreSQL server.

``pg_server`` starts once per session (only when a test asks for it); ``pg_url`` is a
fresh empty database per test, ``pg_head_url`` a fresh one already migrated to head.
Without Debian's ``postgresql`` package they fail under CI and skip elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pg import PgServer, find_bindir
from tests.tools import missing

HEAD_TEMPLATE = "healer_head"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        missing("needs PostgreSQL: install Debian's postgresql (make system-deps)")
    server = PgServer.start(bindir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_head_template(pg_server: PgServer) -> str:
    """The name of a database migrated to head once, to copy per test."""
    from healer.store.engine import migrate, open_engine

    with pg_server.connect() as conn:
        conn.execute(f'CREATE DATABASE "{HEAD_TEMPLATE}"')
    engine = open_engine(pg_server.url(HEAD_TEMPLATE))
    try:
        migrate(engine)
    finally:
        engine.dispose()  # a template must have no open connections to be copied
    return HEAD_TEMPLATE


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database; dropped after the test."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture
def pg_head_url(pg_server: PgServer, pg_head_template: str) -> Iterator[str]:
    """A fresh database with healer's schema at head; dropped after the test."""
    url = pg_server.create_database(pg_head_template)
    yield url
    pg_server.drop_database(url)
