"""GPU backends: the protocol, NVML and the simulated device; built from Settings here.

The NVML backend's module (and nvidia-ml-py with it, ~2 MB) loads only when that backend
is built: ``auto`` builds it only where the NVIDIA driver is loaded, so a host without
one never pays for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from healer.host.gpu.backend import GpuBackend
from healer.host.gpu.simulated import SimulatedBackend
from healer.settings import Settings

log = logging.getLogger(__name__)


def nvidia_driver_loaded(procfs_root: Path) -> bool:
    """The driver publishes ``driver/nvidia`` in procfs (mounted into GPU containers too);
    without it nvmlInit can only fail (NVML_ERROR_DRIVER_NOT_LOADED)."""
    return (procfs_root / "driver" / "nvidia").is_dir()


def build_gpu_backend(settings: Settings) -> GpuBackend | None:
    """The backend Settings.gpu_backend names; None for ``none``, and for ``auto`` on a host
    without the NVIDIA driver."""
    kind = settings.gpu_backend
    if kind == "none":
        return None
    if kind == "simulated":
        return SimulatedBackend(settings.gpu_sim_state or settings.state_dir / "gpu-sim.json")
    if kind == "auto" and not nvidia_driver_loaded(settings.procfs_root):
        log.info("gpu absent: backend=auto reason=no NVIDIA driver (%s/driver/nvidia)",
                 settings.procfs_root)
        return None
    from healer.host.gpu.nvml import NvmlBackend  # the one place pynvml is loaded

    return NvmlBackend(timeout=settings.nvml_timeout_seconds, procfs_root=settings.procfs_root)
