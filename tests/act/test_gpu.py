"""GPU settings through the simulated backend: the same calls NVML gets, and the device responds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guardrails.actions import GpuLockedClocks, GpuMpsThreadPercentage, GpuPowerLimit, GpuTimeslice
from guardrails.decision import Decision
from healer.act.gpu import GpuActuator
from healer.errors import ActuatorError
from healer.host.gpu.simulated import SimulatedBackend
from healer.models import ActionRecord

ALLOW = Decision(verdict="allow")


def record(action: object, original: str) -> ActionRecord:
    now = datetime.now(UTC)
    return ActionRecord(host_id="h", action=action, decision=ALLOW,  # type: ignore[arg-type]
                        original=original, created_at=now, updated_at=now)


@pytest.fixture
def sim(tmp_path: Path) -> SimulatedBackend:
    return SimulatedBackend(tmp_path / "gpu.json")


def test_power_limit_lowered_within_constraints_and_restored_exactly(sim: SimulatedBackend) -> None:
    act = GpuActuator(sim)
    action = GpuPowerLimit(index=0, watts=630.0, scope="gpu:0")
    original = act.read(action)
    assert original == "700.0"
    assert act.facts(action) == {"gpu_min_watts": 200.0, "gpu_max_watts": 700.0}
    assert act.apply(action, ALLOW) == act.apply(action, ALLOW) == "630.0"
    assert sim.read(0).metrics["power_limit_watts"] == 630.0
    assert act.restore(record(action, original)) == "700.0"


def test_power_limit_outside_constraints_is_an_actuator_error(sim: SimulatedBackend) -> None:
    with pytest.raises(ActuatorError):
        GpuActuator(sim).apply(GpuPowerLimit(index=0, watts=100.0), ALLOW)


def test_locked_clocks_and_reset(sim: SimulatedBackend) -> None:
    act = GpuActuator(sim)
    lock = GpuLockedClocks(index=0, min_mhz=1000, max_mhz=1500)
    assert act.read(lock) == "unlocked"
    assert act.apply(lock, ALLOW) == "1000-1500"
    assert act.restore(record(lock, "unlocked")) == "unlocked"
    assert sim.get_locked_clocks(0) is None


def test_timeslice_and_mps_percentage(tmp_path: Path) -> None:
    state = tmp_path / "gpu.json"
    state.write_text(json.dumps({"devices": [{"processes": [
        {"pid": 4242, "name": "hog", "sm_demand_percent": 100.0, "mps_percent": None}]}]}))
    act = GpuActuator(SimulatedBackend(state))
    ts = GpuTimeslice(index=0, level="short")
    assert act.apply(ts, ALLOW) == "short"
    assert act.restore(record(ts, "default")) == "default"
    mps = GpuMpsThreadPercentage(index=0, client=4242, percent=30)
    assert act.read(mps) == "100"  # uncapped reads as MPS's default
    assert act.apply(mps, ALLOW) == "30"
    assert act.restore(record(mps, "100")) == "100"
