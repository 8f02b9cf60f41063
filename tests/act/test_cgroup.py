"""cgroup knobs on scratch cgroups this test creates (v1 controllers, and v2 when usable)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails.actions import CgroupLimit
from guardrails.decision import Decision
from healer.act.cgroup import CgroupActuator
from healer.errors import ActuatorError
from healer.host.cgroupfs import CgroupMounts, parse_mountinfo
from healer.models import ActionRecord

from .conftest import ROOT

ALLOW = Decision(verdict="allow")
pytestmark = pytest.mark.skipif(not ROOT, reason="needs root: creates scratch cgroups")


def record(action: CgroupLimit, original: str) -> ActionRecord:
    now = datetime.now(UTC)
    return ActionRecord(host_id="h", action=action, decision=ALLOW, original=original,
                        created_at=now, updated_at=now)


@pytest.fixture
def mounts() -> CgroupMounts:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


@pytest.fixture
def scratch(mounts: CgroupMounts) -> Iterator[str]:
    """/healer-test-<rand> under every v1 controller we touch, and the unified mount."""
    name = f"/healer-test-{secrets.token_hex(4)}"
    made: list[Path] = []
    roots = [mounts.v1[c] for c in ("memory", "pids", "cpu") if c in mounts.v1]
    roots += [mounts.unified] if mounts.unified else []
    try:
        for root in roots:
            path = root / name.lstrip("/")
            try:
                path.mkdir()
                made.append(path)
            except OSError:
                pass  # a read-only or unusable hierarchy: tests for it skip
        yield name
    finally:
        for path in reversed(made):
            path.rmdir()


def _need(mounts: CgroupMounts, controller: str, scratch: str) -> None:
    if controller not in mounts.v1 or not (mounts.v1[controller] / scratch.lstrip("/")).is_dir():
        pytest.skip(f"no writable v1 {controller} hierarchy on this host")


def test_v1_memory_limit_translates_max_and_restores_exactly(
        mounts: CgroupMounts, scratch: str) -> None:
    _need(mounts, "memory", scratch)
    act = CgroupActuator(mounts=mounts, cgroup_root=Path(scratch))
    action = CgroupLimit(scope=f"cgroup:{scratch}", path=scratch, knob="memory.max",
                         value="104857600")
    original = act.read(action)
    assert original is not None and act.in_action_units(action, original) == "max"
    assert act.apply(action, ALLOW) == "104857600"
    assert (mounts.v1["memory"] / scratch.lstrip("/") / "memory.limit_in_bytes").read_text() \
        .strip() == "104857600"
    assert act.restore(record(action, original)) == original
    assert act.restore(record(action, original)) == original  # twice: no change
    facts = act.facts(action)
    assert facts["host_memory_bytes"] > 0 and facts["cgroup_budget_bytes"] <= facts[
        "host_memory_bytes"]


def test_v1_pids_max_change_and_restore(mounts: CgroupMounts, scratch: str) -> None:
    _need(mounts, "pids", scratch)
    act = CgroupActuator(mounts=mounts)
    action = CgroupLimit(path=scratch, knob="pids.max", value="64", scope=f"cgroup:{scratch}")
    original = act.read(action)
    assert original == "max"
    assert act.apply(action, ALLOW) == act.apply(action, ALLOW) == "64"
    assert act.restore(record(action, original)) == "max"


def test_v1_cpu_weight_becomes_shares_and_the_journal_keeps_shares(
        mounts: CgroupMounts, scratch: str) -> None:
    _need(mounts, "cpu", scratch)
    act = CgroupActuator(mounts=mounts)
    action = CgroupLimit(path=scratch, knob="cpu.weight", value="50", scope=f"cgroup:{scratch}")
    original = act.read(action)
    assert original == "1024" and act.in_action_units(action, original) == "100"
    applied = act.apply(action, ALLOW)
    assert applied == "512" and act.in_action_units(action, applied) == "50"
    assert act.restore(record(action, original)) == "1024"


def test_v2_knob_when_the_controller_is_enabled_there(mounts: CgroupMounts, scratch: str) -> None:
    if mounts.unified is None:
        pytest.skip("no cgroup2 mount")
    group = mounts.unified / scratch.lstrip("/")
    knob = next((k for k in ("pids.max", "memory.max") if (group / k).is_file()), None)
    if knob is None:
        pytest.skip("no pids/memory controller enabled in the unified hierarchy here "
                    "(cgroup v1 hybrid host)")
    act = CgroupActuator(mounts=mounts)
    action = CgroupLimit(path=scratch, knob=knob, value="67108864" if knob == "memory.max"
                         else "64", scope=f"cgroup:{scratch}")
    original = act.read(action)
    assert original == "max"
    assert act.apply(action, ALLOW) == action.value
    assert (group / knob).read_text().strip() == action.value
    assert act.restore(record(action, original)) == "max"


def test_paths_outside_cgroup_root_are_refused(mounts: CgroupMounts, scratch: str) -> None:
    act = CgroupActuator(mounts=mounts, cgroup_root=Path("/healer-sandbox"))
    action = CgroupLimit(path=scratch, knob="pids.max", value="64", scope=f"cgroup:{scratch}")
    with pytest.raises(ActuatorError, match="outside cgroup_root"):
        act.apply(action, ALLOW)
    assert act.key_exists(action) is False


def test_path_must_lie_within_the_action_scope(mounts: CgroupMounts, scratch: str) -> None:
    act = CgroupActuator(mounts=mounts)
    action = CgroupLimit(path=scratch, knob="pids.max", value="64", scope="cgroup:/elsewhere")
    with pytest.raises(ActuatorError, match="outside the action's scope"):
        act.read(action)
