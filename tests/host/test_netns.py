from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from healer.host.netns import NetnsError, NetnsRunner
from healer.monitor.net import NetCollector

SOMAXCONN = "/proc/sys/net/core/somaxconn"
pytestmark = pytest.mark.root


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"healer-t{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _read(path: str) -> str:
    return Path(path).read_text().strip()


def _write(path: str, value: str) -> None:
    Path(path).write_text(value)


def test_sysctl_write_inside_netns_leaves_the_host_untouched(netns: str) -> None:
    host_before = _read(SOMAXCONN)
    runner = NetnsRunner(netns)
    try:
        runner.call(_write, SOMAXCONN, "16")
        assert runner.call(_read, SOMAXCONN) == "16"
    finally:
        runner.close()
    assert _read(SOMAXCONN) == host_before


def test_net_collector_reads_the_namespace_counters(netns: str) -> None:
    runner = NetnsRunner(netns)
    try:
        m = NetCollector(runner=runner).collect().metrics
    finally:
        runner.close()
    assert "net.tcp.listen_overflows_total" in m
    assert m["net.tcp.active_opens_total"] == 0  # a fresh namespace has seen no connections


def test_unknown_namespace_is_a_clear_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    with pytest.raises(NetnsError):
        NetnsRunner("healer-no-such-netns")
