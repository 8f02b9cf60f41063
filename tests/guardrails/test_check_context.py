"""Context rules: confinement, history, blast radius, modes, provenance and approvals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from guardrails import CheckContext, Decision, HistoryEntry, check, check_raw, load_policy

from .conftest import FIXTURES, NOW, act, ctx, sysctl

Decide = Callable[..., Decision]
SOMAXCONN = sysctl("net.core.somaxconn", "4096", "netns:chaos-1")
TARGET = "sysctl_write:netns:chaos-1:net.core.somaxconn"


def ago(seconds: float, state: str = "verified", value: str = "1024") -> HistoryEntry:
    return HistoryEntry(
        target=TARGET, ts=NOW - timedelta(seconds=seconds), state=state, value=value
    )


def test_scope_outside_confine_is_denied(decide: Decide) -> None:
    d = decide(
        sysctl("net.core.somaxconn", "4096", "host"), current="16", confine=("netns:chaos-1",)
    )
    assert d.verdict == "deny" and d.rules == ("P-confine",)


def test_confine_does_not_match_a_longer_name(decide: Decide) -> None:
    d = decide(
        sysctl("net.core.somaxconn", "4096", "netns:chaos-10"),
        current="16",
        confine=("netns:chaos-1",),
    )
    assert d.verdict == "deny"


def test_cgroup_under_confined_prefix_is_allowed(decide: Decide) -> None:
    a = {
        "kind": "cgroup_limit",
        "scope": "cgroup:/healer-chaos-1/w",
        "path": "/healer-chaos-1/w",
        "knob": "pids.max",
        "value": "80",
    }
    assert decide(a, current="20", confine=("cgroup:/healer-chaos-1",)).verdict == "allow"
    evil = {**a, "scope": "cgroup:/healer-chaos-evil", "path": "/healer-chaos-evil"}
    assert decide(evil, current="20", confine=("cgroup:/healer-chaos-1",)).verdict == "deny"


def test_cgroup_path_outside_its_scope_is_malformed(decide: Decide) -> None:
    a = {
        "kind": "cgroup_limit",
        "scope": "cgroup:/healer-chaos-1",
        "path": "/system.slice",
        "knob": "pids.max",
        "value": "80",
    }
    d = decide(a, current="20")
    assert d.verdict == "deny" and "P-shape" in d.rules


def test_sysctl_in_a_gpu_scope_is_malformed(decide: Decide) -> None:
    d = decide(sysctl("net.core.somaxconn", "4096", "gpu:0"), current="16")
    assert d.verdict == "deny" and "P-shape" in d.rules


def test_in_place_within_sandbox_process_needs_its_pid_confined(decide: Decide) -> None:
    a = {
        "kind": "process_rlimit",
        "scope": "pid:4242",
        "pid": 4242,
        "resource": "nofile",
        "soft": 4096,
    }
    kw = {"current": "64", "facts": {"hard_limit": 4096}}
    assert decide(a, confine=("netns:chaos-1",), **kw).verdict == "deny"
    assert decide(a, confine=("netns:chaos-1", "pid:4242"), **kw).verdict == "allow"


def test_paused_target_after_admin_drift_needs_approval(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="16", paused_targets=frozenset({TARGET}))
    assert d.verdict == "needs_approval" and "D-paused" in d.rules


def test_cooldown_denies_a_second_change_soon_after(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="1024", history=(ago(60),))
    assert d.verdict == "deny" and d.rules == ("R-cooldown",)
    assert decide(SOMAXCONN, current="1024", history=(ago(600),)).verdict == "allow"


def test_history_of_other_targets_and_unapplied_states_does_not_count(decide: Decide) -> None:
    other = HistoryEntry(target="sysctl_write:host:net.core.somaxconn", ts=NOW, state="verified")
    history = (other, ago(10, state="denied"), ago(10, state="awaiting_approval"))
    assert decide(SOMAXCONN, current="16", history=history).verdict == "allow"


def test_rate_limit_per_target_per_hour(decide: Decide) -> None:
    history = tuple(ago(600 + 600 * i) for i in range(4))
    d = decide(SOMAXCONN, current="1024", history=history)
    assert d.verdict == "deny" and d.rules == ("R-rate",)


def test_value_rolled_back_recently_is_not_reapplied(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="16", history=(ago(3600, state="rolled_back", value="4096"),))
    assert d.verdict == "deny" and "R-repeat-rollback" in d.rules


def test_blast_radius_per_cycle_and_per_hour(decide: Decide) -> None:
    assert decide(SOMAXCONN, current="16", changes_this_cycle=3).rules == ("B-cycle",)
    assert decide(SOMAXCONN, current="16", changes_last_hour=20).rules == ("B-hour",)
    assert decide(SOMAXCONN, current="16", changes_this_cycle=2).verdict == "allow"


def test_observe_mode_applies_nothing(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="16", mode="observe")
    assert d.verdict == "deny"
    assert d.rules == ("M-observe",) and d.reasons == ("observe mode applies nothing",)


def test_advise_mode_approves_nothing_automatically(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="16", mode="advise")
    assert d.verdict == "needs_approval" and d.rules == ("M-advise",)
    assert decide(SOMAXCONN, current="16", mode="advise", approvals=("alice",)).verdict == "allow"


def test_without_root_mode_is_capped_at_advise(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="16", root=False)
    assert d.verdict == "needs_approval" and "M-no-root" in d.rules


def test_policy_max_mode_caps_the_daemon_mode() -> None:
    policy = load_policy().model_copy(update={"max_mode": "observe"})
    d = check(act(**SOMAXCONN), ctx(current="16"), policy)
    assert d.verdict == "deny" and d.rules == ("M-observe",)


def test_llm_proposal_outside_playbook_is_never_auto(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="16", provenance="llm", in_playbook=False)
    assert d.verdict == "needs_approval" and "V-outside-playbook" in d.rules


def test_llm_choosing_a_playbook_remedy_may_be_auto(decide: Decide) -> None:
    assert decide(SOMAXCONN, current="16", provenance="llm").verdict == "allow"


def test_one_approval_turns_approve_class_into_allow(decide: Decide) -> None:
    a = {"kind": "process_nice", "pid": 4242, "nice": 10}
    d = decide(a, approvals=("alice",))
    assert d.verdict == "allow" and "A-approved" in d.rules


def test_quorum_needs_distinct_approvers() -> None:
    policy = load_policy(FIXTURES / "policies" / "quorum.yaml")
    a = act(kind="gpu_compute_mode", scope="gpu:0", index=0, mode="exclusive_process")
    once = check(a, ctx(approvals=("alice", "alice", " alice ")), policy)
    assert once.verdict == "needs_approval" and once.approval == "quorum:2"
    assert check(a, ctx(approvals=("alice", "bob")), policy).verdict == "allow"


def test_forbidden_rule_is_denied_even_with_approvals() -> None:
    policy = load_policy(FIXTURES / "policies" / "quorum.yaml")
    d = check(act(kind="process_nice", pid=4242, nice=5), ctx(approvals=("a", "b", "c")), policy)
    assert d.verdict == "deny" and d.rules == ("N-nice",)


def test_approve_class_waits_for_a_maintenance_window() -> None:
    policy = load_policy(FIXTURES / "policies" / "windows_only.yaml")
    a = act(**sysctl("vm.swappiness", "10"))
    weekday = check(a, ctx(approvals=("alice",)), policy)  # NOW is a Wednesday noon
    assert weekday.verdict == "needs_approval" and "W-window" in weekday.rules
    saturday_night = NOW.replace(day=7, hour=23)
    assert check(a, ctx(now=saturday_night, approvals=("alice",)), policy).verdict == "allow"


def test_unparseable_input_is_denied_with_parse_error() -> None:
    action, d = check_raw('{"kind": "sysctl_write", "key": "kernel panic"}', ctx(), load_policy())
    assert action is None
    assert d.verdict == "deny" and d.rules == ("P-parse",)
    assert "malformed sysctl key" in d.reasons[0]


def test_unknown_kind_is_denied() -> None:
    _, d = check_raw({"kind": "shell", "command": "reboot"}, ctx(), load_policy())
    assert d.verdict == "deny" and d.rules == ("P-parse",)


def test_internal_error_fails_closed() -> None:
    d = check(act(**SOMAXCONN), None, load_policy())  # type: ignore[arg-type]
    assert d.verdict == "deny" and d.rules == ("X-internal",)


def test_context_rejects_naive_clock() -> None:
    import pytest

    with pytest.raises(ValueError, match="timezone-aware"):
        CheckContext(now=NOW.replace(tzinfo=None))
