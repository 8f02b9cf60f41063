"""The GPU backend protocol, shared by NVML and the simulated device, plus decoders.

Readers return ``GpuState`` with unprefixed metric names (``temperature_celsius``); the
collector (``healer.monitor.gpu``) prefixes them as ``gpu.<index>.<name>``. Setters exist
for the actuators; they raise ``GpuError`` when the device refuses.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from healer.models import GpuState

# nvmlClocksEventReason* bits (nvml.h, "Clock event reasons"; formerly ClocksThrottleReason*).
CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
_THERMAL = 0x20 | 0x40

# nvmlComputeMode_t values (nvml.h); 1 (exclusive thread) was removed in CUDA 8.
COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}
COMPUTE_MODE_IDS = {v: k for k, v in COMPUTE_MODES.items()}
# nvidia-smi compute-policy --set-timeslice: 0 default, 1 short, 2 medium, 3 long.
TIMESLICE_LEVELS = ("default", "short", "medium", "long")


def decode_clock_reasons(mask: int) -> tuple[str, ...]:
    """Bitmask -> reason names, in bit order."""
    return tuple(name for bit, name in CLOCK_EVENT_REASONS if mask & bit)


def clock_reason_metrics(mask: int) -> dict[str, float]:
    """One 0/1 gauge per reason (``throttle_<name>``), plus ``throttle_thermal`` (sw or hw)."""
    out = {f"throttle_{name}": float(bool(mask & bit)) for bit, name in CLOCK_EVENT_REASONS}
    out["throttle_thermal"] = float(bool(mask & _THERMAL))
    return out


def normalize_pci_bus_id(bus_id: str | bytes) -> str:
    """NVML's ``00000000:3B:00.0`` -> ``0000:3b:00.0``, the form NVRM prints in Xid lines."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else bus_id
    text = text.strip().rstrip("\x00").lower()
    domain, sep, rest = text.partition(":")
    if not sep:
        return text
    if len(domain) > 4:
        domain = domain[-4:]
    return f"{domain.zfill(4)}:{rest}"


@runtime_checkable
class GpuBackend(Protocol):
    """What the GPU collector and the GPU actuators need from a device driver."""

    name: str

    def device_count(self) -> int:
        """How many devices; 0 when none."""
        ...

    def read(self, index: int) -> GpuState:
        """Current state of device ``index``; ``ok=False`` when it could not be read."""
        ...

    def power_limit_constraints(self, index: int) -> tuple[float, float]:
        """(min_watts, max_watts) the power limit may be set to."""
        ...

    def set_power_limit(self, index: int, watts: float) -> None: ...

    def set_locked_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None: ...

    def reset_locked_clocks(self, index: int) -> None: ...

    def set_compute_mode(self, index: int, mode: str) -> None: ...

    def set_mps_thread_percentage(self, index: int, client_pid: int, percent: int) -> None: ...

    def set_timeslice(self, index: int, level: str) -> None:
        """``level`` is one of TIMESLICE_LEVELS (nvidia-smi compute-policy --set-timeslice)."""
        ...

    def get_timeslice(self, index: int) -> str | None:
        """The current time-slice level, None when the driver cannot say."""
        ...

    def get_locked_clocks(self, index: int) -> tuple[int, int] | None:
        """(min_mhz, max_mhz) when SM clocks are locked, None when not locked or unknown."""
        ...

    def get_mps_thread_percentage(self, index: int, client_pid: int) -> int | None:
        """The client's MPS active-thread cap, None when uncapped or unknown."""
        ...
