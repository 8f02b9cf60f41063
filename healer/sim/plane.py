"""The simulation's control plane: a PostgreSQL (``HEALER_DATABASE_URL``, or a throwaway
one), two ``healer serve`` replicas on it with a fleet policy fit for a short run, and the
hosts and tokens, made through the repository as ``healer host add`` and ``healer token
create`` make them.

``healer serve`` refuses to run as root, so under root each replica runs as the ``healer``
user (as ``healer run`` starts it), with a state directory of its own that user owns. Each
listens on a free loopback port and dies with its parent.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from guardrails.policy import default_policy_path
from healer.store.pgserver import dies_with_parent

SERVICE_USER = "healer"
READY_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 60  # the issue's PostgreSQL: the replicas' pools must fit under it


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def as_service_user(argv: list[str], path: Path) -> list[str]:
    """``argv`` as the ``healer`` user under root, owning ``path``; unchanged otherwise."""
    if os.geteuid() != 0:
        return argv
    user = pwd.getpwnam(SERVICE_USER)
    os.chown(path, user.pw_uid, user.pw_gid)
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            *argv]


def spawn_replica(db_url: str, workdir: Path, env: Mapping[str, str] | None = None) -> Replica:
    """Start one ``healer serve`` on ``db_url`` (``wait_ready`` waits for it). From the
    main thread only: the parent-death signal follows the thread that forked."""
    port = free_port()
    state = workdir / f"state-{port}"
    state.mkdir(mode=0o700)
    argv = as_service_user(dies_with_parent([sys.executable, "-m", "healer.cli.main", "serve",
                                             "--host", "127.0.0.1", "--port", str(port)]),
                           state)
    log = workdir / f"serve-{port}.log"
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
                   "HEALER_DATABASE_URL": db_url, "HEALER_STATE_DIR": str(state),
                   "HEALER_LOG_LEVEL": "info", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=environment, stdout=out, stderr=subprocess.STDOUT)
    return Replica(f"http://127.0.0.1:{port}", proc, log)


def wait_ready(replica: Replica, timeout: float = READY_TIMEOUT_S) -> None:
    """Return once ``/healthz`` answers; RuntimeError with the log when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        if replica.proc.poll() is not None:
            raise RuntimeError(f"healer serve exited {replica.proc.returncode}:\n"
                               f"{replica.log_tail()}")
        try:
            with urllib.request.urlopen(f"{replica.url}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"healer serve not ready:\n{replica.log_tail()}")
        time.sleep(0.1)


# A reference for the simulated playbooks: the library requires one, and the remedies are
# sysctls documented there.
SYSCTL_DOC = "https://docs.kernel.org/admin-guide/sysctl/net.html"


def write_playbooks(directory: Path, keys: Mapping[str, str], fix: str, metric: str,
                    verify_seconds: float) -> Path:
    """The control plane's library for the simulated faults: one playbook per id in
    ``keys``, whose remedy sets that sysctl to ``fix`` and verifies ``metric`` to zero
    within ``verify_seconds``. The control plane takes a remedy's verify window (and so
    its waves' timeout) from here, as it does from the shipped library."""
    directory.mkdir(mode=0o755, exist_ok=True)
    for playbook, key in keys.items():
        doc = {"id": playbook, "title": f"Simulated fault ({playbook})", "severity": "warning",
               "description": "A fault of `healer fleet sim`: the agents open the incident "
                              "themselves; this playbook gives the control plane its remedy "
                              "and verify window.",
               "references": [SYSCTL_DOC], "scope": "host",
               "detect": {"any": [{"kind": "rate", "metric": metric, "seconds": 2, "gt": 0}]},
               "remedies": [{"action": {"kind": "sysctl_write", "key": key, "value": fix},
                             "rationale": "the simulated fix",
                             "expected_effect": f"{metric} falls to zero"}],
               "verify": {"metric": metric, "direction": "to_zero",
                          "window_seconds": verify_seconds},
               "rollback": "on_regression", "confidence": 0.5}
        path = directory / f"{playbook}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        path.chmod(0o644)
    return directory


def write_policy(path: Path, fleet: Mapping[str, Any]) -> Path:
    """The shipped policy with its ``fleet:`` section changed, readable by the replicas."""
    policy = yaml.safe_load(default_policy_path().read_text())
    policy["fleet"] = {**policy.get("fleet", {}), **fleet}
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    path.chmod(0o644)
    return path
