"""The simulated GPU's state file, as chaos drives it.

The daemon's simulated backend (``HEALER_GPU_BACKEND=simulated``) reads this JSON file
every cycle and its actuators write settings back into it. Chaos writes the *physics*
(demand, ambient heat, processes); healer writes the *settings* (power limit, compute
mode, MPS percentages, time-slice). Both sides rewrite the whole file, so every edit is
a read-modify-write under an flock(2) on a sidecar lock file, published by rename(2).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def default_device(index: int = 0, bus: int = 0x3B) -> dict[str, Any]:
    """A healthy A100-like device: 300 W cap drawing 250 W at 80 °C, no processes."""
    return {
        "index": index,
        "name": "Simulated A100-SXM4-40GB",
        "uuid": f"GPU-5ca1ab1e-0000-4000-8000-{index:012x}",
        "pci_bus_id": f"0000:{bus:02x}:00.0",
        "power_limit_w": 300.0,
        "power_min_w": 100.0,
        "power_max_w": 400.0,
        "power_default_w": 300.0,
        "power_demand_w": 250.0,
        "ambient_c": 30.0,
        "thermal_resistance": 0.2,  # °C per W: 250 W -> 80 °C
        "thermal_tau_s": 1.0,  # settle fast: chaos runs are short
        "slowdown_temp_c": 85.0,
        "heat_boost_c": 0.0,
        "temperature_c": 80.0,
        "memory_total_bytes": 40 * 2**30,
        "compute_mode": "default",
        "timeslice": "default",
        "processes": [],
    }


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path.with_suffix(path.suffix + ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(path: Path) -> dict[str, Any]:
    """The whole state: ``{"devices": [...]}``."""
    data = json.loads(path.read_text())
    return {"devices": data} if isinstance(data, list) else dict(data)


def _save(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def write(path: Path, devices: list[dict[str, Any]]) -> None:
    """Create or replace the state file."""
    with _locked(path):
        _save(path, {"devices": devices})


def device(path: Path, index: int = 0) -> dict[str, Any]:
    """One device's current state."""
    return dict(load(path)["devices"][index])


def patch_device(path: Path, index: int, fields: dict[str, Any]) -> dict[str, Any]:
    """Set fields of one device; returns the fields' previous values (for undo)."""
    with _locked(path):
        state = load(path)
        dev = state["devices"][index]
        old = {k: dev.get(k) for k in fields}
        dev.update(fields)
        _save(path, state)
    return old


def upsert_process(path: Path, index: int, proc: dict[str, Any]) -> dict[str, Any]:
    """Add a process entry or update its given fields (matched by pid); returns the entry.

    Fields healer sets (``mps_percent``) and the backend writes (``sm_util_percent``)
    are kept unless proc names them.
    """
    with _locked(path):
        state = load(path)
        procs = state["devices"][index].setdefault("processes", [])
        entry = next((p for p in procs if p["pid"] == proc["pid"]), None)
        if entry is None:
            entry = {"mps_percent": None}
            procs.append(entry)
        entry.update(proc)
        _save(path, state)
        return dict(entry)


def remove_process(path: Path, index: int, pid: int) -> None:
    """Drop a process entry (idempotent)."""
    with _locked(path):
        state = load(path)
        dev = state["devices"][index]
        dev["processes"] = [p for p in dev.get("processes", []) if p["pid"] != pid]
        _save(path, state)
