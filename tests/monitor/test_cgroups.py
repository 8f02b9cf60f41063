from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from healer.detect.signals import MetricIndex
from healer.host.cgroupfs import CgroupMounts, parse_mountinfo
from healer.monitor.base import Collector
from healer.monitor.cgroups import (
    CgroupCollector,
    CgroupTree,
    Hierarchy,
    parse_flat_keyed,
    parse_limit,
    resolve_hierarchies,
)
from healer.monitor.registry import build_collectors
from healer.settings import Settings
from playbooks.loader import load_library
from tests.monitor.conftest import FIXTURES, PSI_TREE

V1 = FIXTURES / "cgroup-v1"
V2 = FIXTURES / "cgroup-v2"
MIB = 1024 * 1024


def _collector(tree: Path, root: str | None, **kw: object) -> CgroupCollector:
    cg = CgroupTree(tree / "proc", tree / "sys", cgroup_root=root)
    return CgroupCollector(cg, **kw)  # type: ignore[arg-type]


def _groups(metrics: dict[str, float]) -> set[str]:
    return {name.split(".", 1)[1].rsplit(".", 2)[0] for name in metrics}


# --- pure parsing -------------------------------------------------------------------------

def test_flat_keyed_files_parse_to_integers_and_skip_junk() -> None:
    text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 3\nbroken\nmax.imposed 4\nbad x\n"
    assert parse_flat_keyed(text) == {"low": 0, "high": 0, "max": 12, "oom": 3,
                                      "oom_kill": 3, "max.imposed": 4}


@pytest.mark.parametrize(("text", "want"), [
    ("104857600\n", 104857600.0), ("max\n", None), ("9223372036854771712\n", None),
    ("20", 20.0), ("", None), ("-1\n", None),
])
def test_limit_files_omit_unlimited(text: str, want: float | None) -> None:
    assert parse_limit(text) == want


def test_each_controller_comes_from_the_hierarchy_that_owns_it() -> None:
    hybrid = CgroupMounts(unified=Path("/u"), v1={"memory": Path("/m"), "pids": Path("/p"),
                                                 "cpu": Path("/c"), "cpuacct": Path("/c")})
    assert resolve_hierarchies(hybrid, frozenset({"hugetlb"})) == {
        "memory": Hierarchy(Path("/m"), False), "pids": Hierarchy(Path("/p"), False),
        "cpu": Hierarchy(Path("/c"), False), "cpuacct": Hierarchy(Path("/c"), False)}
    pure_v2 = CgroupMounts(unified=Path("/u"))
    got = resolve_hierarchies(pure_v2, frozenset({"memory", "cpu"}))
    assert got == {"memory": Hierarchy(Path("/u"), True), "cpu": Hierarchy(Path("/u"), True),
                   "cpuacct": Hierarchy(Path("/u"), True)}  # no pids: not offered


# --- v1 (hybrid host) fake tree -------------------------------------------------------------

def test_v1_tree_reports_memory_pids_and_cpu_per_cgroup() -> None:
    m = _collector(V1, "/healer-chaos-1").collect().metrics
    oom, forker, hog = "cgroup./healer-chaos-1/oom", "cgroup./healer-chaos-1/forker", \
        "cgroup./healer-chaos-1/hog"
    assert m[f"{oom}.memory.current_bytes"] == 100 * MIB
    assert m[f"{oom}.memory.max_bytes"] == 100 * MIB
    assert m[f"{oom}.memory.peak_bytes"] == 100 * MIB
    assert m[f"{oom}.memory.oom_kill_total"] == 3
    assert m[f"{forker}.pids.current"] == 20
    assert m[f"{forker}.pids.max"] == 20
    assert m[f"{forker}.pids.events_max_total"] == 7
    assert m[f"{hog}.cpu.usage_seconds_total"] == pytest.approx(12.5)
    assert f"{forker}.memory.current_bytes" not in m  # forker exists only in the pids tree


def test_v1_cpu_shares_are_reported_as_systemd_weight() -> None:
    m = _collector(V1, "/healer-chaos-1").collect().metrics
    assert m["cgroup./healer-chaos-1/hog.cpu.weight"] == 200  # shares 2048
    assert m["cgroup./healer-chaos-1/oom.cpu.weight"] == 100  # shares 1024


def test_v1_unlimited_limits_are_omitted_not_faked() -> None:
    m = _collector(V1, "/healer-chaos-1").collect().metrics
    assert "cgroup./healer-chaos-1.memory.current_bytes" in m
    assert "cgroup./healer-chaos-1.memory.max_bytes" not in m  # PAGE_COUNTER_MAX
    assert "cgroup./healer-chaos-1.pids.max" not in m  # "max"


def test_cgroup_root_confines_the_walk_to_its_subtree() -> None:
    m = _collector(V1, "/healer-chaos-1").collect().metrics
    assert _groups(m) == {"/healer-chaos-1", "/healer-chaos-1/oom", "/healer-chaos-1/leak",
                          "/healer-chaos-1/forker", "/healer-chaos-1/hog"}


def test_without_root_the_walk_covers_two_levels_and_skips_the_host_root() -> None:
    groups = _groups(_collector(V1, None).collect().metrics)
    assert "/system.slice/sshd.service" in groups
    assert "/user.slice" in groups
    assert "/system.slice/sshd.service/deep" not in groups  # depth 3
    assert "/" not in groups and "" not in groups


def test_the_group_count_is_capped_shallowest_first() -> None:
    groups = _groups(_collector(V1, None, max_groups=3).collect().metrics)
    assert groups == {"/healer-chaos-1", "/system.slice", "/user.slice"}


# --- v2 fake tree ---------------------------------------------------------------------------

def test_v2_tree_reports_the_same_names() -> None:
    m = _collector(V2, "/healer-chaos-2").collect().metrics
    oom, forker = "cgroup./healer-chaos-2/oom", "cgroup./healer-chaos-2/forker"
    assert m[f"{oom}.memory.current_bytes"] == 100 * MIB
    assert m[f"{oom}.memory.max_bytes"] == 100 * MIB
    assert m[f"{oom}.memory.peak_bytes"] == 100 * MIB
    assert m[f"{oom}.memory.oom_kill_total"] == 3
    assert m[f"{oom}.cpu.usage_seconds_total"] == pytest.approx(0.5)
    assert m[f"{forker}.pids.max"] == 20
    assert m[f"{forker}.pids.events_max_total"] == 31  # not max.imposed's line
    assert m["cgroup./healer-chaos-2/hog.cpu.weight"] == 400
    assert "cgroup./healer-chaos-2.memory.max_bytes" not in m  # "max"


def test_v2_missing_memory_peak_drops_only_that_metric() -> None:
    m = _collector(V2, "/healer-chaos-2").collect().metrics
    assert "cgroup./healer-chaos-2/leak.memory.peak_bytes" not in m
    assert m["cgroup./healer-chaos-2/leak.memory.current_bytes"] == 50 * MIB


@pytest.mark.parametrize(("tree", "root"), [(V1, "/healer-chaos-1"), (V2, "/healer-chaos-2")],
                         ids=["v1", "v2"])
def test_playbook_cgroup_metrics_are_emitted(tree: Path, root: str) -> None:
    # Memory metrics come from the oom group, pids metrics from the forker (on v1 a group
    # exists only in the hierarchies it was made in: the oom group has no pids directory).
    paths = {f"{root}/oom", f"{root}/forker"}
    names = set(_collector(tree, None).collect().metrics)
    index = MetricIndex()
    index.refresh(names)
    patterns = {p for pb in load_library() for p in _metric_patterns(pb) if "{cgroup}" in p}
    assert patterns, "the library names no cgroup metric"
    for pattern in patterns:
        found = [labels["cgroup"] for _, labels in index.expand(pattern)]
        assert paths & set(found), pattern


def _metric_patterns(pb: object) -> list[str]:
    out = list(pb.evidence.metrics)  # type: ignore[attr-defined]
    out += [s.metric for s in pb.detect.signals if hasattr(s, "metric")]  # type: ignore[attr-defined]
    return [p for p in out if isinstance(p, str)]


# --- churn ----------------------------------------------------------------------------------

def test_a_cgroup_removed_after_discovery_just_drops_out(tmp_path: Path) -> None:
    shutil.copytree(V2, tmp_path / "t")
    c = _collector(tmp_path / "t", "/healer-chaos-2", rescan_seconds=3600)
    assert "cgroup./healer-chaos-2/oom.pids.current" in c.collect().metrics
    shutil.rmtree(tmp_path / "t/sys/fs/cgroup/healer-chaos-2/oom")
    m = c.collect().metrics
    assert not any(k.startswith("cgroup./healer-chaos-2/oom.") for k in m)
    assert "cgroup./healer-chaos-2/leak.pids.current" in m


def test_a_new_cgroup_appears_at_the_next_rescan(tmp_path: Path) -> None:
    shutil.copytree(V2, tmp_path / "t")
    now = [100.0]
    c = _collector(tmp_path / "t", "/healer-chaos-2", rescan_seconds=5, clock=lambda: now[0])
    c.collect()
    shutil.copytree(tmp_path / "t/sys/fs/cgroup/healer-chaos-2/oom",
                    tmp_path / "t/sys/fs/cgroup/healer-chaos-2/new")
    now[0] += 1
    assert "cgroup./healer-chaos-2/new.memory.current_bytes" not in c.collect().metrics
    now[0] += 5
    assert "cgroup./healer-chaos-2/new.memory.current_bytes" in c.collect().metrics


def test_a_host_without_cgroup_mounts_yields_an_empty_part() -> None:
    c = CgroupCollector(CgroupTree(PSI_TREE, PSI_TREE / "sys"))
    assert c.collect().metrics == {}
    assert isinstance(c, Collector)


# --- read_cgroup ----------------------------------------------------------------------------

@pytest.mark.parametrize(("tree", "path", "knob", "want"), [
    (V1, "/healer-chaos-1/oom", "memory.max", "104857600"),
    (V1, "/healer-chaos-1", "memory.max", "max"),  # v1 PAGE_COUNTER_MAX
    (V1, "/healer-chaos-1/hog", "cpu.weight", "200"),  # cpu.shares 2048
    (V1, "/healer-chaos-1/hog", "cpu.shares", "2048"),  # a v1 name reads raw
    (V1, "/healer-chaos-1/forker", "pids.max", "20"),
    (V1, "/healer-chaos-1", "pids.max", "max"),
    (V1, "/healer-chaos-1/oom", "memory.high", None),  # no v1 twin
    (V1, "/healer-chaos-1/gone", "memory.max", None),
    (V2, "/healer-chaos-2", "memory.max", "max"),
    (V2, "/healer-chaos-2/hog", "cpu.weight", "400"),
    (V2, "/healer-chaos-2/forker/", "pids.max", "20"),
], ids=lambda v: str(v).rsplit("/", 1)[-1] if isinstance(v, Path) else None)
def test_read_cgroup_returns_v2_units(tree: Path, path: str, knob: str, want: str | None) -> None:
    assert CgroupTree(tree / "proc", tree / "sys").read_cgroup(path, knob) == want


def test_read_cgroup_is_confined_to_the_cgroup_root() -> None:
    tree = CgroupTree(V1 / "proc", V1 / "sys", cgroup_root="/healer-chaos-1")
    assert tree.read_cgroup("/healer-chaos-1/oom", "memory.max") == "104857600"
    assert tree.read_cgroup("/system.slice", "memory.max") is None
    assert tree.read_cgroup("/healer-chaos-10", "memory.max") is None  # a prefix, not a child


@pytest.mark.parametrize(("path", "knob"), [
    ("/healer-chaos-1/../system.slice", "memory.max"), ("healer-chaos-1", "memory.max"),
    ("/healer-chaos-1", "../memory.max"), ("/healer-chaos-1", "memory.max/x"),
])
def test_read_cgroup_rejects_traversal(path: str, knob: str) -> None:
    tree = CgroupTree(V1 / "proc", V1 / "sys")
    with pytest.raises(ValueError):
        tree.read_cgroup(path, knob)


def test_every_playbook_cgroup_knob_is_readable_on_both_trees() -> None:
    knobs = {k for pb in load_library() for k in pb.evidence.cgroup_knobs}
    assert {"memory.max", "pids.max", "cpu.weight"} <= knobs
    v1 = CgroupTree(V1 / "proc", V1 / "sys")
    v2 = CgroupTree(V2 / "proc", V2 / "sys")
    for knob in knobs:
        group = {"memory": "oom", "pids": "forker", "cpu": "hog"}[knob.split(".")[0]]
        assert v1.read_cgroup(f"/healer-chaos-1/{group}", knob) is not None, knob
        assert v2.read_cgroup(f"/healer-chaos-2/{group}", knob) is not None, knob


# --- registry -------------------------------------------------------------------------------

def test_build_collectors_adds_the_cgroup_collector_unless_disabled(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, procfs_root=V1 / "proc", sysfs_root=V1 / "sys",
                 cgroup_root=Path("/healer-chaos-1"), kmsg_source="none", gpu_backend="none")
    on = {c.name: c for c in build_collectors(s, processes=False)}
    assert "cgroups" in on
    assert "cgroup./healer-chaos-1/oom.memory.max_bytes" in on["cgroups"].collect().metrics
    assert "cgroups" not in {c.name for c in build_collectors(s, processes=False, cgroups=False)}


# --- the real kernel (root): scratch cgroups only, removed in finally -----------------------

# Joins nothing itself: the test moves it, then sends a line. It tries one fork (refused
# under pids.max 1), touches 8 MiB (charged to its new memcg) and burns 0.2 s of CPU.
CHILD = """
import os, sys, time
sys.stdin.readline()
try:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    result = "forked"
except OSError:
    result = "refused"
buf = bytearray(8 << 20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
t = time.process_time()
while time.process_time() - t < 0.2:
    pass
print(result, flush=True)
time.sleep(60)
"""


@contextlib.contextmanager
def _scratch(dirs: list[Path]) -> Iterator[subprocess.Popen[str]]:
    """Make ``dirs``, run CHILD, then kill it and remove every dir we made, even on failure."""
    made: list[Path] = []
    child = None
    try:
        for d in dirs:
            d.mkdir()
            made.append(d)
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        yield child
    finally:
        if child is not None:
            child.kill()
            child.wait()
        for d in reversed(made):
            for _ in range(50):  # the dead child leaves the group asynchronously
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def _go(child: subprocess.Popen[str], procs: list[Path]) -> str:
    for f in procs:
        f.write_text(str(child.pid))
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    return child.stdout.readline().strip()


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create scratch cgroups")


@pytest.mark.root
def test_real_v1_scratch_cgroup_reports_its_usage_and_limits() -> None:
    _need_root()
    v1 = {c: h.mount for c, h in CgroupTree().hierarchies().items() if not h.v2}
    if "memory" not in v1 or "pids" not in v1:
        pytest.skip("no v1 memory and pids hierarchies on this host")
    name = f"/healer-test-{secrets.token_hex(4)}"
    dirs = [m / name[1:] for m in sorted(set(v1.values()))]
    mem, pids = v1["memory"] / name[1:], v1["pids"] / name[1:]
    with _scratch(dirs) as child:
        (mem / "memory.limit_in_bytes").write_text(str(64 * MIB))
        (pids / "pids.max").write_text("1")
        if "cpu" in v1:
            (v1["cpu"] / name[1:] / "cpu.shares").write_text("512")
        assert _go(child, [d / "cgroup.procs" for d in dirs]) == "refused"
        c = CgroupCollector(CgroupTree(cgroup_root=name))
        m, p = c.collect().metrics, f"cgroup.{name}"
        assert _groups(m) == {name}
        assert m[f"{p}.pids.current"] == 1
        assert m[f"{p}.pids.max"] == 1
        assert m[f"{p}.pids.events_max_total"] == 1
        assert m[f"{p}.memory.max_bytes"] == 64 * MIB
        assert 8 * MIB <= m[f"{p}.memory.current_bytes"] <= m[f"{p}.memory.peak_bytes"]
        assert m[f"{p}.memory.oom_kill_total"] == 0
        if "cpu" in v1:
            assert m[f"{p}.cpu.weight"] == 50
            assert c.read_cgroup(name, "cpu.weight") == "50"
        if "cpuacct" in v1:
            assert m[f"{p}.cpu.usage_seconds_total"] >= 0.15
        assert c.read_cgroup(name, "memory.max") == str(64 * MIB)
        assert c.read_cgroup(name, "pids.max") == "1"
        assert c.read_cgroup("/", "memory.max") is None  # outside cgroup_root
    assert not any(d.exists() for d in dirs)


@pytest.mark.root
def test_real_v2_scratch_cgroup_reports_cpu_usage() -> None:
    _need_root()
    mount = parse_mountinfo(Path("/proc/self/mountinfo").read_text()).unified
    if mount is None or not os.access(mount, os.W_OK):
        pytest.skip("no writable cgroup2 mount on this host")
    name = f"/healer-test-{secrets.token_hex(4)}"
    d = mount / name[1:]
    with _scratch([d]) as child:
        assert _go(child, [d / "cgroup.procs"]) in ("forked", "refused")
        tree = CgroupTree(cgroup_root=name, mounts=CgroupMounts(unified=mount))
        m, p = CgroupCollector(tree).collect().metrics, f"cgroup.{name}"
        assert m[f"{p}.cpu.usage_seconds_total"] >= 0.15  # cpu.stat is a core v2 file
        if (d / "memory.current").exists():  # memory enabled in the parent's subtree_control
            assert m[f"{p}.memory.current_bytes"] >= 8 * MIB
            assert tree.read_cgroup(name, "memory.max") == "max"
        if (d / "pids.current").exists():
            assert m[f"{p}.pids.current"] >= 1
    assert not d.exists()
