"""A pynvml-shaped fake that raises the real ``pynvml.NVMLError`` subclasses."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pynvml


class FakeNvml:
    """Two devices by default; knobs make one call fail, hang, or the library vanish."""

    def __init__(self, count: int = 2) -> None:
        self.count = count
        self.init_error: type[pynvml.NVMLError] | None = None
        self.fail: dict[tuple[str, int], type[pynvml.NVMLError]] = {}
        self.hang: set[tuple[str, int]] = set()
        self.release = threading.Event()
        self.power_limit_mw = {i: 400_000 for i in range(count)}
        self.calls: list[str] = []

    def _check(self, name: str, h: Any) -> None:
        self.calls.append(name)
        idx = h.index
        if (name, idx) in self.hang:
            self.release.wait(30)
        err = self.fail.get((name, idx))
        if err is not None:
            raise err()

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error()

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Any:
        return SimpleNamespace(index=i)

    def nvmlDeviceGetName(self, h: Any) -> str:
        self._check("name", h)
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return f"GPU-fake-{h.index}"

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        return SimpleNamespace(busId=b"00000000:3B:00.0" if h.index == 0 else "00000000:86:00.0")

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        self._check("util", h)
        return SimpleNamespace(gpu=87, memory=40)

    def nvmlDeviceGetMemoryInfo(self, h: Any, version: int | None = None) -> Any:
        if version is None:  # v1 folds the driver reservation into "used"
            return SimpleNamespace(used=10 * 1024**3 + 512 * 1024**2, total=80 * 1024**3,
                                   free=70 * 1024**3 - 512 * 1024**2)
        return SimpleNamespace(used=10 * 1024**3, total=80 * 1024**3, free=70 * 1024**3,
                               reserved=512 * 1024**2)

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        self._check("temp", h)
        return 71

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        return 350_500

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Any) -> int:
        return self.power_limit_mw[h.index]

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: Any) -> list[int]:
        return [200_000, 700_000]

    def nvmlDeviceGetClockInfo(self, h: Any, clock: int) -> int:
        return 1980 if clock == pynvml.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: Any) -> int:
        return 0x40 | 0x4  # hw thermal slowdown + sw power cap

    def nvmlDeviceGetTotalEccErrors(self, h: Any, err: int, counter: int) -> int:
        self._check("ecc", h)
        return 5 if err == 0 else 1

    def nvmlDeviceGetRetiredPages(self, h: Any, cause: int) -> list[int]:
        raise pynvml.NVMLError_NotSupported()  # Ampere+ remaps rows instead

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: Any) -> int:
        raise pynvml.NVMLError_NotSupported()

    def nvmlDeviceGetRemappedRows(self, h: Any) -> tuple[int, int, int, int]:
        return (2, 0, 0, 0)

    def nvmlDeviceGetComputeMode(self, h: Any) -> int:
        return pynvml.NVML_COMPUTEMODE_EXCLUSIVE_PROCESS

    def nvmlDeviceGetPersistenceMode(self, h: Any) -> int:
        return 1

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[Any]:
        return [SimpleNamespace(pid=1, usedGpuMemory=1024**3)]

    def nvmlDeviceSetPowerManagementLimit(self, h: Any, mw: int) -> None:
        self._check("set_power", h)
        self.power_limit_mw[h.index] = mw
