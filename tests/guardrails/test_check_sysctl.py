"""Sysctl writes under the default policy: protected keys, bounds, steps and direction."""

from __future__ import annotations

from collections.abc import Callable

from guardrails import Decision

from .conftest import sysctl

Decide = Callable[..., Decision]


def test_protected_key_is_denied_with_rule_named(decide: Decide) -> None:
    d = decide(sysctl("kernel.panic", "1"), current="0")
    assert d.verdict == "deny"
    assert d.rules == ("P-protected",)
    assert d.reasons == ("kernel.panic is a protected key",)


def test_protected_globs_cover_families(decide: Decide) -> None:
    for key in (
        "kernel.panic_on_oops",
        "kernel.yama.ptrace_scope",
        "net.ipv4.conf.all.rp_filter",
        "kernel.unprivileged_bpf_disabled",
        "user.max_user_namespaces",
        "kernel.printk",
    ):
        d = decide(sysctl(key, "1"), current="0", approvals=("alice", "bob"))
        assert d.verdict == "deny" and "P-protected" in d.rules, key


def test_protected_key_is_denied_even_when_approved(decide: Decide) -> None:
    d = decide(
        sysctl("kernel.sysrq", "1"),
        current="0",
        provenance="operator",
        approvals=("alice", "bob", "carol"),
    )
    assert d.verdict == "deny"


def test_llm_proposal_of_protected_key_is_denied(decide: Decide) -> None:
    d = decide(sysctl("kernel.panic", "1"), provenance="llm", in_playbook=False)
    assert d.verdict == "deny" and "P-protected" in d.rules


def test_somaxconn_raise_within_bounds_is_allowed(decide: Decide) -> None:
    # listen-overflow: somaxconn 16 -> clamp(max(16*4, 4096), 128, 65535) = 4096 in one step.
    d = decide(sysctl("net.core.somaxconn", "4096", "netns:chaos-1"), current="16")
    assert d.verdict == "allow"
    assert d.rules == ("S-somaxconn",)


def test_somaxconn_step_above_floor_and_percent_needs_approval(decide: Decide) -> None:
    d = decide(sysctl("net.core.somaxconn", "20000"), current="4096")
    assert d.verdict == "needs_approval"
    assert any("exceeds 300%" in r for r in d.reasons)
    assert d.approval == "approve"


def test_somaxconn_above_maximum_is_denied(decide: Decide) -> None:
    d = decide(sysctl("net.core.somaxconn", "70000"), current="65535")
    assert d.verdict == "deny"
    assert d.rules == ("S-somaxconn",)
    assert "above maximum 65535" in d.reasons[0]


def test_somaxconn_lowering_needs_approval(decide: Decide) -> None:
    d = decide(sysctl("net.core.somaxconn", "1024"), current="4096")
    assert d.verdict == "needs_approval"
    assert any("raises only" in r for r in d.reasons)


def test_step_rule_with_unknown_current_value_needs_approval(decide: Decide) -> None:
    d = decide(sysctl("net.core.somaxconn", "4096"))
    assert d.verdict == "needs_approval"
    assert any("current value unknown" in r for r in d.reasons)


def test_non_numeric_current_value_needs_approval(decide: Decide) -> None:
    d = decide(sysctl("net.core.somaxconn", "4096"), current="garbage")
    assert d.verdict == "needs_approval"


def test_syn_backlog_raise_is_allowed(decide: Decide) -> None:
    d = decide(sysctl("net.ipv4.tcp_max_syn_backlog", "4096", "netns:chaos-1"), current="128")
    assert d.verdict == "allow"


def test_pid_max_is_bounded_by_pid_max_limit(decide: Decide) -> None:
    assert decide(sysctl("kernel.pid_max", "65536"), current="32768").verdict == "allow"
    assert decide(sysctl("kernel.pid_max", "8388608"), current="4194304").verdict == "deny"


def test_unknown_sysctl_needs_approval(decide: Decide) -> None:
    d = decide(sysctl("net.ipv4.tcp_fin_timeout", "30"), current="60")
    assert d.verdict == "needs_approval"
    assert d.rules == ("U-unknown-sysctl",)


def test_missing_key_under_scope_is_denied(decide: Decide) -> None:
    d = decide(
        sysctl("net.core.somaxconn", "4096", "netns:chaos-1"), current="16", key_exists=False
    )
    assert d.verdict == "deny" and d.rules == ("P-key-missing",)


def test_every_deny_reason_is_collected(decide: Decide) -> None:
    d = decide(
        sysctl("net.core.somaxconn", "70000", "netns:evil"),
        current="16",
        key_exists=False,
        confine=("netns:chaos-1",),
        mode="observe",
    )
    assert d.verdict == "deny"
    assert {"P-confine", "P-key-missing", "S-somaxconn", "M-observe"} <= set(d.rules)
    assert len(d.reasons) >= 4


def test_vector_value_is_bounded_component_wise(decide: Decide, policy: object) -> None:
    # vm.dirty_* has min 0 and no max: a vector with a negative field is out of range.
    assert decide(sysctl("vm.dirty_ratio", "-1")).verdict == "deny"
    assert decide(sysctl("vm.dirty_ratio", "10")).verdict == "needs_approval"
