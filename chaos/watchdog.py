"""The TTL watchdog: ``python -m chaos.watchdog '<json spec>'``.

It runs in its own session (so a Ctrl-C or SIGKILL of the runner does not reach it), sleeps
until the fault's TTL expires, or until its owner process dies, and then runs the fault's
undo steps. SIGTERM cancels it without reverting: the runner sends that after it has
reverted the fault itself.

Spec: ``{"ttl": seconds, "owner": pid, "owner_ctime": float, "steps": [...], "label": str}``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chaos.proc import same_process

POLL_SECONDS = 0.25


def start(spec: dict[str, Any], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a detached watchdog for spec; the caller keeps the Popen to cancel it."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "chaos.watchdog", json.dumps(spec)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def cancel(proc: subprocess.Popen[bytes]) -> None:
    """Stop a watchdog without it reverting anything (idempotent)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait(spec: dict[str, Any]) -> str:
    deadline = time.monotonic() + float(spec["ttl"])
    owner = spec.get("owner")
    while True:
        if time.monotonic() >= deadline:
            return "ttl expired"
        if owner and not same_process(int(owner), spec.get("owner_ctime")):
            return "owner died"
        time.sleep(POLL_SECONDS)


def main(argv: list[str]) -> int:
    """Entry point: wait, then revert."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog %(message)s")
    spec = json.loads(argv[0])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # cancelled: the runner reverted
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal Ctrl-C is the runner's to handle
    why = _wait(spec)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once reverting, finish the job
    from chaos.undo import run_steps

    errors = run_steps(spec["steps"])
    logging.info("reverted label=%s reason=%r errors=%d", spec.get("label"), why, len(errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
