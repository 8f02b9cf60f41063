"""GPU backends: the protocol, NVML and the simulated device; built from Settings here."""

from __future__ import annotations

from healer.host.gpu.backend import GpuBackend
from healer.host.gpu.nvml import NvmlBackend
from healer.host.gpu.simulated import SimulatedBackend
from healer.settings import Settings


def build_gpu_backend(settings: Settings) -> GpuBackend | None:
    """The backend Settings.gpu_backend names; None for ``none``."""
    kind = settings.gpu_backend
    if kind == "none":
        return None
    if kind == "simulated":
        return SimulatedBackend(settings.gpu_sim_state or settings.state_dir / "gpu-sim.json")
    return NvmlBackend(timeout=settings.nvml_timeout_seconds, procfs_root=settings.procfs_root)
