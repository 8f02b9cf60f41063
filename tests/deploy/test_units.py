"""The shipped systemd units box healer in: scored by ``systemd-analyze security``.

Debian's own units score 9.2 (node_exporter) and 4.0 (Prometheus) on the same scale; the
first release of healer's scored 9.1. The agent's unit stays at or below 5.0 although it
runs as root, and the unprivileged side's at or below 2.5.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.tools import require_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _exposure(unit: Path) -> float:
    tool = require_tool("systemd-analyze", "Debian's systemd (make system-deps)")
    out = subprocess.run([str(tool), "security", "--offline=true", str(unit)],
                         capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout + out.stderr)
    assert found, out.stdout + out.stderr
    return float(found.group(1))


def _settings(unit: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize(("unit", "limit"), [("healer.service", 5.0),
                                             ("healer-serve.service", 2.5)])
def test_each_unit_scores_within_its_exposure_budget(unit: str, limit: float) -> None:
    assert _exposure(DEPLOY / unit) <= limit


def test_the_agent_speaks_no_ip_and_keeps_only_the_actuators_capabilities() -> None:
    agent = _settings(DEPLOY / "healer.service")
    assert agent["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK"]
    assert agent["IPAddressDeny"] == ["any"]
    caps = " ".join(agent["CapabilityBoundingSet"]).split()
    assert "CAP_SETUID" not in caps and "CAP_NET_BIND_SERVICE" not in caps
    assert "CAP_SYS_MODULE" not in caps and "CAP_SYS_BOOT" not in caps
    assert "Environment=HEALER_SERVE=external" in (DEPLOY / "healer.service").read_text()


def test_the_web_side_runs_as_healer_with_nothing_of_the_agent() -> None:
    serve = _settings(DEPLOY / "healer-serve.service")
    assert serve["User"] == ["healer"] and serve["CapabilityBoundingSet"] == [""]
    assert serve["InaccessiblePaths"] == ["-/var/lib/healer-agent"]  # the journal key
    assert serve["ReadOnlyPaths"] == ["/run/healer"]  # the agent's live file
    assert "healer" in (DEPLOY / "sysusers.d" / "healer.conf").read_text()


def test_an_agent_in_a_fleet_gains_ip_to_its_control_plane_and_nothing_more(
        tmp_path: Path) -> None:
    # systemd merges the drop-in's [Service] into the unit; the lists add up.
    dropin = (DEPLOY / "healer.service.d" / "fleet.conf").read_text()
    merged = tmp_path / "healer.service"
    merged.write_text((DEPLOY / "healer.service").read_text()
                      + dropin.replace("PLACEHOLDER_CONTROL_PLANE_ADDRESSES", "10.0.0.5"))
    assert _exposure(merged) <= 5.0
    agent = _settings(merged)
    assert agent["IPAddressDeny"] == ["any"] and agent["IPAddressAllow"] == ["10.0.0.5"]
    assert agent["RestrictAddressFamilies"] == ["AF_UNIX AF_NETLINK", "AF_INET AF_INET6"]
    assert agent["EnvironmentFile"] == ["/etc/healer/agent.env"]  # the token: not in the unit
