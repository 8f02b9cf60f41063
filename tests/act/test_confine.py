"""Confinement for pid and GPU scopes: the gate adds them per action, from /proc and Settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails import load_policy
from guardrails.actions import Action, CgroupLimit, GpuPowerLimit, ProcessRlimit
from healer.act.confine import Confinement, cgroup_paths, under
from healer.act.gate import Gate
from healer.store.repository import Repository

PROC = Path(__file__).parent / "fixtures" / "proc"
NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def _sandbox(gpu_backend: str = "simulated") -> Confinement:
    return Confinement.of("healer-chaos-1", "/healer-chaos-1/", procfs_root=PROC,
                          gpu_backend=gpu_backend)


def _rules(repo: Repository, confinement: Confinement, action: Action) -> tuple[str, ...]:
    gate = Gate(repo, load_policy(), mode="auto", confine=confinement, root=True)
    ctx = gate.context(action, None, NOW, provenance="playbook", in_playbook=True)
    return gate.decide(action, ctx, when="proposal").rules


def test_cgroup_entry_is_the_path_relative_to_the_mount() -> None:
    assert Confinement.of(None, "/healer-chaos-1/").scopes == ("cgroup:/healer-chaos-1",)
    assert Confinement.of("ns1", "healer-chaos-1").scopes == ("netns:ns1",
                                                              "cgroup:/healer-chaos-1")
    assert Confinement.of(None, None).for_action(ProcessRlimit(
        scope="pid:4343", pid=4343, resource="nofile", soft=1024)) == ()


@pytest.mark.parametrize(("pid", "inside"), [
    (4242, True),   # v1 hybrid: memory/pids lines below the root, systemd lines elsewhere
    (4444, True),   # v2 only, at the root itself
    (4343, False),  # a host process
    (4545, False),  # /healer-chaos-10 only shares a prefix with /healer-chaos-1
    (4646, False),  # no such process
])
def test_pid_membership_comes_from_proc_pid_cgroup(pid: int, inside: bool) -> None:
    assert _sandbox().pid_inside(pid) is inside


def test_cgroup_lines_parse_v1_and_v2() -> None:
    text = (PROC / "4242" / "cgroup").read_text()
    assert list(cgroup_paths(text))[:2] == ["/healer-chaos-1/fd", "/healer-chaos-1/fd"]
    assert under("/healer-chaos-1/fd", "/healer-chaos-1")
    assert not under("/healer-chaos-10", "/healer-chaos-1")


def test_rlimit_for_a_sandboxed_pid_passes_confinement(repo: Repository) -> None:
    inside = ProcessRlimit(scope="pid:4242", pid=4242, resource="nofile", soft=1024)
    outside = ProcessRlimit(scope="pid:4343", pid=4343, resource="nofile", soft=1024)
    assert _sandbox().for_action(inside)[-1] == "pid:4242"
    assert "P-confine" not in _rules(repo, _sandbox(), inside)
    assert "P-confine" in _rules(repo, _sandbox(), outside)


def test_cgroup_limit_from_a_kernel_message_path_is_inside(repo: Repository) -> None:
    # oom_memcg=/healer-chaos-1/oom, as the playbook turns it into an action
    action = CgroupLimit(scope="cgroup:/healer-chaos-1/oom", path="/healer-chaos-1/oom",
                         knob="memory.max", value="157286400")
    assert "P-confine" not in _rules(repo, _sandbox(), action)
    stray = CgroupLimit(scope="cgroup:/healer-chaos-10/oom", path="/healer-chaos-10/oom",
                        knob="memory.max", value="157286400")
    assert "P-confine" in _rules(repo, _sandbox(), stray)


def test_simulated_gpu_is_sandbox_state_but_a_real_gpu_is_not(repo: Repository) -> None:
    action = GpuPowerLimit(scope="gpu:0", index=0, watts=300)
    assert "P-confine" not in _rules(repo, _sandbox("simulated"), action)
    assert "P-confine" in _rules(repo, _sandbox("nvml"), action)
    assert "P-confine" in _rules(repo, _sandbox("auto"), action)
    # host scope stays outside even with the simulated GPU
    host = GpuPowerLimit(scope="host", index=0, watts=300)
    assert "P-confine" in _rules(repo, _sandbox("simulated"), host)
    # unconfined: the simulated backend adds nothing
    assert Confinement.of(None, None, gpu_backend="simulated").for_action(action) == ()
