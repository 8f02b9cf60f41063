"""Fixtures for actuator and engine tests: a scratch netns, a journal, a fake clock/window."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from healer.store.engine import migrate, open_engine
from healer.store.repository import Repository

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: creates network namespaces and "
                                "cgroups and writes their sysctls/knobs")


class Clock:
    """A settable UTC clock shared by the engine and the repository."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Window:
    """The metric window: tests append points; the engine reads series."""

    def __init__(self) -> None:
        self.points: dict[str, list[tuple[float, float]]] = {}

    def add(self, name: str, ts: datetime, value: float) -> None:
        self.points.setdefault(name, []).append((ts.timestamp(), value))

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        """The last ``seconds`` before the newest point, as healer.window.MetricWindow does."""
        points = self.points.get(name, [])
        return [(t, v) for t, v in points if t >= points[-1][0] - seconds] if points else []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def window() -> Window:
    return Window()


@pytest.fixture
def repo(tmp_path: Path, clock: Clock) -> Repository:
    engine = open_engine(f"sqlite:///{tmp_path / 'healer.db'}")
    migrate(engine)
    return Repository(engine, "test-host", clock=clock)


def make_netns() -> str:
    name = f"healer-test-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    if not ROOT:
        pytest.skip("needs root: creates a network namespace")
    name = make_netns()
    try:
        yield name
    finally:
        delete_netns(name)


def netns_sysctl(name: str, key: str, value: str | None = None) -> str:
    """Read (or write, then read) a sysctl inside a namespace with ip-netns-exec, not healer."""
    path = "/proc/sys/" + key.replace(".", "/")
    if value is not None:
        subprocess.run(["ip", "netns", "exec", name, "sh", "-c", f"echo {value} > {path}"],
                       check=True)
    out = subprocess.run(["ip", "netns", "exec", name, "cat", path], check=True,
                         capture_output=True, text=True)
    return " ".join(out.stdout.split())
