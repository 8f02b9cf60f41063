"""Finding cgroup mounts and translating v2 knob values to v1."""

from __future__ import annotations

from pathlib import Path

import pytest

from healer.host.cgroupfs import (
    from_v1_value,
    parse_mountinfo,
    shares_to_weight,
    to_v1_value,
    weight_to_shares,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "act"


def test_hybrid_mountinfo_finds_unified_and_each_v1_controller() -> None:
    mounts = parse_mountinfo((FIXTURES / "mountinfo-hybrid.txt").read_text())
    assert mounts.unified == Path("/sys/fs/cgroup/unified")
    assert mounts.v1["memory"] == Path("/sys/fs/cgroup/memory")
    assert mounts.v1["pids"] == Path("/sys/fs/cgroup/pids")
    assert "name=systemd" not in mounts.v1 and "rw" not in mounts.v1


def test_combined_cpu_cpuacct_mount_serves_both_controllers() -> None:
    mounts = parse_mountinfo((FIXTURES / "mountinfo-systemd-hybrid.txt").read_text())
    assert mounts.v1["cpu"] == mounts.v1["cpuacct"] == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert "xattr" not in mounts.v1


def test_pure_v2_host_has_no_v1_controllers() -> None:
    mounts = parse_mountinfo((FIXTURES / "mountinfo-v2.txt").read_text())
    assert mounts.unified == Path("/sys/fs/cgroup") and mounts.v1 == {}


@pytest.mark.parametrize(("weight", "shares"), [(100, 1024), (1, 10), (10000, 102400), (50, 512)])
def test_cpu_weight_converts_to_shares_as_systemd_does(weight: int, shares: int) -> None:
    assert weight_to_shares(weight) == shares
    assert shares_to_weight(shares) == weight


def test_shares_clamp_to_the_weight_range() -> None:
    assert shares_to_weight(2) == 1 and shares_to_weight(262144) == 10000


def test_memory_max_spells_unlimited_as_minus_one_for_v1_and_reads_back_as_max() -> None:
    assert to_v1_value("memory.max", "max") == "-1"
    assert to_v1_value("memory.max", "104857600") == "104857600"
    assert from_v1_value("memory.max", "9223372036854771712") == "max"
    assert from_v1_value("memory.max", "104857600") == "104857600"
