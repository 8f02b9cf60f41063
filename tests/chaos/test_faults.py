"""Faults are idempotent and revert themselves on TTL expiry or when the runner dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from chaos import netns
from chaos.faults import CgroupKnob, NetnsSysctl
from chaos.sandbox import Sandbox

KEY = "net.core.somaxconn"


def _wait(pred: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_netns_sysctl_fault_is_idempotent(sandbox: Sandbox) -> None:
    ns = sandbox.ns or ""
    before = netns.read_sysctl(ns, KEY)
    f = NetnsSysctl(ns, KEY, "16", ttl=60)
    f.inject()
    f.inject()
    assert f.is_active() and netns.read_sysctl(ns, KEY) == "16"
    assert f.revert() == [] and f.revert() == []
    assert not f.is_active() and netns.read_sysctl(ns, KEY) == before
    assert f.watchdog_pid is not None and not Path(f"/proc/{f.watchdog_pid}").exists()


def test_fault_reverts_itself_when_its_ttl_expires(sandbox: Sandbox) -> None:
    ns = sandbox.ns or ""
    before = netns.read_sysctl(ns, KEY)
    f = NetnsSysctl(ns, KEY, "16", ttl=1.0)
    f.inject()
    assert netns.read_sysctl(ns, KEY) == "16"
    assert _wait(lambda: netns.read_sysctl(ns, KEY) == before, timeout=8)


def test_fault_reverts_after_the_runner_is_sigkilled(sandbox: Sandbox) -> None:
    ns, cg = sandbox.ns or "", sandbox.cg
    assert cg is not None
    path = sandbox.cgroup("victim")
    cg.write(path, "pids.max", "100")
    before = netns.read_sysctl(ns, KEY)
    # A throwaway "runner" injects two faults with a long TTL, then is SIGKILLed.
    code = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from chaos.cgroups import CgroupFS
        from chaos.faults import CgroupKnob, NetnsSysctl
        NetnsSysctl({ns!r}, {KEY!r}, "16", ttl=600).inject()
        CgroupKnob(CgroupFS.detect(), {path!r}, "pids.max", "20", ttl=600).inject()
        print("injected", flush=True)
        time.sleep(600)
    """)
    runner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert runner.stdout and runner.stdout.readline().strip() == "injected"
    assert netns.read_sysctl(ns, KEY) == "16" and cg.read(path, "pids.max") == "20"
    os.kill(runner.pid, signal.SIGKILL)
    runner.wait()
    assert _wait(lambda: netns.read_sysctl(ns, KEY) == before)
    assert _wait(lambda: cg.read(path, "pids.max") == "100")


def test_cgroup_knob_fault_restores_the_exact_original(sandbox: Sandbox) -> None:
    assert sandbox.cg is not None
    path = sandbox.cgroup("app")
    original = sandbox.cg.read(path, "memory.max")
    f = CgroupKnob(sandbox.cg, path, "memory.max", str(100 * 2**20), ttl=60)
    f.inject()
    assert f.is_active()
    f.revert()
    assert sandbox.cg.read(path, "memory.max") == original
