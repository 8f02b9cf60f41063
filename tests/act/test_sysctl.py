"""Sysctls through /proc/sys inside a scratch network namespace (never the host's)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails.actions import SysctlWrite
from guardrails.decision import Decision
from healer.act.sysctl import SysctlActuator, key_path, normalize
from healer.errors import ActuatorError
from healer.models import ActionRecord

from .conftest import netns_sysctl

ALLOW = Decision(verdict="allow")


def record(action: SysctlWrite, original: str) -> ActionRecord:
    now = datetime.now(UTC)
    return ActionRecord(host_id="h", action=action, decision=ALLOW, original=original,
                        created_at=now, updated_at=now)


def test_key_maps_dots_to_slashes() -> None:
    assert key_path(Path("/proc"), "net.ipv4.tcp_rmem") == Path("/proc/sys/net/ipv4/tcp_rmem")
    assert normalize("4096\t131072\t6291456\n") == "4096 131072 6291456"


def test_netns_write_lands_in_the_namespace_not_the_host(netns: str) -> None:
    host_before = Path("/proc/sys/net/core/somaxconn").read_text()
    act = SysctlActuator()
    try:
        original = netns_sysctl(netns, "net.core.somaxconn", "128")
        action = SysctlWrite(scope=f"netns:{netns}", key="net.core.somaxconn", value="1024")
        assert act.read(action) == original == "128"
        assert act.apply(action, ALLOW) == "1024"
        assert netns_sysctl(netns, "net.core.somaxconn") == "1024"
        assert Path("/proc/sys/net/core/somaxconn").read_text() == host_before
        assert act.restore(record(action, original)) == "128"
        assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    finally:
        act.close()


def test_apply_and_restore_are_idempotent(netns: str) -> None:
    act = SysctlActuator()
    try:
        netns_sysctl(netns, "net.ipv4.tcp_max_syn_backlog", "256")
        action = SysctlWrite(scope=f"netns:{netns}", key="net.ipv4.tcp_max_syn_backlog",
                             value="512")
        assert act.apply(action, ALLOW) == act.apply(action, ALLOW) == "512"
        rec = record(action, "256")
        assert act.restore(rec) == act.restore(rec) == "256"
    finally:
        act.close()


def test_vector_values_round_trip_exactly(netns: str) -> None:
    act = SysctlActuator()
    try:
        action = SysctlWrite(scope=f"netns:{netns}", key="net.ipv4.tcp_rmem",
                             value="4096 131072 1048576")
        original = act.read(action)
        assert original is not None and len(original.split()) == 3
        assert act.apply(action, ALLOW) == "4096 131072 1048576"
        assert act.restore(record(action, original)) == original
    finally:
        act.close()


def test_global_sysctl_is_refused_in_a_netns_scope(netns: str) -> None:
    act = SysctlActuator()
    try:
        for key in ("kernel.pid_max", "net.core.netdev_max_backlog"):
            action = SysctlWrite(scope=f"netns:{netns}", key=key, value="65536")
            assert act.key_exists(action) is False
            with pytest.raises(ActuatorError):
                act.apply(action, ALLOW)
    finally:
        act.close()


def test_missing_namespace_is_an_actuator_error() -> None:
    act = SysctlActuator(netns_dir=Path("/nonexistent"))
    action = SysctlWrite(scope="netns:nope", key="net.core.somaxconn", value="1")
    with pytest.raises(ActuatorError):
        act.read(action)
    assert act.key_exists(action) is False


def test_fake_proc_tree_host_scope(tmp_path: Path) -> None:
    (tmp_path / "sys/net/core").mkdir(parents=True)
    (tmp_path / "sys/net/core/somaxconn").write_text("4096\n")
    act = SysctlActuator(procfs_root=tmp_path)
    action = SysctlWrite(scope="host", key="net.core.somaxconn", value="8192")
    assert act.read(action) == "4096" and act.key_exists(action)
    assert act.apply(action, ALLOW) == "8192"
    missing = SysctlWrite(scope="host", key="net.core.nope", value="1")
    assert act.read(missing) is None and not act.key_exists(missing)
