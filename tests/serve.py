"""Real control-plane replicas for tests: ``healer serve`` processes on one PostgreSQL.

``healer serve`` refuses to run as root, so under root each replica runs as the ``healer``
user (as the agent starts it), with a state directory of its own that user owns. Each
listens on a free loopback port and dies with the test process.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.prom import free_port
from tests.tools import dies_with_parent

SERVICE_USER = "healer"
READY_TIMEOUT_S = 60.0
VERSION_HEADER = {"X-Healer-Agent-Version": "0.1.0"}


@dataclass
class Replica:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _as_service_user(argv: list[str], path: Path) -> list[str]:
    if os.geteuid() != 0:
        return argv
    user = pwd.getpwnam(SERVICE_USER)
    os.chown(path, user.pw_uid, user.pw_gid)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            *argv]


def cli(db_url: str, *args: str, stdin: str = "") -> str:
    """``healer ARGS`` against the control plane's database; its stdout (asserts success)."""
    done = subprocess.run([sys.executable, "-m", "healer.cli.main", *args], input=stdin,
                          env={**os.environ, "HEALER_DATABASE_URL": db_url},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def spawn_replica(db_url: str, workdir: Path, env: Mapping[str, str] | None = None) -> Replica:
    """Start one ``healer serve`` on ``db_url`` (``wait_ready`` waits for it). From the
    main thread only: the parent-death signal follows the thread that forked."""
    port = free_port()
    state = workdir / f"state-{port}"
    state.mkdir(mode=0o700)
    argv = _as_service_user(dies_with_parent([sys.executable, "-m", "healer.cli.main", "serve",
                                              "--host", "127.0.0.1", "--port", str(port)]),
                            state)
    log = workdir / f"serve-{port}.log"
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
                   "HEALER_DATABASE_URL": db_url, "HEALER_STATE_DIR": str(state),
                   "HEALER_LOG_LEVEL": "info", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=environment, stdout=out, stderr=subprocess.STDOUT)
    return Replica(f"http://127.0.0.1:{port}", proc, log)


def wait_ready(replica: Replica) -> None:
    """Return once ``/healthz`` answers; RuntimeError with the log when it never does."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if replica.proc.poll() is not None:
            raise RuntimeError(f"healer serve exited {replica.proc.returncode}:\n"
                               f"{replica.log_tail()}")
        try:
            if httpx.get(f"{replica.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"healer serve not ready:\n{replica.log_tail()}")
        time.sleep(0.1)


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
