"""The sandbox is made of real kernel objects and leaves none behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from chaos import netns
from chaos.cgroups import CgroupFS
from chaos.faults import Workload
from chaos.proc import create_time, python_module, same_process
from chaos.sandbox import Sandbox
from tests.chaos.conftest import leftovers, need_root


def test_sandbox_create_makes_netns_cgroups_and_scratch_dirs(sandbox: Sandbox) -> None:
    assert sandbox.ns and netns.exists(sandbox.ns)
    assert sandbox.cg and sandbox.cgroup_root
    for d in sandbox.cg.dirs(sandbox.cgroup_root):
        assert d.is_dir()
    assert sandbox.state_dir.is_dir() and sandbox.textfile_dir.is_dir()
    # the namespace has its own sysctls: writing one leaves the host's alone
    host = Path("/proc/sys/net/core/somaxconn").read_text()
    netns.write_sysctl(sandbox.ns, "net.core.somaxconn", "17")
    assert netns.read_sysctl(sandbox.ns, "net.core.somaxconn") == "17"
    assert Path("/proc/sys/net/core/somaxconn").read_text() == host


def test_destroy_kills_members_and_removes_everything() -> None:
    need_root()
    sb = Sandbox.create(ttl=120)
    cg_path = sb.cgroup("app")
    w = Workload(
        "sleeper",
        python_module("chaos.workloads.forker", "--children", "3"),
        ns=sb.ns,
        cg=sb.cg,
        cgroup=cg_path,
    )
    sb.add(w)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(sb.cg.procs(cg_path)) < 4:  # type: ignore[union-attr]
        time.sleep(0.05)
    members = sb.cg.procs(cg_path)  # type: ignore[union-attr]
    assert w.pid in members and len(members) >= 4
    assert w.pid in netns.pids(sb.ns or "")
    assert sb.destroy() == []
    assert leftovers(sb.id) == {"netns": [], "cgroups": []}
    assert not sb.root.exists()
    deadline = time.monotonic() + 5  # killed children are reaped by init asynchronously
    while time.monotonic() < deadline and any(_alive(pid) for pid in members):
        time.sleep(0.05)
    assert not [pid for pid in members if _alive(pid)]
    assert sb.destroy() == []  # idempotent


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_cgroup_v2_tree_create_attach_remove() -> None:
    need_root()
    unified = next(
        (
            p
            for p in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
            if (p / "cgroup.controllers").exists()
        ),
        None,
    )
    if unified is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    avail = set((unified / "cgroup.controllers").read_text().split())
    cg = CgroupFS.v2(unified, tuple(c for c in ("memory", "pids", "cpu") if c in avail))
    sb = Sandbox.create(use_netns=False, cg=cg, ttl=120)
    try:
        path = sb.cgroup("leaf")
        w = Workload(
            "sleeper",
            python_module("chaos.workloads.forker", "--children", "1"),
            cg=cg,
            cgroup=path,
        )
        sb.add(w)
        time.sleep(0.3)
        assert w.pid in cg.procs(path)
        if "pids" in avail:
            cg.write(path, "pids.max", "50")
            assert cg.read(path, "pids.max") == "50"
    finally:
        assert sb.destroy() == []
    assert not (unified / sb.cgroup_root.strip("/")).exists()  # type: ignore[union-attr]


def test_v1_knob_names_and_values_translate() -> None:
    cg = CgroupFS(1, {"memory": Path("/m"), "pids": Path("/p"), "cpu": Path("/c")})
    assert cg.knob_name("memory.max") == "memory.limit_in_bytes"
    assert cg.knob_name("cpu.weight") == "cpu.shares"
    assert cg.knob_name("pids.max") == "pids.max"
    assert [str(d) for d in cg.dirs("/healer-chaos-x/app")] == [
        "/c/healer-chaos-x/app",
        "/m/healer-chaos-x/app",
        "/p/healer-chaos-x/app",
    ]
    with pytest.raises(ValueError):
        cg.dirs("/healer-chaos-x/../../etc")


def test_a_process_is_known_by_its_start_since_boot_not_the_wall_clock() -> None:
    """The watchdog takes its owner for dead when the start time it reads differs from the
    one recorded: read from /proc in seconds since boot, it does not move with the clock
    (psutil's adds a boot time that a stepped clock moves by whole seconds)."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        born = create_time(child.pid)
        assert born is not None and abs(born - since_boot) < 1.0
        assert create_time(child.pid) == born and same_process(child.pid, born)
        assert not same_process(child.pid, born - 1.0)  # another process, that pid reused
    finally:
        child.kill()
        child.wait()
    assert create_time(child.pid) is None and not same_process(child.pid, born)
