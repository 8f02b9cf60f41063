"""GPU settings through the backend's setters (NVML, or the simulated device).

NVML calls behind the backend: nvmlDeviceSetPowerManagementLimit (and
nvmlDeviceGetPowerManagementLimitConstraints for the bounds), nvmlDeviceSetGpuLockedClocks /
nvmlDeviceResetGpuLockedClocks, nvmlDeviceSetComputeMode; MPS active-thread percentage and
the compute time-slice go through the backend's own calls. Journal forms:
watts as Python's float repr (round-trips exactly), clocks ``min-max`` or ``unlocked``,
MPS percent (an uncapped client reads as ``100``, MPS's default), mode and level names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from guardrails.actions import (
    Action,
    GpuComputeMode,
    GpuLockedClocks,
    GpuMpsThreadPercentage,
    GpuPowerLimit,
    GpuTimeslice,
)
from guardrails.decision import Decision
from healer.act.base import require_allow, require_original
from healer.errors import ActuatorError, GpuError
from healer.host.gpu.backend import GpuBackend
from healer.models import ActionRecord

T = TypeVar("T")
UNLOCKED = "unlocked"
GpuAction = GpuPowerLimit | GpuLockedClocks | GpuComputeMode | GpuMpsThreadPercentage | GpuTimeslice


def _watts(w: float) -> str:
    return repr(float(w))


class GpuActuator:
    """Every ``gpu_*`` kind, on the ``host`` or its own ``gpu:<index>`` scope."""

    kinds: tuple[str, ...] = (
        "gpu_power_limit", "gpu_locked_clocks", "gpu_compute_mode",
        "gpu_mps_thread_percentage", "gpu_timeslice",
    )

    def __init__(self, backend: GpuBackend) -> None:
        self._gpu = backend

    def _action(self, action: Action) -> GpuAction:
        if not isinstance(action, GpuAction):
            raise ActuatorError(action.scope, action.target, "not a GPU action")
        if action.scope not in ("host", f"gpu:{action.index}"):
            raise ActuatorError(action.scope, action.target, "GPU actions act in their gpu scope")
        return action

    def _call(self, action: GpuAction, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except GpuError as exc:
            raise ActuatorError(action.scope, action.target, str(exc)) from exc

    def read(self, action: Action) -> str | None:
        """The device's current setting in journal form; None when it cannot say."""
        a = self._action(action)
        i = a.index
        if isinstance(a, GpuPowerLimit):
            state = self._call(a, self._gpu.read, i)
            watts = state.metrics.get("power_limit_watts") if state.ok else None
            return None if watts is None else _watts(watts)
        if isinstance(a, GpuLockedClocks):
            clocks = self._call(a, self._gpu.get_locked_clocks, i)
            return UNLOCKED if clocks is None else f"{clocks[0]}-{clocks[1]}"
        if isinstance(a, GpuComputeMode):
            state = self._call(a, self._gpu.read, i)
            return state.compute_mode if state.ok else None
        if isinstance(a, GpuMpsThreadPercentage):
            pct = self._call(a, self._gpu.get_mps_thread_percentage, i, a.client)
            return str(100 if pct is None else pct)
        return self._call(a, self._gpu.get_timeslice, i)

    def in_action_units(self, action: Action, value: str) -> str:
        """GPU values need no translation."""
        return value

    def facts(self, action: Action) -> dict[str, float]:
        """The power limit's NVML constraints (gpu_min_watts, gpu_max_watts)."""
        a = self._action(action)
        if not isinstance(a, GpuPowerLimit):
            return {}
        lo, hi = self._call(a, self._gpu.power_limit_constraints, a.index)
        return {"gpu_min_watts": lo, "gpu_max_watts": hi}

    def apply(self, action: Action, decision: Decision) -> str:
        """Set the value (only under an allow), read it back and return the read-back."""
        require_allow(action, decision)
        a = self._action(action)
        if isinstance(a, GpuPowerLimit):
            target = _watts(a.watts)
        elif isinstance(a, GpuLockedClocks):
            target = UNLOCKED if a.min_mhz == a.max_mhz == 0 else f"{a.min_mhz}-{a.max_mhz}"
        elif isinstance(a, GpuComputeMode):
            target = a.mode
        elif isinstance(a, GpuMpsThreadPercentage):
            target = str(a.percent)
        else:
            target = a.level
        return self._set(a, target)

    def restore(self, record: ActionRecord) -> str:
        """Put the original setting back and return the read-back."""
        return self._set(self._action(record.action), require_original(record))

    def _set(self, a: GpuAction, value: str) -> str:
        if self.read(a) != value:
            i = a.index
            if isinstance(a, GpuPowerLimit):
                self._call(a, self._gpu.set_power_limit, i, float(value))
            elif isinstance(a, GpuLockedClocks) and value == UNLOCKED:
                self._call(a, self._gpu.reset_locked_clocks, i)
            elif isinstance(a, GpuLockedClocks):
                lo, _, hi = value.partition("-")
                self._call(a, self._gpu.set_locked_clocks, i, int(lo), int(hi))
            elif isinstance(a, GpuComputeMode):
                self._call(a, self._gpu.set_compute_mode, i, value)
            elif isinstance(a, GpuMpsThreadPercentage):
                self._call(a, self._gpu.set_mps_thread_percentage, i, a.client, int(value))
            else:
                self._call(a, self._gpu.set_timeslice, i, value)
        back = self.read(a)
        if back is None:
            raise ActuatorError(a.scope, a.target, "device did not report the setting back")
        return back
