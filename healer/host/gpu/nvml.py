"""The NVML backend (nvidia-ml-py): every read and write goes through a deadline.

Each device read runs as one job on a ``BoundedCaller``; if the driver hangs the
device reports ``ok=False`` for that cycle. Optional queries a device does not
support (``NVMLError_NotSupported``, ``NoPermission``, ``FunctionNotFound``) are
just left out; any other ``NVMLError`` fails that device's read for the cycle.
MPS and time-slice settings have no NVML setter: they go through
``nvidia-cuda-mps-control`` and ``nvidia-smi compute-policy``.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml

from healer.errors import GpuError
from healer.host.gpu.backend import (
    COMPUTE_MODE_IDS,
    COMPUTE_MODES,
    TIMESLICE_LEVELS,
    clock_reason_metrics,
    decode_clock_reasons,
    normalize_pci_bus_id,
)
from healer.host.gpu.bounded import BoundedCaller, CallTimeout
from healer.models import GpuProcess, GpuState

_OPTIONAL = (
    pynvml.NVMLError_NotSupported,
    pynvml.NVMLError_NoPermission,
    pynvml.NVMLError_FunctionNotFound,
)
# ECC counters: (metric, error type, counter type) for nvmlDeviceGetTotalEccErrors.
_ECC = (
    ("ecc_volatile_corrected_total", 0, pynvml.NVML_VOLATILE_ECC),
    ("ecc_volatile_uncorrected_total", 1, pynvml.NVML_VOLATILE_ECC),
    ("ecc_aggregate_corrected_total", 0, pynvml.NVML_AGGREGATE_ECC),
    ("ecc_aggregate_uncorrected_total", 1, pynvml.NVML_AGGREGATE_ECC),
)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlBackend:
    """NVIDIA devices through NVML; ``nvml`` is injectable (tests pass a fake module)."""

    name = "nvml"

    def __init__(
        self,
        nvml: Any = pynvml,
        timeout: float = 0.5,
        procfs_root: Path = Path("/proc"),
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ) -> None:
        self._nvml = nvml
        self._caller = BoundedCaller(timeout)
        self._procfs = procfs_root
        self._run = run
        self._count: int | None = None
        self._handles: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _call(self, index: int | None, fn: Callable[..., Any], *args: Any) -> Any:
        """One bounded driver job; NVML errors and timeouts become GpuError."""
        try:
            return self._caller.call(fn, *args)
        except CallTimeout as exc:
            raise GpuError(index, f"NVML timed out: {exc}") from exc
        except pynvml.NVMLError as exc:
            raise GpuError(index, f"NVML: {exc}") from exc

    def device_count(self) -> int:
        """nvmlInit once, then the device count; raises GpuError when NVML is unusable."""
        if self._count is None:
            self._count = int(self._call(None, self._init))
        return self._count

    def _init(self) -> int:
        self._nvml.nvmlInit()
        return int(self._nvml.nvmlDeviceGetCount())

    def _handle(self, index: int) -> Any:
        h = self._handles.get(index)
        if h is None:
            h = self._handles[index] = self._nvml.nvmlDeviceGetHandleByIndex(index)
        return h

    def read(self, index: int) -> GpuState:
        try:
            return self._call(index, self._read_sync, index)  # type: ignore[no-any-return]
        except GpuError as exc:
            lost = isinstance(exc.__cause__, pynvml.NVMLError_GpuIsLost)
            return GpuState(index=index, ok=False, present=not lost)

    def _opt(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except _OPTIONAL:
            return None

    def _read_sync(self, index: int) -> GpuState:
        n, h = self._nvml, self._handle(index)
        m: dict[str, float] = {}
        self._basic(h, m)
        mask = self._opt(n.nvmlDeviceGetCurrentClocksEventReasons, h)
        if mask is not None:
            m.update(clock_reason_metrics(int(mask)))
        self._health(h, m)
        mode = self._opt(n.nvmlDeviceGetComputeMode, h)
        persist = self._opt(n.nvmlDeviceGetPersistenceMode, h)
        pci = self._opt(n.nvmlDeviceGetPciInfo, h)
        return GpuState(
            index=index,
            name=_text(n.nvmlDeviceGetName(h)),
            uuid=_text(self._opt(n.nvmlDeviceGetUUID, h) or ""),
            pci_bus_id=normalize_pci_bus_id(pci.busId) if pci is not None else "",
            metrics=m,
            throttle_reasons=decode_clock_reasons(int(mask)) if mask is not None else (),
            compute_mode=COMPUTE_MODES.get(int(mode), str(mode)) if mode is not None else None,
            persistence_mode=bool(persist) if persist is not None else None,
            processes=self._processes(h),
        )

    def _basic(self, h: Any, m: dict[str, float]) -> None:
        n, opt = self._nvml, self._opt
        util = opt(n.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            m["utilization_percent"] = float(util.gpu)
            m["memory_utilization_percent"] = float(util.memory)
        self._memory(h, m)
        temp = opt(n.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
        if temp is not None:
            m["temperature_celsius"] = float(temp)
        # NVML reports power in milliwatts.
        for key, fn in (("power_draw_watts", n.nvmlDeviceGetPowerUsage),
                        ("power_limit_watts", n.nvmlDeviceGetEnforcedPowerLimit)):
            mw = opt(fn, h)
            if mw is not None:
                m[key] = mw / 1000.0
        lims = opt(n.nvmlDeviceGetPowerManagementLimitConstraints, h)
        if lims is not None:
            m["power_limit_min_watts"], m["power_limit_max_watts"] = lims[0] / 1e3, lims[1] / 1e3
        for key, clock in (("sm_clock_mhz", pynvml.NVML_CLOCK_SM),
                           ("mem_clock_mhz", pynvml.NVML_CLOCK_MEM)):
            mhz = opt(n.nvmlDeviceGetClockInfo, h, clock)
            if mhz is not None:
                m[key] = float(mhz)

    def _memory(self, h: Any, m: dict[str, float]) -> None:
        # nvmlDeviceGetMemoryInfo_v2 (R510+) splits driver-reserved memory out of "used",
        # which is what nvidia-smi shows as used; v1 folds the reservation in (about
        # 600 MiB on an idle H200), so prefer v2 and fall back on older drivers.
        n = self._nvml
        try:
            mem = n.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
        except (TypeError, AttributeError, *_OPTIONAL):
            mem = self._opt(n.nvmlDeviceGetMemoryInfo, h)
        if mem is None:
            return
        m["memory_used_bytes"], m["memory_total_bytes"] = float(mem.used), float(mem.total)
        reserved = getattr(mem, "reserved", None)
        if reserved is not None:
            m["memory_reserved_bytes"] = float(reserved)

    def _health(self, h: Any, m: dict[str, float]) -> None:
        n, opt = self._nvml, self._opt
        for key, err_type, counter in _ECC:
            v = opt(n.nvmlDeviceGetTotalEccErrors, h, err_type, counter)
            if v is not None:
                m[key] = float(v)
        for key, cause in (("retired_pages_sbe", 0), ("retired_pages_dbe", 1)):
            pages = opt(n.nvmlDeviceGetRetiredPages, h, cause)
            if pages is not None:
                m[key] = float(len(pages))
        pending = opt(n.nvmlDeviceGetRetiredPagesPendingStatus, h)
        if pending is not None:
            m["retired_pages_pending"] = float(bool(pending))
        rows = opt(n.nvmlDeviceGetRemappedRows, h)
        if rows is not None:  # (correctable, uncorrectable, pending, failure) since Ampere
            for key, v in zip(("correctable", "uncorrectable", "pending", "failure"), rows,
                              strict=False):
                m[f"remapped_rows_{key}"] = float(v)

    def _processes(self, h: Any) -> tuple[GpuProcess, ...]:
        procs = self._opt(self._nvml.nvmlDeviceGetComputeRunningProcesses, h) or []
        out = []
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            out.append(GpuProcess(pid=int(p.pid), name=self._comm(int(p.pid)),
                                  used_memory_bytes=int(used) if used is not None else None))
        return tuple(out)

    def _comm(self, pid: int) -> str:
        try:
            return (self._procfs / str(pid) / "comm").read_text().strip()
        except OSError:
            return ""

    def power_limit_constraints(self, index: int) -> tuple[float, float]:
        def job() -> tuple[float, float]:
            lo, hi = self._nvml.nvmlDeviceGetPowerManagementLimitConstraints(self._handle(index))
            return lo / 1e3, hi / 1e3
        return self._call(index, job)  # type: ignore[no-any-return]

    def _set(self, index: int, fn_name: str, *args: Any) -> None:
        def job() -> None:
            getattr(self._nvml, fn_name)(self._handle(index), *args)
        self._call(index, job)

    def set_power_limit(self, index: int, watts: float) -> None:
        self._set(index, "nvmlDeviceSetPowerManagementLimit", round(watts * 1000))

    def set_locked_clocks(self, index: int, min_mhz: int, max_mhz: int) -> None:
        self._set(index, "nvmlDeviceSetGpuLockedClocks", min_mhz, max_mhz)

    def reset_locked_clocks(self, index: int) -> None:
        self._set(index, "nvmlDeviceResetGpuLockedClocks")

    def set_compute_mode(self, index: int, mode: str) -> None:
        if mode not in COMPUTE_MODE_IDS:
            raise GpuError(index, f"unknown compute mode {mode!r}")
        self._set(index, "nvmlDeviceSetComputeMode", COMPUTE_MODE_IDS[mode])

    def _command(self, index: int, cmd: list[str], stdin: str | None = None) -> None:
        try:
            self._run(cmd, input=stdin, capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise GpuError(index, f"{cmd[0]} failed: {exc}") from exc

    def set_mps_thread_percentage(self, index: int, client_pid: int, percent: int) -> None:
        # nvidia-cuda-mps-control(1): set_active_thread_percentage <PID> <percentage>
        line = f"set_active_thread_percentage {int(client_pid)} {int(percent)}\n"
        self._command(index, ["nvidia-cuda-mps-control"], line)

    def set_timeslice(self, index: int, level: str) -> None:
        if level not in TIMESLICE_LEVELS:
            raise GpuError(index, f"unknown timeslice level {level!r}")
        n = TIMESLICE_LEVELS.index(level)
        self._command(index, ["nvidia-smi", "compute-policy", "-i", str(index),
                              f"--set-timeslice={n}"])

    def get_timeslice(self, index: int) -> str | None:
        return None  # NVML has no getter for the compute time-slice

    def get_locked_clocks(self, index: int) -> tuple[int, int] | None:
        return None

    def get_mps_thread_percentage(self, index: int, client_pid: int) -> int | None:
        return None
