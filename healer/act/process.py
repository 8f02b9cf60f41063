"""Per-process knobs: soft resource limits through prlimit(2), and nice through setpriority(2)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from guardrails.actions import Action, ProcessNice, ProcessRlimit
from guardrails.decision import Decision
from healer.act.base import require_allow, require_original, translate_os_error
from healer.errors import ActuatorError
from healer.models import ActionRecord

RESOURCES: dict[str, int] = {
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "memlock": resource.RLIMIT_MEMLOCK,
    "core": resource.RLIMIT_CORE,
    "stack": resource.RLIMIT_STACK,
}
UNLIMITED = "unlimited"  # journal spelling of RLIM_INFINITY, as prlimit(1) prints it


def start_time(pid: int, procfs_root: Path = Path("/proc")) -> int | None:
    """When ``pid`` started, in clock ticks after boot (proc(5): /proc/<pid>/stat field 22);
    None when no such process exists. (pid, start time) names one process."""
    try:
        text = (procfs_root / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # Field 2 (comm) is parenthesised and may itself hold spaces and ')': the fixed fields
    # resume after the last ')', with field 3 (state) first, so field 22 is index 19.
    rest = text[text.rfind(")") + 1:].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def _check_scope(action: ProcessRlimit | ProcessNice) -> None:
    if action.scope not in ("host", f"pid:{action.pid}"):
        raise ActuatorError(action.scope, action.target, "process knobs act in their pid scope")


class _Pinned:
    """(pid, start time) identity for process actuators: a reused pid is another process."""

    def __init__(self, procfs_root: Path = Path("/proc")) -> None:
        self._procfs = procfs_root

    def _alive(self, action: ProcessRlimit | ProcessNice) -> bool:
        started = start_time(action.pid, self._procfs)
        return started is not None and action.start_time in (None, started)

    def pin(self, action: Action) -> Action:
        """The action with its process's start time; ActuatorError when the process is gone
        or a start time it already names belongs to a process that no longer exists."""
        if not isinstance(action, ProcessRlimit | ProcessNice):
            return action
        started = start_time(action.pid, self._procfs)
        if started is None or action.start_time not in (None, started):
            raise ActuatorError(action.scope, action.target, "process is gone")
        return action.model_copy(update={"start_time": started})

    def _gone(self, action: ProcessRlimit | ProcessNice) -> ActuatorError:
        return ActuatorError(action.scope, action.target,
                             "process is gone (its pid is free or now names another process)")


def _fmt(limit: int) -> str:
    return UNLIMITED if limit == resource.RLIM_INFINITY else str(limit)


def _parse(value: str) -> int:
    return resource.RLIM_INFINITY if value == UNLIMITED else int(value)


class RlimitActuator(_Pinned):
    """``process_rlimit``: changes the soft limit only; the hard limit is left as it is."""

    kinds: tuple[str, ...] = ("process_rlimit",)

    def _limits(self, action: ProcessRlimit) -> tuple[int, int] | None:
        if not self._alive(action):
            return None
        try:
            return resource.prlimit(action.pid, RESOURCES[action.resource])
        except ProcessLookupError:
            return None
        except OSError as exc:
            raise translate_os_error(action.scope, action.target, exc, "prlimit") from exc

    def _action(self, action: Action) -> ProcessRlimit:
        if not isinstance(action, ProcessRlimit):
            raise ActuatorError(action.scope, action.target, "not an rlimit action")
        _check_scope(action)
        return action

    def read(self, action: Action) -> str | None:
        """The soft limit, or None when the process is gone."""
        limits = self._limits(self._action(action))
        return _fmt(limits[0]) if limits else None

    def in_action_units(self, action: Action, value: str) -> str:
        """Limits need no translation."""
        return value

    def facts(self, action: Action) -> dict[str, float]:
        """The hard limit, the ceiling any soft limit may reach (getrlimit(2))."""
        limits = self._limits(self._action(action))
        if limits is None:
            return {}
        hard = limits[1]
        return {"hard_limit": float("inf") if hard == resource.RLIM_INFINITY else float(hard)}

    def apply(self, action: Action, decision: Decision) -> str:
        """Set the soft limit (only under an allow) and return the read-back."""
        require_allow(action, decision)
        rl = self._action(action)
        return self._set_soft(rl, rl.soft)

    def restore(self, record: ActionRecord) -> str:
        """Put the original soft limit back and return the read-back."""
        return self._set_soft(self._action(record.action), _parse(require_original(record)))

    def _set_soft(self, action: ProcessRlimit, soft: int) -> str:
        limits = self._limits(action)
        if limits is None:
            raise self._gone(action)
        if limits[0] != soft:
            try:
                resource.prlimit(action.pid, RESOURCES[action.resource], (soft, limits[1]))
            except ProcessLookupError as exc:
                raise ActuatorError(action.scope, action.target, "process is gone") from exc
            except (OSError, ValueError) as exc:
                if isinstance(exc, OSError):
                    raise translate_os_error(action.scope, action.target, exc, "prlimit") from exc
                raise ActuatorError(action.scope, action.target, f"prlimit: {exc}") from exc
        back = self._limits(action)
        if back is None:
            raise ActuatorError(action.scope, action.target, "process is gone")
        return _fmt(back[0])


class NiceActuator(_Pinned):
    """``process_nice``: the pid's nice value (setpriority(2) with PRIO_PROCESS).

    On Linux nice is per thread; PRIO_PROCESS with a pid changes that task (the main thread)
    only, as setpriority(2) BUGS explains. Threads started later inherit it.
    """

    kinds: tuple[str, ...] = ("process_nice",)

    def _action(self, action: Action) -> ProcessNice:
        if not isinstance(action, ProcessNice):
            raise ActuatorError(action.scope, action.target, "not a nice action")
        _check_scope(action)
        return action

    def read(self, action: Action) -> str | None:
        """The nice value, or None when the process is gone."""
        pn = self._action(action)
        if not self._alive(pn):
            return None
        try:
            return str(os.getpriority(os.PRIO_PROCESS, pn.pid))
        except ProcessLookupError:
            return None

    def in_action_units(self, action: Action, value: str) -> str:
        """Nice values need no translation."""
        return value

    def facts(self, action: Action) -> dict[str, float]:
        """No extra limits: the range -20..19 is in the action type."""
        return {}

    def apply(self, action: Action, decision: Decision) -> str:
        """Set the nice value (only under an allow) and return the read-back."""
        require_allow(action, decision)
        pn = self._action(action)
        return self._set(pn, pn.nice)

    def restore(self, record: ActionRecord) -> str:
        """Put the original nice value back and return the read-back."""
        return self._set(self._action(record.action), int(require_original(record)))

    def _set(self, action: ProcessNice, nice: int) -> str:
        if not self._alive(action):
            raise self._gone(action)
        try:
            if os.getpriority(os.PRIO_PROCESS, action.pid) != nice:
                os.setpriority(os.PRIO_PROCESS, action.pid, nice)
            return str(os.getpriority(os.PRIO_PROCESS, action.pid))
        except ProcessLookupError as exc:
            raise ActuatorError(action.scope, action.target, "process is gone") from exc
        except OSError as exc:
            raise translate_os_error(action.scope, action.target, exc, "setpriority") from exc
