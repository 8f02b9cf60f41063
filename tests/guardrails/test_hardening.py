"""Findings of the adversarial review (issue: hardening), each held by a hostile input.

Every test here failed on the code before the fix: a scope regex that backtracked for
minutes, tenants' cgroup limits raised automatically, protected targets escaped by another
spelling of the same path, crash-equivalent sysctls left to an approval, and a missing
``in_playbook`` flag read as "inside the playbook".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from guardrails import CheckContext, Decision, check, check_write, load_policy, parse_action
from guardrails.actions import canonical_cgroup, check_scope
from guardrails.policy import parse_policy

from .conftest import NOW

SYSTEMD_USER = "/user.slice/user-1000.slice/user@1000.service/app.slice/"
# The reviewer's input: with the old `(?:[A-Za-z0-9_.@:-]+/?)*$` this never returned.
CRAFTED = SYSTEMD_USER + "a.b-c" * 8 + "+"


def pids(path: str, value: str = "64", scope: str | None = None) -> dict[str, Any]:
    return {"kind": "cgroup_limit", "scope": scope or f"cgroup:{path}", "path": path,
            "knob": "pids.max", "value": value}


def test_crafted_cgroup_scope_is_refused_in_linear_time() -> None:
    started = time.perf_counter()
    for _ in range(100):
        with pytest.raises(ValueError, match="malformed scope"):
            check_scope(f"cgroup:{CRAFTED}")
        with pytest.raises(ValidationError):
            parse_action(pids(CRAFTED * 20))
    assert time.perf_counter() - started < 1.0


def test_systemd_escaped_unit_names_are_valid_scopes_and_cheap() -> None:
    path = r"/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-disk-by\x2duuid.service"
    started = time.perf_counter()
    for _ in range(1000):
        assert check_scope(f"cgroup:{path}") == f"cgroup:{path}"
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("spelling", ["/init.scope/", "/./init.scope", "//init.scope",
                                      "/init.scope/."])
def test_protected_target_holds_for_every_spelling_of_the_path(
    decide: Callable[..., Decision], spelling: str
) -> None:
    d = decide(pids(spelling, "64", scope="host"), current="20")
    assert d.verdict == "deny" and "P-protected-target" in d.rules, d


@pytest.mark.parametrize("spelling", ["/.", "//", "/./."])
def test_the_root_cgroup_is_protected_under_any_spelling(
    decide: Callable[..., Decision], spelling: str
) -> None:
    d = decide(pids(spelling, "64", scope="host"), current="20")
    assert d.verdict == "deny" and "P-protected-target" in d.rules, d


def test_dot_dot_never_resolves() -> None:
    with pytest.raises(ValueError):
        canonical_cgroup("/system.slice/../init.scope")
    with pytest.raises(ValidationError):
        parse_action(pids("/system.slice/../init.scope"))


@pytest.mark.parametrize("path", [
    "/system.slice/docker-4f1c9d2e8b7a.scope",  # docker --pids-limit
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
    "/machine.slice/libpod-7e0b3c.scope",  # podman
    "/user.slice/user-1000.slice/user@1000.service/app.slice/x.scope",  # delegated user
    "/system.slice/containerd.service/../..",
])
def test_tenant_cgroup_limits_are_never_raised_automatically(
    decide: Callable[..., Decision], path: str
) -> None:
    try:
        d = decide(pids(path), current="20")
    except ValidationError:
        return  # refused outright: also never automatic
    assert d.verdict != "allow", d


def test_system_service_and_healer_sandbox_limits_may_be_raised_automatically(
    decide: Callable[..., Decision],
) -> None:
    for path in ("/system.slice/nginx.service", "/system.slice/nginx.service/worker",
                 "/healer-chaos-1a2b3c/forker"):
        d = decide(pids(path), current="20")
        assert d.verdict == "allow", (path, d)


def test_a_star_in_an_auto_root_stays_within_one_path_component(
    decide: Callable[..., Decision],
) -> None:
    d = decide(pids("/system.slice/docker-1.scope/inner.service"), current="20")
    assert d.verdict == "needs_approval" and "C-auto-roots" in d.rules, d


def test_without_auto_roots_every_cgroup_change_needs_a_person() -> None:
    policy = parse_policy("rules:\n  cgroup_limit:\n    - {id: C, match: '*', approval: auto}\n")
    d = check(parse_action(pids("/system.slice/nginx.service")),
              CheckContext(now=NOW, in_playbook=True, current="20"), policy)
    assert d.verdict == "needs_approval" and "C-auto-roots" in d.rules


@pytest.mark.parametrize("key", [
    "kernel.warn_limit", "kernel.oops_limit", "kernel.unknown_nmi_panic",
    "kernel.max_rcu_stall_to_panic", "vm.mmap_rnd_bits", "net.bridge.bridge-nf-call-iptables",
    "kernel.sched_rt_runtime_us", "vm.nr_hugepages", "kernel.watchdog", "kernel.nmi_watchdog",
    "vm.drop_caches",
])
def test_crash_equivalent_and_security_keys_are_denied_from_anyone(
    decide: Callable[..., Decision], key: str
) -> None:
    for provenance in ("llm", "playbook", "operator"):
        action = {"kind": "sysctl_write", "key": key, "value": "1"}
        d = decide(action, provenance=provenance, approvals=("alice", "bob", "carol"))
        assert d.verdict == "deny" and "P-protected" in d.rules, (key, provenance, d)


def test_a_missing_in_playbook_flag_means_outside_the_playbook() -> None:
    action = parse_action({"kind": "sysctl_write", "scope": "netns:chaos-1",
                           "key": "net.core.somaxconn", "value": "4096"})
    d = check(action, CheckContext(now=NOW, current="128"), load_policy())
    assert d.verdict == "needs_approval" and "V-outside-playbook" in d.rules


def test_operator_globs_run_on_re2_over_long_untrusted_targets() -> None:
    policy = parse_policy("protected_targets:\n  - '*a*a*a*a*a*a*a*a*a*a*b'\n")
    action = parse_action(pids("/" + "a" * 1000))
    started = time.perf_counter()
    check(action, CheckContext(now=NOW, in_playbook=True, current="20"), policy)
    assert time.perf_counter() - started < 0.5


def test_a_policy_glob_re2_cannot_compile_does_not_load() -> None:
    with pytest.raises(ValueError, match="protected"):
        parse_policy("protected:\n  - 'kernel.[z-a]'\n")  # a reversed class range


# -- every write of a journal value: restores and persisted values ---------------------

@pytest.mark.parametrize(("action", "value"), [
    ({"kind": "sysctl_write", "key": "net.core.somaxconn", "value": "4096"},
     "128\nkernel.core_pattern = |/tmp/x"),
    ({"kind": "sysctl_write", "key": "net.core.somaxconn", "value": "4096"}, "|/tmp/pwn"),
    (pids("/system.slice/a.service"), "20; echo"),
    ({"kind": "process_rlimit", "pid": 42, "resource": "nofile", "soft": 1024}, "-1"),
    ({"kind": "gpu_compute_mode", "index": 0, "mode": "default"}, "../../etc"),
    ({"kind": "gpu_power_limit", "index": 0, "watts": 250}, "1e9"),
])
def test_a_forged_original_fails_the_value_grammar(action: dict[str, Any], value: str) -> None:
    d = check_write(parse_action(action), value, load_policy())
    assert d.verdict == "deny" and "P-grammar" in d.rules, d


def test_restoring_into_a_protected_key_or_target_is_refused() -> None:
    policy = load_policy()
    forged = parse_action({"kind": "sysctl_write", "key": "kernel.core_pattern", "value": "1"})
    assert check_write(forged, "1", policy).rules == ("P-protected",)
    init = parse_action(pids("/init.scope/", scope="host"))
    assert "P-protected-target" in check_write(init, "20", policy).rules


def test_restoring_a_sane_original_passes_even_outside_healer_s_ranges() -> None:
    # somaxconn 16 is below the policy's minimum, but it is the operator's own value.
    action = parse_action({"kind": "sysctl_write", "key": "net.core.somaxconn",
                           "value": "4096", "scope": "netns:chaos-1"})
    assert check_write(action, "16", load_policy()).verdict == "allow"
    assert check_write(action, "16", load_policy(), ("netns:other",)).verdict == "deny"
