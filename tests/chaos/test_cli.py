"""``healer chaos``: names, exit codes, and Ctrl-C cleanup of a real run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from chaos import netns
from chaos.cgroups import CgroupFS
from tests.chaos.conftest import need_root
from tests.tools import require_tool

HEALER = [sys.executable, "-m", "healer.cli.main"]
FAKE = Path(__file__).with_name("fake_healer.py")


def test_unknown_scenario_exits_2_and_lists_valid_names() -> None:
    res = subprocess.run(
        [*HEALER, "chaos", "run", "no-such-thing"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2
    assert "unknown scenario 'no-such-thing'" in res.stderr
    assert "listen-overflow" in res.stderr and "alert-storm" in res.stderr


def test_list_json_names_every_scenario_and_the_quick_subset() -> None:
    res = subprocess.run(
        [*HEALER, "chaos", "list", "--json"], capture_output=True, text=True, timeout=60
    )
    rows = json.loads(res.stdout)
    quick = {r["name"] for r in rows if r["quick"]}
    assert len(rows) == 15
    ranged = {r["name"]: (r["severity"]["low"], r["severity"]["high"]) for r in rows
              if r["severity"]}
    assert ranged == {"cgroup-oom": (110, 600), "listen-overflow": (100, 3000),
                      "fd-exhaustion": (100, 5000), "pids-exhaustion": (30, 1000)}
    assert {
        "listen-overflow",
        "pids-exhaustion",
        "gpu-xid",
        "prompt-injection",
        "bad-fix-rollback",
        "crash-during-verify",
    } <= quick


def _unprivileged(*args: str) -> subprocess.CompletedProcess[str]:
    """``healer chaos ...`` as an unprivileged user: a new user namespace maps nobody to the
    caller, so every scenario (they all need root) is skipped, and quickly."""
    if os.geteuid() != 0:
        return subprocess.run([*HEALER, "chaos", *args], capture_output=True, text=True,
                              timeout=60)
    unshare = require_tool("unshare", "Debian's util-linux")
    return subprocess.run([str(unshare), "--user", *HEALER, "chaos", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_suite_that_skipped_every_scenario_fails_unless_skips_are_allowed() -> None:
    res = _unprivileged("suite", "--quick")
    assert res.returncode == 1, res.stderr
    assert "chaos: 0 passed, 0 failed, 6 skipped" in res.stdout
    assert "every scenario was skipped, nothing was checked (needs root" in res.stderr
    assert _unprivileged("suite", "--quick", "--allow-skipped").returncode == 0


def test_a_skipped_run_fails_unless_skips_are_allowed() -> None:
    res = _unprivileged("run", "listen-overflow", "--json")
    assert res.returncode == 1 and json.loads(res.stdout)["skipped"] is True
    assert _unprivileged("run", "listen-overflow", "--allow-skipped").returncode == 0


def _chaos_processes() -> set[int]:
    found = set()
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "chaos.workloads." in cmd or "chaos.watchdog" in cmd or str(FAKE) in cmd:
            found.add(p.pid)
    return found


def test_ctrl_c_reverts_faults_and_leaves_no_netns_cgroup_or_process() -> None:
    need_root()
    before_ns, before_cg = set(netns.list_chaos()), set(CgroupFS.detect().list_chaos())
    before_procs = _chaos_processes()
    env = {**os.environ, "CHAOS_HEALER_CMD": f"{sys.executable} {FAKE}"}
    proc = subprocess.Popen(
        [*HEALER, "chaos", "run", "listen-overflow", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        new_ns: set[str] = set()
        while time.monotonic() < deadline:  # wait until the fault is in: somaxconn=16
            new_ns = set(netns.list_chaos()) - before_ns
            if new_ns and all(_somaxconn(n) == "16" for n in new_ns):
                break
            time.sleep(0.2)
        assert new_ns, "the run never created its namespace"
        assert len(_chaos_processes() - before_procs) >= 3  # server, client, watchdogs
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert set(netns.list_chaos()) - before_ns == set()
    assert set(CgroupFS.detect().list_chaos()) - before_cg == set()
    time.sleep(0.5)
    assert _chaos_processes() - before_procs == set()


def _somaxconn(ns: str) -> str | None:
    try:
        return netns.read_sysctl(ns, "net.core.somaxconn")
    except Exception:
        return None
