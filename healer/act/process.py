"""Per-process knobs: soft resource limits through prlimit(2), and nice through setpriority(2)."""

from __future__ import annotations

import os
import resource

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


def _check_scope(action: ProcessRlimit | ProcessNice) -> None:
    if action.scope not in ("host", f"pid:{action.pid}"):
        raise ActuatorError(action.scope, action.target, "process knobs act in their pid scope")


def _fmt(limit: int) -> str:
    return UNLIMITED if limit == resource.RLIM_INFINITY else str(limit)


def _parse(value: str) -> int:
    return resource.RLIM_INFINITY if value == UNLIMITED else int(value)


class RlimitActuator:
    """``process_rlimit``: changes the soft limit only; the hard limit is left as it is."""

    kinds: tuple[str, ...] = ("process_rlimit",)

    def _limits(self, action: ProcessRlimit) -> tuple[int, int] | None:
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
            raise ActuatorError(action.scope, action.target, "process is gone")
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


class NiceActuator:
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
        try:
            if os.getpriority(os.PRIO_PROCESS, action.pid) != nice:
                os.setpriority(os.PRIO_PROCESS, action.pid, nice)
            return str(os.getpriority(os.PRIO_PROCESS, action.pid))
        except ProcessLookupError as exc:
            raise ActuatorError(action.scope, action.target, "process is gone") from exc
        except OSError as exc:
            raise translate_os_error(action.scope, action.target, exc, "setpriority") from exc
