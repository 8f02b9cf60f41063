from __future__ import annotations

import json
from pathlib import Path

import pytest

from healer.errors import GpuError
from healer.host.gpu.backend import GpuBackend
from healer.host.gpu.simulated import SimulatedBackend, sm_shares
from healer.monitor.gpu import GpuCollector


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _write(path: Path, **device: object) -> None:
    path.write_text(json.dumps({"devices": [device]}))


def test_simulated_backend_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(SimulatedBackend(tmp_path / "g.json"), GpuBackend)


def test_missing_state_file_creates_one_default_h100(tmp_path: Path) -> None:
    b = SimulatedBackend(tmp_path / "g.json")
    st = b.read(0)
    assert st.name == "H100-SIM" and st.pci_bus_id == "0000:3b:00.0"
    assert b.power_limit_constraints(0) == (200.0, 700.0)
    assert json.loads((tmp_path / "g.json").read_text())["devices"][0]["power_max_w"] == 700.0


def test_heat_boost_drives_hw_thermal_slowdown(tmp_path: Path) -> None:
    path, clock = tmp_path / "g.json", Clock()
    _write(path, power_demand_w=700, heat_boost_c=15, temperature_c=40, updated_at=clock.t)
    b = SimulatedBackend(path, clock)
    clock.t += 60  # 12 time constants: at steady state 30 + 0.08*700 + 15 = 101 C
    st = b.read(0)
    assert st.metrics["temperature_celsius"] == pytest.approx(101.0, abs=0.1)
    assert "hw_thermal_slowdown" in st.throttle_reasons
    assert st.metrics["throttle_thermal"] == 1
    assert st.metrics["sm_clock_mhz"] < 1980


def test_lower_power_limit_cools_the_gpu(tmp_path: Path) -> None:
    path, clock = tmp_path / "g.json", Clock()
    _write(path, power_demand_w=700, heat_boost_c=6, temperature_c=92, updated_at=clock.t)
    b = SimulatedBackend(path, clock)
    hot = b.read(0).metrics["temperature_celsius"]
    b.set_power_limit(0, 630.0)
    clock.t += 5
    warm = b.read(0)
    clock.t += 30
    cool = b.read(0)
    assert warm.metrics["power_draw_watts"] == 630.0
    assert hot > warm.metrics["temperature_celsius"] > cool.metrics["temperature_celsius"]
    assert cool.metrics["temperature_celsius"] < 87.0
    assert "hw_thermal_slowdown" not in cool.throttle_reasons
    assert "sw_power_cap" in cool.throttle_reasons


def test_power_limit_outside_constraints_is_refused(tmp_path: Path) -> None:
    b = SimulatedBackend(tmp_path / "g.json")
    with pytest.raises(GpuError):
        b.set_power_limit(0, 100.0)


def test_hog_starves_victim_until_mps_cap_or_short_timeslice(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    _write(path, processes=[
        {"pid": 10, "name": "hog", "sm_demand_percent": 100},
        {"pid": 11, "name": "victim", "sm_demand_percent": 30},
    ])
    b = SimulatedBackend(path)
    victim = {p.pid: p for p in b.read(0).processes}[11].sm_util_percent
    assert victim is not None and victim < 10  # collapsed to under a third of its demand
    b.set_timeslice(0, "short")
    short = {p.pid: p for p in b.read(0).processes}[11].sm_util_percent
    b.set_timeslice(0, "default")
    b.set_mps_thread_percentage(0, 10, 60)
    capped = {p.pid: p for p in b.read(0).processes}[11].sm_util_percent
    assert victim < short < 30 and capped == 30
    assert b.get_mps_thread_percentage(0, 10) == 60
    with pytest.raises(GpuError):
        b.set_mps_thread_percentage(0, 999, 50)


def test_sm_shares_fit_means_everyone_gets_its_demand() -> None:
    assert sm_shares([{"sm_demand_percent": 40}, {"sm_demand_percent": 50}], "default") == [40, 50]


def test_setters_persist_for_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    b = SimulatedBackend(path)
    b.set_locked_clocks(0, 1000, 1500)
    b.set_compute_mode(0, "exclusive_process")
    other = SimulatedBackend(path)  # e.g. the actuator in another process
    assert other.get_locked_clocks(0) == (1000, 1500)
    assert other.read(0).compute_mode == "exclusive_process"
    assert other.read(0).metrics["sm_clock_mhz"] == 1500
    other.reset_locked_clocks(0)
    assert b.get_locked_clocks(0) is None


def test_collector_exposes_fairness_gauges_and_lost_gpu(tmp_path: Path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"devices": [
        {"processes": [{"pid": 1, "sm_demand_percent": 100}, {"pid": 2, "sm_demand_percent": 20}]},
        {"lost": True},
    ]}))
    part = GpuCollector(SimulatedBackend(path)).collect()
    m = part.metrics
    assert m["gpu.count"] == 2 and m["gpu.0.processes"] == 2
    assert m["gpu.0.proc_sm_util_min_percent"] < 5 < m["gpu.0.proc_sm_util_max_percent"]
    assert m["gpu.1.ok"] == 0 and m["gpu.1.present"] == 0
