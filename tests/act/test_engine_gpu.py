"""GPU power-limit changes through the engine on the simulated backend, and the hard
verification deadline: every verifying record ends verified or rolled back by its deadline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardrails import load_policy
from guardrails.actions import GpuPowerLimit
from healer.act.base import ActuatorRegistry
from healer.act.engine import ChangeEngine
from healer.act.gpu import GpuActuator
from healer.act.persist import DropIn
from healer.host.gpu.simulated import SimulatedBackend
from healer.models import ActionRecord, ActionState, Evidence, Incident, Proposal
from healer.monitor.gpu import gpu_metrics
from healer.store.repository import Repository
from healer.verify import VerifySpec
from playbooks.loader import load_library

from .conftest import Clock, Window

S = ActionState
# The gpu-thermal chaos scenario's device: 300 W at 0.18 degC/W over 30 degC ambient plus a
# 6 degC "blocked fan" boost settles at 90 degC, past the 85 degC slowdown (HW thermal).
HOT = {"power_limit_w": 300.0, "power_demand_w": 300.0, "thermal_resistance": 0.18,
       "slowdown_temp_c": 85.0, "temperature_c": 90.0, "heat_boost_c": 6.0,
       "processes": [{"pid": 4242, "name": "train", "sm_demand_percent": 95.0}]}


@pytest.fixture
def sim(tmp_path: Path, clock: Clock) -> SimulatedBackend:
    path = tmp_path / "gpu.json"
    backend = SimulatedBackend(path, clock=lambda: clock.now.timestamp())
    backend.read_all()  # creates the default device, stepped to the fake clock
    state = json.loads(path.read_text())
    state["devices"][0].update(HOT)
    path.write_text(json.dumps(state))
    return backend


def _engine(repo: Repository, clock: Clock, window: Window, sim: SimulatedBackend,
            tmp: Path) -> ChangeEngine:
    return ChangeEngine(repo, ActuatorRegistry([GpuActuator(sim)]), load_policy(),
                        window=window, clock=clock, root=True, dropin=DropIn(tmp / "90.conf"))


def _sample(window: Window, clock: Clock, sim: SimulatedBackend, seconds: int = 1) -> None:
    """One collector cycle per second: every gpu.0.* metric into the window."""
    for _ in range(seconds):
        clock.advance(1)
        for state in sim.read_all():
            for name, value in gpu_metrics(state).items():
                window.add(name, clock.now, value)


def _incident(repo: Repository, clock: Clock) -> Incident:
    # No captures: the playbook's {gpu} placeholders must resolve from the gpu:0 scope.
    return repo.open_incident(Incident(
        host_id=repo.host_id, playbook="gpu-thermal-throttling", scope="gpu:0",
        first_seen=clock.now, last_seen=clock.now, evidence=Evidence()))


def _power_step(watts: float = 270.0) -> Proposal:
    return Proposal(action=GpuPowerLimit(scope="gpu:0", index=0, watts=watts),
                    provenance="playbook", in_playbook=True, rationale="thermal slowdown")


def test_power_limit_step_cools_the_simulated_gpu_and_verifies(
        repo: Repository, clock: Clock, window: Window, sim: SimulatedBackend,
        tmp_path: Path) -> None:
    engine = _engine(repo, clock, window, sim, tmp_path)
    _sample(window, clock, sim, 20)  # the throttled baseline
    assert sim.read(0).throttle_reasons and window.points["gpu.0.throttle_thermal"][-1][1] == 1
    record = engine.propose(_incident(repo, clock), _power_step(),
                            load_library().get("gpu-thermal-throttling"))
    assert record.state == S.APPROVED, record.decision
    assert record.verification is not None and record.verification.spec is not None
    spec = record.verification.spec
    assert spec.metrics == ("gpu.0.throttle_thermal", "gpu.0.sm_clock_mhz")
    [applied] = engine.step()
    assert (applied.state, applied.original, applied.applied) == (S.VERIFYING, "300.0", "270.0")
    verdict: ActionRecord | None = None
    for _ in range(120):
        _sample(window, clock, sim)
        changed = engine.step()
        if changed:
            [verdict] = changed
            break
    assert verdict is not None and verdict.state == S.VERIFIED, verdict
    assert verdict.deadline is not None and clock.now <= verdict.deadline
    assert verdict.verification and verdict.verification.result
    numbers = verdict.verification.result.numbers
    assert numbers["target.after_max"] == 0.0  # the thermal reason stayed clear a full window
    clock_guard = "guard.gpu.0.sm_clock_mhz"
    assert numbers[f"{clock_guard}.after_median"] >= numbers[f"{clock_guard}.baseline_median"]
    device = sim.read(0)
    assert device.metrics["temperature_celsius"] < device.metrics["slowdown_temp_celsius"]
    assert device.metrics["power_limit_watts"] == 270.0
    assert device.metrics["throttle_thermal"] == 0.0


class BrokenWindow(Window):
    """A window whose reads fail once ``broken`` is set: the judge cannot run at all."""

    broken = False

    def series(self, name: str, seconds: float) -> list[tuple[float, float]]:
        if self.broken:
            raise RuntimeError("window read failed")
        return super().series(name, seconds)


SHORT = VerifySpec(metric="gpu.0.throttle_thermal", direction="to_zero", window_seconds=5,
                   settle_seconds=1)  # deadline: 1 + 3 * 5 = 16 s after the write


@pytest.mark.parametrize("window_kind", ["empty", "broken"])
def test_a_verifying_record_past_its_deadline_is_rolled_back(
        repo: Repository, clock: Clock, sim: SimulatedBackend, tmp_path: Path,
        window_kind: str) -> None:
    # No samples ever arrive (or reading them fails): the verdict never comes by itself.
    window = BrokenWindow()
    engine = _engine(repo, clock, window, sim, tmp_path)
    engine.propose(None, _power_step(), SHORT)
    [applied] = engine.step()
    window.broken = window_kind == "broken"
    assert applied.state == S.VERIFYING and applied.deadline is not None
    assert sim.read(0).metrics["power_limit_watts"] == 270.0
    clock.advance(15)
    assert engine.step() == []  # still inside the deadline: keep waiting
    clock.advance(1)
    [rolled] = engine.step()
    assert rolled.state == S.ROLLED_BACK and clock.now >= applied.deadline
    assert rolled.original == "300.0" == GpuActuator(sim).read(rolled.action)
    info = rolled.verification
    assert info is not None and info.result is not None and info.rollback_reason is not None
    assert info.rollback_reason.startswith("verification timed out")
    assert info.result.verdict is None  # the numbers that led to it are kept
    if window_kind == "broken":
        assert "cannot judge: window read failed" in info.rollback_reason
    else:
        assert info.result.numbers["after_seconds"] == pytest.approx(16.0)
    assert repo.list_actions(states=(S.VERIFYING,)) == []
