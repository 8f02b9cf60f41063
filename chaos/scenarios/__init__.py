"""The scenario catalog (SCENARIOS.md), registered explicitly, in suite order."""

from __future__ import annotations

from chaos.scenarios.base import Scenario


def registry() -> dict[str, Scenario]:
    """Every scenario by name; a duplicate name is an error."""
    from chaos.scenarios.adversarial import AlertStorm, PromptInjection
    from chaos.scenarios.cgroup import CpuContention, FdExhaustion, MemoryLeak, PidsExhaustion
    from chaos.scenarios.gpu import GpuContention, GpuThermal, GpuXid
    from chaos.scenarios.memory import CgroupOom, CgroupOomLoop
    from chaos.scenarios.net import AdminDrift, BadFixRollback, CrashDuringVerify, ListenOverflow

    classes: list[type[Scenario]] = [
        ListenOverflow,
        CgroupOom,
        CgroupOomLoop,
        MemoryLeak,
        FdExhaustion,
        PidsExhaustion,
        CpuContention,
        GpuXid,
        GpuThermal,
        GpuContention,
        PromptInjection,
        BadFixRollback,
        CrashDuringVerify,
        AdminDrift,
        AlertStorm,
    ]
    out: dict[str, Scenario] = {}
    for cls in classes:
        if cls.name in out:
            raise RuntimeError(f"duplicate scenario {cls.name}")
        out[cls.name] = cls()
    return out


def quick_names() -> list[str]:
    """The CI subset (``suite --quick``)."""
    return [name for name, s in registry().items() if s.quick]
