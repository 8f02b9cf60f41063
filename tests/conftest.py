"""Fixtures every test package can use: throwaway PostgreSQL, Prometheus and Alertmanager
servers, and a webhook receiver.

``pg_server`` starts once per session (only when a test asks for it); ``pg_url`` is a
fresh empty database per test, ``pg_head_url`` a fresh one already migrated to head.
``prometheus`` and ``alertmanager`` start servers from a config dict (tests/prom.py
``shipped`` loads the deploy/prometheus/ files to start from). Without the Debian
packages they fail under CI and skip elsewhere.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pg import PgServer, find_bindir
from tests.prom import (
    Service,
    ServiceFactory,
    WebhookReceiver,
    start_alertmanager,
    start_prometheus,
)
from tests.tools import missing, require_tool

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


def _factory(tmp_path: Path, name: str, binary: Path,
             start: Callable[[Path, dict[str, Any], Path], Service]) -> Iterator[ServiceFactory]:
    started: list[Service] = []

    def factory(config: dict[str, Any]) -> Service:
        service = start(binary, config, tmp_path / f"{name}-{len(started)}")
        started.append(service)
        return service

    try:
        yield factory
    finally:
        for service in started:
            service.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[ServiceFactory]:
    """``prometheus(config)`` starts a Prometheus on a free loopback port."""
    binary = require_tool("prometheus", "Debian's prometheus (make system-deps)")
    yield from _factory(tmp_path, "prometheus", binary, start_prometheus)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[ServiceFactory]:
    """``alertmanager(config)`` starts an Alertmanager on a free loopback port."""
    binary = require_tool("prometheus-alertmanager",
                          "Debian's prometheus-alertmanager (make system-deps)")
    yield from _factory(tmp_path, "alertmanager", binary, start_alertmanager)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A local HTTP server recording the JSON POSTs it gets (stands in for a webhook)."""
    receiver = WebhookReceiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def agent_tmp() -> Iterator[Path]:
    """A scratch directory for a real ``healer run``: as root the agent starts
    ``healer serve`` as the ``healer`` user, which must be able to reach the state and
    runtime directories (pytest's own tmp_path lives under a 0700 directory)."""
    root = Path(tempfile.mkdtemp(prefix="healer-test-"))
    try:
        root.chmod(0o711)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


PACKAGES = ("healer", "web", "guardrails", "playbooks", "chaos")


def _installed_copy_is_stale(repo: Path) -> str | None:
    """As root, ``make`` installs the project (not editable) for the unprivileged side, which
    imports that copy; a test run against a checkout that differs from it would test two
    versions at once. The first file that differs, or None."""
    import sysconfig

    for package in PACKAGES:
        installed = Path(sysconfig.get_paths()["purelib"]) / package
        if not installed.is_dir():
            continue  # an editable install (or none): the checkout is the copy
        for source in (repo / package).rglob("*"):
            if source.suffix not in (".py", ".yaml", ".j2", ".css", ".js") or not source.is_file():
                continue
            copy = installed / source.relative_to(repo / package)
            if not copy.is_file() or copy.read_bytes() != source.read_bytes():
                return str(source.relative_to(repo))
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    repo = Path(__file__).resolve().parents[1]
    if os.geteuid() == 0 and (stale := _installed_copy_is_stale(repo)) is not None:
        pytest.exit(f"the installed copy of healer is older than the checkout ({stale}): "
                    "run `make code` (make test does)", returncode=2)
