"""The real product under test: a ``healer run`` subprocess, driven through its CLI and API.

Chaos imports nothing of healer's. It starts the daemon with ``python -m healer.cli.main``
and ``HEALER_*`` environment variables that confine it to the sandbox, waits for
``/healthz``, reads ``/api/v1/*`` and ``/metrics``, and approves proposals with a bearer
token made by ``healer token create``, as an operator would.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from chaos.proc import spawn, terminate


class DaemonError(RuntimeError):
    """healer did not start, answer, or accept a request."""


def healer_argv(*args: str) -> list[str]:
    """argv for ``healer ARGS``: this interpreter's healer, or ``$CHAOS_HEALER_CMD`` when set
    (a path or a command line, to test another build)."""
    cmd = os.environ.get("CHAOS_HEALER_CMD")
    base = shlex.split(cmd) if cmd else [sys.executable, "-m", "healer.cli.main"]
    return [*base, *args]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without the caller's HEALER_* settings, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALER_")}
    env.pop("OPENAI_API_KEY", None)  # the sandboxed daemon talks only to the test LLM
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Healer:
    """One ``healer run`` process; restartable with the same state dir."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = clean_env(env)
        self.port = int(env["HEALER_PORT"])
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._token: str | None = None

    def start(self, timeout: float = 45.0) -> None:
        """Start the daemon and wait until /healthz answers."""
        self.proc = spawn(healer_argv("run"), env=self.env, log=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonError(f"healer run exited with {self.proc.returncode}: {self.tail()}")
            try:
                self.get("/healthz", timeout=1.0)
                return
            except (DaemonError, OSError):
                time.sleep(0.2)
        raise DaemonError(f"healer run not healthy after {timeout:.0f}s: {self.tail()}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after a grace period (idempotent)."""
        return terminate(self.proc, grace=8.0) if self.proc else None

    def kill9(self) -> None:
        """SIGKILL the daemon, as a crash would."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, n: int = 15) -> str:
        """The last lines of the daemon's log."""
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _request(self, req: urllib.request.Request, timeout: float) -> bytes:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:300]
            raise DaemonError(f"{req.get_method()} {req.full_url}: {exc.code} {body}") from exc
        except urllib.error.URLError as exc:
            raise DaemonError(f"{req.full_url}: {exc.reason}") from exc

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def get(self, path: str, timeout: float = 5.0) -> Any:
        """GET a JSON endpoint (with the operator's token once there is one)."""
        req = urllib.request.Request(self.base + path, headers=self._auth())
        raw = self._request(req, timeout)
        return json.loads(raw) if raw.strip() else None

    def metrics_text(self) -> str:
        """The Prometheus exposition from /metrics."""
        return self._request(urllib.request.Request(self.base + "/metrics"), 5.0).decode()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST with the operator's bearer token."""
        req = urllib.request.Request(
            self.base + path,
            data=json.dumps(body or {}).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        raw = self._request(req, 10.0)
        return json.loads(raw) if raw.strip() else None

    def token(self) -> str:
        """An API token of the admin user ``chaos``, made with ``healer user add`` and
        ``healer token create --user`` on the same state dir, as an operator would."""
        if self._token is None:
            self._cli("user", "add", "chaos", "--role", "admin",
                      stdin=secrets.token_urlsafe(24) + "\n")
            lines = self._cli("token", "create", "chaos", "--user", "chaos")
            self._token = lines[-1]
        return self._token

    def _cli(self, *argv: str, stdin: str = "") -> list[str]:
        res = subprocess.run(healer_argv(*argv), env=self.env, input=stdin,
                             capture_output=True, text=True, timeout=60)
        lines = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
        if res.returncode != 0 or not lines:
            raise DaemonError(f"healer {' '.join(argv[:2])} failed: {res.stderr.strip()[-300:]}")
        return lines


def prom_value(text: str, name: str) -> float | None:
    """Sample ``name`` in exposition text (summed over its labels), or None."""
    total: float | None = None
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            try:
                total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                continue
    return total
