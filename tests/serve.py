"""Real control-plane replicas for tests: ``healer serve`` processes on one PostgreSQL,
started as ``healer fleet sim`` starts them (healer.sim.plane), and what agents send them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from healer.sim.plane import Replica, spawn_replica, wait_ready, write_policy

__all__ = ["Replica", "agent_headers", "cli", "heartbeat", "replicas", "spawn_replica",
           "wait_ready"]

VERSION_HEADER = {"X-Healer-Agent-Version": "0.1.0"}


def cli(db_url: str, *args: str, stdin: str = "") -> str:
    """``healer ARGS`` against the control plane's database; its stdout (asserts success)."""
    done = subprocess.run([sys.executable, "-m", "healer.cli.main", *args], input=stdin,
                          env={**os.environ, "HEALER_DATABASE_URL": db_url},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@contextmanager
def replicas(db_url: str, count: int, env: Mapping[str, str] | None = None
             ) -> Iterator[list[Replica]]:
    """``count`` replicas sharing ``db_url``, started together, stopped after."""
    workdir = Path(tempfile.mkdtemp(prefix="healer-cp-"))
    workdir.chmod(0o711)  # the service user reaches its own state dir inside
    started: list[Replica] = []
    try:
        started = [spawn_replica(db_url, workdir, env) for _ in range(count)]
        for replica in started:
            wait_ready(replica)
        yield started
    finally:
        for r in started:
            r.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def agent_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} | VERSION_HEADER


def heartbeat(replica: Replica, host: str, token: str, **extra: Any) -> httpx.Response:
    body = {"host_id": host, "agent_version": "0.1.0", "mode": "auto",
            "sent_at": datetime.now(UTC).isoformat(), **extra}
    return httpx.post(f"{replica.url}/api/v1/agent/heartbeat", json=body,
                      headers=agent_headers(token), timeout=10)


@contextmanager
def fleet_policy(**fleet: Any) -> Iterator[Path]:
    """The shipped policy with ``fleet`` changed in its ``fleet:`` section, in a directory
    the replicas' user can read (pytest's own are closed to it)."""
    where = Path(tempfile.mkdtemp(prefix="healer-policy-"))
    try:
        where.chmod(0o755)
        yield write_policy(where / "policy.yaml", fleet)
    finally:
        shutil.rmtree(where, ignore_errors=True)
