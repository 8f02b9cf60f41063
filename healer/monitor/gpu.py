"""The GPU collector: ``gpu.<index>.<name>`` metrics plus a ``GpuState`` per device.

With no NVML, no driver or no device the GPU is reported absent (``gpu.count`` 0),
logged once, and never retried every second. Per device it adds ``ok`` (0 when the
read failed or timed out this cycle), ``present``, ``compute_mode`` (the nvml.h id),
``persistence_mode``, ``processes`` and, when per-process SM use is known,
``proc_sm_util_min_percent`` / ``proc_sm_util_max_percent`` (for unfair sharing).
"""

from __future__ import annotations

import logging

from healer.errors import GpuError
from healer.host.gpu.backend import COMPUTE_MODE_IDS, GpuBackend
from healer.host.gpu.simulated import SimulatedBackend
from healer.models import GpuState, SamplePart

log = logging.getLogger(__name__)


def gpu_metrics(state: GpuState) -> dict[str, float]:
    """The flat ``gpu.<i>.*`` metrics for one device."""
    p = f"gpu.{state.index}."
    out = {p + k: v for k, v in state.metrics.items()}
    out[p + "ok"] = float(state.ok)
    out[p + "present"] = float(state.present)
    if state.compute_mode in COMPUTE_MODE_IDS:
        out[p + "compute_mode"] = float(COMPUTE_MODE_IDS[state.compute_mode])
    if state.persistence_mode is not None:
        out[p + "persistence_mode"] = float(state.persistence_mode)
    if state.ok:
        out[p + "processes"] = float(len(state.processes))
        shares = [q.sm_util_percent for q in state.processes if q.sm_util_percent is not None]
        if shares:
            out[p + "proc_sm_util_min_percent"] = min(shares)
            out[p + "proc_sm_util_max_percent"] = max(shares)
    return out


class GpuCollector:
    """Reads every device each cycle through a GpuBackend (or reports no GPU)."""

    name = "gpu"

    def __init__(self, backend: GpuBackend | None) -> None:
        self.backend = backend
        self._count: int | None = None if backend is not None else 0

    def _device_count(self) -> int:
        if self._count is None:
            assert self.backend is not None
            try:
                self._count = self.backend.device_count()
            except GpuError as exc:
                log.info("gpu absent: backend=%s reason=%s", self.backend.name, exc)
                self._count = 0
            else:
                log.info("gpu backend=%s devices=%d", self.backend.name, self._count)
        return self._count

    def collect(self) -> SamplePart:
        if isinstance(self.backend, SimulatedBackend):
            states = self.backend.read_all()  # one locked pass; devices may be added live
        elif self.backend is None or self._device_count() == 0:
            return SamplePart(metrics={"gpu.count": 0.0})
        else:
            states = [self.backend.read(i) for i in range(self._device_count())]
        metrics: dict[str, float] = {"gpu.count": float(len(states))}
        for st in states:
            metrics.update(gpu_metrics(st))
        return SamplePart(metrics=metrics, gpus=tuple(states))

