"""The store the CLI commands under test open: a state dir of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.settings import Settings
from healer.store.engine import open_store
from healer.store.repository import Repository


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repository:
    """``HEALER_STATE_DIR`` and ``HEALER_HOST_ID`` point the commands at this store."""
    monkeypatch.setenv("HEALER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HEALER_HOST_ID", "cli-host")
    return open_store(Settings(state_dir=tmp_path / "state", host_id="cli-host"))
