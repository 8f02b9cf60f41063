"""SIGKILL the engine at >= 20 named points between intent and verdict; every change converges.

Each round starts the driver (tests/act/crash_driver.py), which first reconciles what the
previous round left (as the daemon does on start) and reports it, then proposes a raise of
net.core.somaxconn inside a scratch netns and steps the engine. The round kills it with
SIGKILL either at a named checkpoint (after the intent commit, after the kernel write,
after the verifying commit, after a restore) or after a random delay. A named kill that
does not land (the round took another path) is retried, so at least ``NAMED_KILLS`` land.
The seed is printed (and read from ``HEALER_CRASH_SEED``) so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, delete_netns, make_netns, netns_sysctl

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICY = REPO_ROOT / "tests" / "fixtures" / "act" / "crash-policy.yaml"
POINTS = ("intent", "written", "verifying", "restored")
NAMED_KILLS = 20  # kills that land exactly on a named checkpoint
RANDOM_KILLS = 5  # kills after a random delay, anywhere
RETRIES = 4  # attempts per named kill before the round counts as missed
FINAL_STATES = {"verified", "rolled_back"}


class Driver:
    """One driver process and its stdout lines."""

    def __init__(self, db: Path, netns: str, log: Path, *flags: str) -> None:
        cmd = [sys.executable, "-m", "tests.act.crash_driver", str(db), netns, str(POLICY), *flags]
        self.stderr = log.open("ab")
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def line(self, timeout: float) -> str | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.stderr.close()


def _check_reconciled(report: dict[str, Any]) -> None:
    """What a restart finished: verified, or rolled back with the live value == original."""
    for row in report["reconciled"]:
        assert row["state"] in FINAL_STATES, row
        if row["state"] == "rolled_back":
            assert report["live"] == row["original"], (row, report["live"])


def _round(db: Path, netns: str, log: Path, point: str | None, rng: random.Random) -> bool:
    """One start-reconcile-propose-kill round; True when killed at the named point."""
    regress = point == "restored" or rng.random() < 0.4
    driver = Driver(db, netns, log, "--pause-at", point or "", *(["--regress"] if regress else []))
    try:
        first = driver.line(timeout=15)
        assert first is not None, log.read_text()[-2000:]
        if first == f"at:{point}":
            return True  # killed in the middle of the restart's own reconcile
        _check_reconciled(json.loads(first))
        if point is None:
            threading.Event().wait(rng.uniform(0.0, 1.0))
            return False
        return driver.line(timeout=15) == f"at:{point}"
    finally:
        driver.kill()


def _named(db: Path, netns: str, log: Path, point: str, rng: random.Random) -> bool:
    """Kill at ``point``, retrying rounds that took another path; True when one landed."""
    return any(_round(db, netns, log, point, rng) for _ in range(RETRIES))


@pytest.mark.skipif(not ROOT, reason="needs root: writes sysctls in a scratch network namespace")
def test_sigkill_anywhere_between_intent_and_verdict_converges(tmp_path: Path) -> None:
    seed = int(os.environ.get("HEALER_CRASH_SEED") or int.from_bytes(os.urandom(4)))
    print(f"crash test seed: {seed} (rerun with HEALER_CRASH_SEED={seed})")
    rng = random.Random(seed)
    netns = make_netns()
    host_before = Path("/proc/sys/net/core/somaxconn").read_text()
    db, log = tmp_path / "healer.db", tmp_path / "driver.log"
    try:
        netns_sysctl(netns, "net.core.somaxconn", "128")
        plan: list[str | None] = [POINTS[i % len(POINTS)] for i in range(NAMED_KILLS)]
        plan += [None] * RANDOM_KILLS
        rng.shuffle(plan)
        landed = sum(_named(db, netns, log, point, rng) if point else
                     _round(db, netns, log, None, rng) for point in plan)
        assert landed >= NAMED_KILLS, f"only {landed} kills landed on a named point (seed {seed})"
        final = Driver(db, netns, log, "--finish")
        try:
            _check_reconciled(json.loads(final.line(timeout=15) or "{}"))
            summary = json.loads(final.line(timeout=20) or "{}")
        finally:
            final.kill()
        assert summary, log.read_text()[-2000:]
        _check_final(summary)
        assert netns_sysctl(netns, "net.core.somaxconn") == summary["live"]
    finally:
        delete_netns(netns)
    assert Path("/proc/sys/net/core/somaxconn").read_text() == host_before


def _check_final(summary: dict[str, Any]) -> None:
    rows = summary["final"]
    assert summary["integrity"] == "ok"
    assert len(rows) >= NAMED_KILLS // 2
    assert {r["state"] for r in rows} <= FINAL_STATES | {"denied"}, rows
    done = [r for r in rows if r["state"] in FINAL_STATES]  # newest first
    newest = done[0]
    expected = newest["applied"] if newest["state"] == "verified" else newest["original"]
    assert summary["live"] == expected, (newest, summary["live"])
