"""Scope checks: does an action's scope agree with its fields, and is it inside the sandbox?

An action names its scope (``host``, ``netns:<name>``, ``cgroup:<path>``, ``pid:<n>``,
``gpu:<index>``) and may also name the object it changes (a cgroup path, a pid, a GPU
index). Both must agree, and under confinement both must lie inside an allowed scope.
"""

from __future__ import annotations

from collections.abc import Iterator

from guardrails.actions import (
    CgroupLimit,
    GpuComputeMode,
    GpuLockedClocks,
    GpuMpsThreadPercentage,
    GpuPowerLimit,
    GpuTimeslice,
    ProcessNice,
    ProcessRlimit,
    SysctlWrite,
)

_GPU_KINDS = (GpuPowerLimit, GpuLockedClocks, GpuComputeMode, GpuMpsThreadPercentage, GpuTimeslice)
_PROCESS_KINDS = (ProcessRlimit, ProcessNice)


def object_scopes(action: object) -> tuple[str, ...]:
    """The scopes an action touches: its own, plus the one its fields name."""
    scope = str(getattr(action, "scope", ""))
    if isinstance(action, CgroupLimit):
        return (scope, f"cgroup:{action.path}")
    if isinstance(action, _PROCESS_KINDS):
        return (scope, f"pid:{action.pid}")
    if isinstance(action, _GPU_KINDS):
        return (scope, f"gpu:{action.index}")
    return (scope,)


def shape_reasons(action: object) -> Iterator[str]:
    """Reasons an action's scope disagrees with its own fields (empty when consistent)."""
    scope = str(getattr(action, "scope", ""))
    kind = getattr(action, "kind", "?")
    if isinstance(action, SysctlWrite):
        if not (scope == "host" or scope.startswith("netns:")):
            yield f"sysctl_write scope must be host or netns:<name>, got {scope}"
    elif isinstance(action, CgroupLimit):
        if not (scope == "host" or scope.startswith("cgroup:")):
            yield f"cgroup_limit scope must be host or cgroup:<path>, got {scope}"
        elif scope != "host" and not within(f"cgroup:{action.path}", scope):
            yield f"cgroup path {action.path} is not under scope {scope}"
    elif isinstance(action, _PROCESS_KINDS):
        if scope.startswith("gpu:") or (scope.startswith("pid:") and scope != f"pid:{action.pid}"):
            yield f"{kind} for pid {action.pid} cannot have scope {scope}"
    elif isinstance(action, _GPU_KINDS) and scope not in ("host", f"gpu:{action.index}"):
        yield f"{kind} for gpu {action.index} cannot have scope {scope}"


def within(scope: str, base: str) -> bool:
    """True when ``scope`` is ``base``, lies below it (cgroup paths) or matches ``base*``."""
    if scope == base:
        return True
    if base.endswith("*"):
        return scope.startswith(base[:-1])
    if base.startswith("cgroup:"):
        return scope.startswith(base.rstrip("/") + "/")
    return False


def confine_reasons(action: object, confine: tuple[str, ...]) -> Iterator[str]:
    """Reasons an action leaves the confined scopes (empty when unconfined or inside)."""
    if not confine:
        return
    for scope in object_scopes(action):
        if not any(within(scope, allowed) for allowed in confine):
            yield f"scope {scope} is outside the confined scopes ({', '.join(confine)})"
