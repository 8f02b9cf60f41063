"""A simulated GPU driven by a JSON state file, for chaos runs and tests.

Separate processes share one device: the chaos runner and its workloads (which
do not import healer) edit the same file. **The file format is a contract**::

    {"devices": [ {                       # one object per GPU, index = position
        "name": "H100-SIM", "uuid": "GPU-sim-0", "pci_bus_id": "0000:3b:00.0",
        "power_limit_w": 700.0,           # enforced limit; set_power_limit writes it
        "power_min_w": 200.0, "power_max_w": 700.0,   # the limit's constraints
        "power_demand_w": 300.0,          # what the workload would draw unconstrained
        "ambient_c": 30.0,
        "thermal_resistance": 0.08,       # degC per W at steady state
        "thermal_tau_s": 5.0,             # time constant of the temperature
        "heat_boost_c": 0.0,              # extra degC a scenario adds (blocked fan)
        "slowdown_temp_c": 87.0,          # HW thermal slowdown at or above this
        "temperature_c": 30.0,
        "memory_total_bytes": 85899345920,
        "sm_clock_max_mhz": 1980, "mem_clock_mhz": 2619,
        "compute_mode": "default",        # default | exclusive_process | prohibited
        "persistence_mode": true,
        "locked_clocks": null,            # or [min_mhz, max_mhz]
        "timeslice": "default",           # default | short | medium | long
        "lost": false,                    # true: the GPU fell off the bus
        "ecc": {"volatile_corrected": 0, "volatile_uncorrected": 0,
                "aggregate_corrected": 0, "aggregate_uncorrected": 0},
        "remapped_rows": {"correctable": 0, "uncorrectable": 0, "pending": 0, "failure": 0},
        "processes": [{"pid": 4242, "name": "train", "used_memory_bytes": 1073741824,
                       "sm_demand_percent": 100.0, "mps_percent": null}],
        # written by healer on every read (outputs; writers may ignore them):
        "updated_at": 1700000000.0, "power_draw_w": 300.0,
        # and per process: "sm_util_percent"
    } ]}

Every key is optional; missing keys take the defaults above. Writers must hold an
exclusive ``fcntl.flock`` on ``<file>.lock`` while they read-modify-write, and
replace the file atomically (write ``<file>.tmp``, then ``rename``).

Physics, applied on each read over the time since ``updated_at``:

- demand = power_demand_w, scaled by locked max clock / sm_clock_max_mhz when locked;
  power_draw = min(demand, power_limit_w) (``sw_power_cap`` when demand > limit);
- temperature relaxes exponentially (tau = thermal_tau_s) toward
  ambient_c + thermal_resistance * power_draw + heat_boost_c, so a lower limit cools it;
- ``hw_thermal_slowdown`` while temperature >= slowdown_temp_c; SM clock drops to 70 %;
- SM shares: each process wants w = min(sm_demand_percent, mps_percent or 100). If the
  wants fit in 100 % each gets its want; otherwise share_i = 100 * w_i^e / sum(w_j^e)
  with e = 1 for the ``short`` time-slice (proportional), 2 for ``default``/``medium``
  (long-running kernels of a hog starve small ones), 3 for ``long``.
  ``utilization_percent`` is the sum of shares; each share is the process's
  ``sm_util_percent`` (in ``GpuState.processes`` and written back to the file).
"""

from __future__ import annotations

import copy
import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from healer.errors import GpuError
from healer.host.gpu.backend import (
    COMPUTE_MODE_IDS,
    TIMESLICE_LEVELS,
    clock_reason_metrics,
    decode_clock_reasons,
)
from healer.models import GpuProcess, GpuState

DEFAULT_DEVICE: dict[str, Any] = {
    "name": "H100-SIM", "uuid": "GPU-sim-0", "pci_bus_id": "0000:3b:00.0",
    "power_limit_w": 700.0, "power_min_w": 200.0, "power_max_w": 700.0,
    "power_demand_w": 300.0, "ambient_c": 30.0, "thermal_resistance": 0.08,
    "thermal_tau_s": 5.0, "heat_boost_c": 0.0, "slowdown_temp_c": 87.0, "temperature_c": 30.0,
    "memory_total_bytes": 80 * 1024**3, "sm_clock_max_mhz": 1980, "mem_clock_mhz": 2619,
    "compute_mode": "default", "persistence_mode": True, "locked_clocks": None,
    "timeslice": "default", "lost": False,
    "ecc": {"volatile_corrected": 0, "volatile_uncorrected": 0,
            "aggregate_corrected": 0, "aggregate_uncorrected": 0},
    "remapped_rows": {"correctable": 0, "uncorrectable": 0, "pending": 0, "failure": 0},
    "processes": [],
}
_EXPONENT = {"short": 1.0, "default": 2.0, "medium": 2.0, "long": 3.0}
HW_THERMAL, SW_POWER_CAP = 0x40, 0x4


def sm_shares(procs: list[dict[str, Any]], timeslice: str) -> list[float]:
    """Each process's SM share in percent (see the module docstring)."""
    wants = [max(0.0, min(float(p.get("sm_demand_percent", 0.0)),
                          float(p.get("mps_percent") or 100.0))) for p in procs]
    if sum(wants) <= 100.0:
        return wants
    e = _EXPONENT.get(timeslice, 2.0)
    weights = [w**e for w in wants]
    total = sum(weights)
    return [100.0 * w / total for w in weights]


def step(dev: dict[str, Any], now: float) -> dict[str, Any]:
    """Advance one device to ``now``: a pure function of its state and the elapsed time."""
    d = copy.deepcopy({**DEFAULT_DEVICE, **dev})
    dt = max(0.0, now - float(d.get("updated_at", now)))
    demand = float(d["power_demand_w"])
    locked = d.get("locked_clocks")
    if locked:
        demand *= min(1.0, float(locked[1]) / float(d["sm_clock_max_mhz"]))
    draw = min(demand, float(d["power_limit_w"]))
    heat = float(d["thermal_resistance"]) * draw + float(d["heat_boost_c"])
    target = float(d["ambient_c"]) + heat
    decay = math.exp(-dt / max(float(d["thermal_tau_s"]), 1e-6))
    d["temperature_c"] = target + (float(d["temperature_c"]) - target) * decay
    d["power_draw_w"] = draw
    d["updated_at"] = now
    for p, share in zip(d["processes"], sm_shares(d["processes"], d["timeslice"]), strict=True):
        p["sm_util_percent"] = share
    return d


def _reasons(d: dict[str, Any]) -> int:
    mask = HW_THERMAL if d["temperature_c"] >= float(d["slowdown_temp_c"]) else 0
    if float(d["power_demand_w"]) > float(d["power_limit_w"]):
        mask |= SW_POWER_CAP
    return mask


def to_state(index: int, d: dict[str, Any]) -> GpuState:
    """The GpuState a stepped device reports."""
    if d.get("lost"):
        return GpuState(index=index, name=d["name"], uuid=d["uuid"], pci_bus_id=d["pci_bus_id"],
                        present=False, ok=False)
    mask = _reasons(d)
    clock = float(d["locked_clocks"][1]) if d.get("locked_clocks") else float(d["sm_clock_max_mhz"])
    clock = min(clock, float(d["sm_clock_max_mhz"])) * (0.7 if mask & HW_THERMAL else 1.0)
    procs = d["processes"]
    m: dict[str, float] = {
        "utilization_percent": min(100.0, sum(p["sm_util_percent"] for p in procs)),
        "memory_used_bytes": float(sum(int(p.get("used_memory_bytes", 0)) for p in procs)),
        "memory_total_bytes": float(d["memory_total_bytes"]),
        "temperature_celsius": round(d["temperature_c"], 3),
        "power_draw_watts": d["power_draw_w"],
        "power_limit_watts": float(d["power_limit_w"]),
        "power_limit_min_watts": float(d["power_min_w"]),
        "power_limit_max_watts": float(d["power_max_w"]),
        "sm_clock_mhz": clock,
        "mem_clock_mhz": float(d["mem_clock_mhz"]),
        "slowdown_temp_celsius": float(d["slowdown_temp_c"]),
    }
    m.update(clock_reason_metrics(mask))
    m.update({f"ecc_{k}_total": float(v) for k, v in d["ecc"].items()})
    m.update({f"remapped_rows_{k}": float(v) for k, v in d["remapped_rows"].items()})
    return GpuState(
        index=index, name=d["name"], uuid=d["uuid"], pci_bus_id=d["pci_bus_id"], metrics=m,
        throttle_reasons=decode_clock_reasons(mask), compute_mode=d["compute_mode"],
        persistence_mode=bool(d["persistence_mode"]),
        processes=tuple(
            GpuProcess(pid=int(p["pid"]), name=str(p.get("name", "")),
                       used_memory_bytes=int(p.get("used_memory_bytes", 0)),
                       sm_util_percent=p["sm_util_percent"]) for p in procs
        ),
    )


class SimulatedBackend:
    """GpuBackend over the JSON state file; creates one default device if the file is missing."""

    name = "simulated"

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """Yield the stepped state under the lock; write it back atomically on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = json.loads(self.path.read_text())
            except FileNotFoundError:
                state = {"devices": [dict(DEFAULT_DEVICE)]}
            except (OSError, ValueError) as exc:
                raise GpuError(None, f"simulated state {self.path}: {exc}") from exc
            now = self._clock()
            state["devices"] = [step(d, now) for d in state.get("devices", [])]
            yield state
            tmp = Path(f"{self.path}.tmp")
            tmp.write_text(json.dumps(state, indent=1))
            os.replace(tmp, self.path)

    def _device(self, state: dict[str, Any], index: int) -> dict[str, Any]:
        devs = state["devices"]
        if not 0 <= index < len(devs):
            raise GpuError(index, "no such simulated device")
        return devs[index]  # type: ignore[no-any-return]

    def device_count(self) -> int:
        with self._locked() as state:
            return len(state["devices"])

    def read(self, index: int) -> GpuState:
        with self._locked() as state:
            return to_state(index, self._device(state, index))

    def read_all(self) -> list[GpuState]:
        """Every device in one locked pass (what the collector uses)."""
        with self._locked() as state:
            return [to_state(i, d) for i, d in enumerate(state["devices"])]

    def power_limit_constraints(self, index: int) -> tuple[float, float]:
        with self._locked() as state:
            d = self._device(state, index)
            return float(d["power_min_w"]), float(d["power_max_w"])

    def _update(self, index: int, **changes: Any) -> None:
        with self._locked() as state:
            self._device(state, index).update(changes)

    def set_power_limit(self, index: int, watts: float) -> None:
        lo, hi = self.power_limit_constraints(index)
        if not lo <= watts <= hi:
            raise GpuError(index, f"power limit {watts} W outside [{lo}, {hi}] W")
        self._update(index, power_limit_w=float(watts))

    def set_locked_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None:
        if not 0 < min_mhz <= max_mhz:
            raise GpuError(index, f"bad clock range {min_mhz}..{max_mhz} MHz")
        self._update(index, locked_clocks=[int(min_mhz), int(max_mhz)])

    def reset_locked_clocks(self, index: int) -> None:
        self._update(index, locked_clocks=None)

    def set_compute_mode(self, index: int, mode: str) -> None:
        if mode not in COMPUTE_MODE_IDS:
            raise GpuError(index, f"unknown compute mode {mode!r}")
        self._update(index, compute_mode=mode)

    def set_mps_thread_percentage(self, index: int, client_pid: int, percent: int) -> None:
        if not 1 <= percent <= 100:
            raise GpuError(index, f"bad MPS percentage {percent}")
        with self._locked() as state:
            for p in self._device(state, index)["processes"]:
                if int(p["pid"]) == client_pid:
                    p["mps_percent"] = float(percent)
                    return
            raise GpuError(index, f"no MPS client with pid {client_pid}")

    def set_timeslice(self, index: int, level: str) -> None:
        if level not in TIMESLICE_LEVELS:
            raise GpuError(index, f"unknown timeslice level {level!r}")
        self._update(index, timeslice=level)

    def get_timeslice(self, index: int) -> str | None:
        with self._locked() as state:
            return str(self._device(state, index)["timeslice"])

    def get_locked_clocks(self, index: int) -> tuple[int, int] | None:
        with self._locked() as state:
            lc = self._device(state, index).get("locked_clocks")
            return (int(lc[0]), int(lc[1])) if lc else None

    def get_mps_thread_percentage(self, index: int, client_pid: int) -> int | None:
        with self._locked() as state:
            for p in self._device(state, index)["processes"]:
                if int(p["pid"]) == client_pid and p.get("mps_percent") is not None:
                    return int(p["mps_percent"])
            return None
