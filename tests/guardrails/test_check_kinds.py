"""Cgroup, process and GPU actions and messages under the default policy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guardrails import Decision

Decide = Callable[..., Decision]
MiB = 1024 * 1024
BUDGET = {"cgroup_budget_bytes": 2048 * MiB, "host_memory_bytes": 16384 * MiB}


def cg(knob: str, value: str, path: str = "/healer-chaos-1/oom") -> dict[str, Any]:
    return {
        "kind": "cgroup_limit",
        "scope": f"cgroup:{path}",
        "path": path,
        "knob": knob,
        "value": value,
    }


def power(watts: float, index: int = 0) -> dict[str, Any]:
    return {"kind": "gpu_power_limit", "scope": f"gpu:{index}", "index": index, "watts": watts}


def test_cgroup_memory_raise_within_budget_is_allowed(decide: Decide) -> None:
    # cgroup-oom: 100 MB limit, peak ~120 MB -> 1.5x peak = 180 MB.
    d = decide(cg("memory.max", str(180 * MiB)), current=str(100 * MiB), facts=BUDGET)
    assert d.verdict == "allow" and d.rules == ("C-memory",)


def test_cgroup_v1_memory_limit_uses_the_same_rule(decide: Decide) -> None:
    d = decide(cg("memory.limit_in_bytes", str(180 * MiB)), current=str(100 * MiB), facts=BUDGET)
    assert d.verdict == "allow"


def test_cgroup_memory_over_budget_is_denied(decide: Decide) -> None:
    facts = {"cgroup_budget_bytes": 150 * MiB, "host_memory_bytes": 16384 * MiB}
    d = decide(cg("memory.max", str(180 * MiB)), current=str(100 * MiB), facts=facts)
    assert d.verdict == "deny"
    assert "cgroup_budget_bytes" in d.reasons[0]


def test_cgroup_memory_over_host_fraction_is_denied(decide: Decide) -> None:
    facts = {"cgroup_budget_bytes": 100000 * MiB, "host_memory_bytes": 200 * MiB}
    d = decide(cg("memory.max", str(180 * MiB)), current=str(100 * MiB), facts=facts)
    assert d.verdict == "deny"


def test_cgroup_memory_without_budget_fact_needs_approval(decide: Decide) -> None:
    d = decide(cg("memory.max", str(180 * MiB)), current=str(100 * MiB))
    assert d.verdict == "needs_approval"
    assert any("cgroup_budget_bytes unknown" in r for r in d.reasons)


def test_cgroup_memory_unlimited_is_denied(decide: Decide) -> None:
    assert decide(cg("memory.max", "max"), current=str(100 * MiB), facts=BUDGET).verdict == "deny"


def test_cgroup_memory_more_than_doubling_needs_approval(decide: Decide) -> None:
    d = decide(cg("memory.max", str(1024 * MiB)), current=str(300 * MiB), facts=BUDGET)
    assert d.verdict == "needs_approval"


def test_setting_a_memory_limit_where_none_was_needs_approval(decide: Decide) -> None:
    d = decide(cg("memory.max", str(512 * MiB)), current="max", facts=BUDGET)
    assert d.verdict == "needs_approval"


def test_pids_max_raise_is_allowed(decide: Decide) -> None:
    assert decide(cg("pids.max", "80"), current="20").verdict == "allow"


def test_cpu_weight_change_needs_approval(decide: Decide) -> None:
    d = decide(cg("cpu.weight", "20", "/healer-chaos-1/hog"), current="100")
    assert d.verdict == "needs_approval" and d.rules == ("C-cpu-weight",)


def test_nofile_raise_up_to_hard_limit_is_allowed(decide: Decide) -> None:
    a = {
        "kind": "process_rlimit",
        "scope": "pid:4242",
        "pid": 4242,
        "resource": "nofile",
        "soft": 4096,
    }
    assert decide(a, current="64", facts={"hard_limit": 4096}).verdict == "allow"


def test_nofile_above_hard_limit_is_denied(decide: Decide) -> None:
    a = {"kind": "process_rlimit", "pid": 4242, "resource": "nofile", "soft": 8192}
    assert decide(a, current="64", facts={"hard_limit": 4096}).verdict == "deny"


def test_nproc_raise_needs_approval(decide: Decide) -> None:
    a = {"kind": "process_rlimit", "pid": 4242, "resource": "nproc", "soft": 100}
    assert decide(a, current="50", facts={"hard_limit": 4096}).verdict == "needs_approval"


def test_nice_needs_approval(decide: Decide) -> None:
    d = decide({"kind": "process_nice", "pid": 4242, "nice": 10}, current="0")
    assert d.verdict == "needs_approval" and d.approval == "approve"


def test_init_is_a_protected_target(decide: Decide) -> None:
    a = {"kind": "process_rlimit", "pid": 1, "resource": "nofile", "soft": 4096}
    d = decide(a, current="1024", facts={"hard_limit": 524288})
    assert d.verdict == "deny" and "P-protected-target" in d.rules


NVML = {"gpu_min_watts": 100.0, "gpu_max_watts": 400.0}


def test_power_limit_cut_within_ten_percent_is_allowed(decide: Decide) -> None:
    assert decide(power(270), current="300", facts=NVML).verdict == "allow"


def test_power_limit_cut_over_ten_percent_needs_approval(decide: Decide) -> None:
    d = decide(power(260), current="300", facts=NVML)
    assert d.verdict == "needs_approval"
    assert any("exceeds 10%" in r for r in d.reasons)


def test_power_limit_raise_needs_approval(decide: Decide) -> None:
    d = decide(power(320), current="300", facts=NVML)
    assert d.verdict == "needs_approval"
    assert any("cuts only" in r for r in d.reasons)


def test_power_limit_below_nvml_minimum_is_denied(decide: Decide) -> None:
    d = decide(power(95), current="100", facts=NVML)
    assert d.verdict == "deny" and "gpu_min_watts" in d.reasons[0]


def test_power_limit_without_nvml_constraints_needs_approval(decide: Decide) -> None:
    assert decide(power(270), current="300").verdict == "needs_approval"


def test_gpu_compute_mode_is_disruptive_and_needs_approval(decide: Decide) -> None:
    a = {"kind": "gpu_compute_mode", "scope": "gpu:0", "index": 0, "mode": "exclusive_process"}
    d = decide(a)
    assert d.verdict == "needs_approval"
    assert {"G-compute-mode", "K-disruptive"} <= set(d.rules)


def test_mps_and_timeslice_need_approval(decide: Decide) -> None:
    mps = {"kind": "gpu_mps_thread_percentage", "index": 0, "client": 77, "percent": 30}
    ts = {"kind": "gpu_timeslice", "index": 0, "level": "short"}
    assert decide(mps).verdict == "needs_approval"
    assert decide(ts).verdict == "needs_approval"


def test_notify_is_allowed_and_escalate_asks_a_person_even_in_observe_mode(
    decide: Decide,
) -> None:
    expected = {"notify": "allow", "escalate": "needs_approval"}
    for kind, verdict in expected.items():
        d = decide(
            {"kind": kind, "message": "gpu 0 fell off the bus; drain it"},
            mode="observe",
            provenance="playbook",
            in_playbook=True,
            root=False,
            changes_this_cycle=99,
        )
        assert d.verdict == verdict, kind


def test_a_message_the_llm_wrote_outside_the_playbook_waits_for_a_person(
    decide: Decide,
) -> None:
    message = {"kind": "notify", "message": "urgent: log in at http://evil.example to fix"}
    outside = decide(message, provenance="llm", in_playbook=False)
    assert outside.verdict == "needs_approval" and "V-outside-playbook" in outside.rules
    assert decide(message, provenance="llm", in_playbook=True).verdict == "allow"
