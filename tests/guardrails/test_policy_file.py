"""The policy file: the shipped default loads, and a bad file names the file and the key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from guardrails import PolicyError, load_policy
from guardrails.policy import Window, approvals_needed, default_policy_path

from .conftest import FIXTURES


def test_shipped_default_policy_loads_with_narrow_auto_class() -> None:
    policy = load_policy(None)
    auto = {
        r.id
        for kind in ("sysctl_write", "cgroup_limit", "process_rlimit", "gpu_power_limit")
        for r in getattr(policy.rules, kind)
        if r.approval == "auto"
    }
    assert {"S-somaxconn", "S-syn-backlog", "C-memory", "C-pids", "L-nofile", "G-power"} <= auto
    assert "C-cpu-weight" not in auto and "N-nice" not in auto
    assert policy.default_approval == "approve" and policy.unknown_sysctl == "approve"


def test_every_auto_sysctl_rule_only_raises_within_a_maximum() -> None:
    policy = load_policy(default_policy_path())
    for rule in policy.rules.sysctl_write:
        if rule.approval == "auto":
            assert rule.direction == "up" and rule.max is not None, rule.id


def test_unknown_key_in_policy_file_names_file_and_key() -> None:
    path = FIXTURES / "policies" / "typo_key.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.path == str(path)
    assert info.value.key == "rules.sysctl_write.0.maxx"
    assert "typo_key.yaml: rules.sysctl_write.0.maxx" in str(info.value)


def test_bad_approval_class_is_rejected() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(FIXTURES / "policies" / "bad_approval.yaml")
    assert info.value.key == "rules.cgroup_limit.0.approval"


def test_duplicate_rule_ids_are_rejected() -> None:
    with pytest.raises(PolicyError, match="duplicate rule id 'S-x'"):
        load_policy(FIXTURES / "policies" / "duplicate_ids.yaml")


def test_default_approval_may_never_be_auto() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(FIXTURES / "policies" / "auto_default.yaml")
    assert info.value.key == "default_approval"


def test_invalid_yaml_and_missing_file_raise_policy_error() -> None:
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(FIXTURES / "policies" / "not_yaml.yaml")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(FIXTURES / "policies" / "no_such.yaml")


def test_approval_classes_map_to_approvals_needed() -> None:
    assert approvals_needed("auto") == 0
    assert approvals_needed("approve") == 1
    assert approvals_needed("quorum:3") == 3
    assert approvals_needed("forbid") is None
    with pytest.raises(ValueError):
        approvals_needed("quorum:0")


def test_maintenance_window_wraps_past_midnight() -> None:
    window = Window(days=("sat",), start="22:00", end="04:00")
    assert window.contains(datetime(2026, 3, 7, 23, 30, tzinfo=UTC))  # Saturday night
    assert window.contains(datetime(2026, 3, 8, 3, 59, tzinfo=UTC))  # early Sunday
    assert not window.contains(datetime(2026, 3, 8, 4, 0, tzinfo=UTC))
    assert not window.contains(datetime(2026, 3, 7, 3, 0, tzinfo=UTC))  # early Saturday
