"""GPU monitoring: the backend protocol, NVML and simulated backends, and the collector."""

from healer.monitor.gpu.backend import GpuBackend
from healer.monitor.gpu.collector import GpuCollector, make_gpu_backend

build_gpu_backend = make_gpu_backend  # the name the daemon's composition root uses

__all__ = ["GpuBackend", "GpuCollector", "build_gpu_backend", "make_gpu_backend"]
