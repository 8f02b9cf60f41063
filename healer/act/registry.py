"""The composition root for actuators: one explicit list, built from Settings."""

from __future__ import annotations

from healer.act.base import Actuator, ActuatorRegistry
from healer.act.cgroup import CgroupActuator
from healer.act.gpu import GpuActuator
from healer.act.process import NiceActuator, RlimitActuator
from healer.act.sysctl import SysctlActuator
from healer.host.gpu.backend import GpuBackend
from healer.settings import Settings


def build_actuators(settings: Settings, *, gpu: GpuBackend | None = None) -> ActuatorRegistry:
    """Every actuator healer has; GPU settings only when a GPU backend is given."""
    actuators: list[Actuator] = [
        SysctlActuator(procfs_root=settings.procfs_root),
        CgroupActuator(cgroup_root=settings.cgroup_root, procfs_root=settings.procfs_root),
        RlimitActuator(),
        NiceActuator(),
    ]
    if gpu is not None:
        actuators.append(GpuActuator(gpu))
    return ActuatorRegistry(actuators)
