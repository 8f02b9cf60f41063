"""A database URL's password never reaches an error message or a log line."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from healer.errors import StoreError
from healer.settings import Settings
from healer.store.engine import open_engine, open_store, upgrade_in_child

PASSWORD = "s3cret-Pa55word"


@pytest.mark.parametrize("url", [
    f"postgresql+nosuchdriver://alice:{PASSWORD}@127.0.0.1:1/healer",  # driver missing
    f"postgresql://alice:{PASSWORD}@db:notaport/healer",  # does not parse
])
def test_open_errors_never_show_the_password(url: str) -> None:
    with pytest.raises(StoreError) as err:
        open_engine(url)
    assert PASSWORD not in str(err.value)
    assert err.value.__cause__ is None or PASSWORD not in str(err.value.__cause__)


def _refused_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_failing_connect_shows_no_password_in_errors_or_logs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("psycopg", reason="psycopg is a dev dependency (pyproject)")
    url = f"postgresql+psycopg://alice:{PASSWORD}@127.0.0.1:{_refused_port()}/healer"
    settings = Settings(state_dir=tmp_path / "state", database_url=url)
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreError) as err:
        open_store(settings)
    assert "refused" in str(err.value).lower()
    assert PASSWORD not in str(err.value) and PASSWORD not in caplog.text
    with pytest.raises(StoreError) as child:
        upgrade_in_child(url)  # the daemon's path: a child process reports one line
    assert "refused" in str(child.value).lower() and PASSWORD not in str(child.value)
