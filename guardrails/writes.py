"""The checks every write of a journal value passes, restores included: ``check_write``.

A rollback, a crash-recovery restore and ``healer rollback`` write back the value the
journal recorded before the change (its *journal form*: what the actuator read). That
value comes from the database, so it is input like any other: anyone who can write the
database must not be able to make healer write, say, a pipe into ``kernel.core_pattern``.
Before any restore, the original must therefore

- parse under its kind's value grammar (the journal forms below), and
- pass the rules that hold whoever asks: shape, confinement, protected keys and targets.

Range bounds, steps and approvals do not apply: putting back the operator's own value is
the point of a rollback, even when that value is outside what healer would choose.
``healer persist`` passes the same checks before it writes a value into the sysctl
drop-in. Pure and total, like ``check``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guardrails import linear
from guardrails.actions import (
    COMPUTE_MODES,
    TIMESLICE_LEVELS,
    Action,
    CgroupLimit,
    Escalate,
    GpuComputeMode,
    GpuLockedClocks,
    GpuMpsThreadPercentage,
    GpuPowerLimit,
    GpuTimeslice,
    Notify,
    ProcessNice,
    ProcessRlimit,
    SysctlWrite,
    check_cgroup_value,
    check_sysctl_value,
)
from guardrails.decision import Decision
from guardrails.policy import Policy
from guardrails.scopes import confine_reasons, shape_reasons

_RLIMIT_RE = linear.compile(r"^(?:unlimited|[0-9]{1,20})$")
_NICE_RE = linear.compile(r"^-?[0-9]{1,2}$")
_WATTS_RE = linear.compile(r"^[0-9]{1,4}(?:\.[0-9]{1,17})?$")
_CLOCKS_RE = linear.compile(r"^(?:unlocked|[0-9]{1,4}-[0-9]{1,4})$")
_PERCENT_RE = linear.compile(r"^[0-9]{1,3}$")


def _rlimit(v: str) -> None:
    if not _RLIMIT_RE.match(v) or (v != "unlimited" and int(v) >= 2**64):
        raise ValueError("an rlimit is an integer or 'unlimited'")


def _nice(v: str) -> None:
    if not _NICE_RE.match(v) or not -20 <= int(v) <= 19:
        raise ValueError("a nice value is an integer in [-20, 19]")


def _watts(v: str) -> None:
    if not _WATTS_RE.match(v) or not 0 < float(v) <= 2000:
        raise ValueError("a power limit is a number of watts in (0, 2000]")


def _clocks(v: str) -> None:
    if not _CLOCKS_RE.match(v):
        raise ValueError("locked clocks are 'unlocked' or 'min-max' in MHz")


def _percent(v: str) -> None:
    if not _PERCENT_RE.match(v) or not 1 <= int(v) <= 100:
        raise ValueError("an MPS thread percentage is an integer in [1, 100]")


def _one_of(names: tuple[str, ...]) -> Callable[[str], None]:
    def check(v: str) -> None:
        if v not in names:
            raise ValueError(f"must be one of {', '.join(names)}")

    return check


def _message(v: str) -> None:
    return None  # a notification changes nothing, so there is nothing to write back


# The journal form each actuator reads and writes back (healer/act/*.py), per kind.
_GRAMMAR: dict[type, Callable[[str], Any]] = {
    SysctlWrite: check_sysctl_value,
    CgroupLimit: check_cgroup_value,
    ProcessRlimit: _rlimit,
    ProcessNice: _nice,
    GpuPowerLimit: _watts,
    GpuLockedClocks: _clocks,
    GpuComputeMode: _one_of(COMPUTE_MODES),
    GpuMpsThreadPercentage: _percent,
    GpuTimeslice: _one_of(TIMESLICE_LEVELS),
    Notify: _message,
    Escalate: _message,
}
_REASON_MAX = 400


def check_write(action: Action, value: str, policy: Policy,
                confine: tuple[str, ...] = ()) -> Decision:
    """``allow`` when writing journal value ``value`` for ``action`` passes every hard rule."""
    original = value
    reasons: list[tuple[str, str]] = []
    grammar = _GRAMMAR.get(type(action))
    if grammar is None:
        reasons.append((f"not a catalog action: {type(action).__name__}", "P-parse"))
    else:
        try:
            grammar(original)
        except ValueError as exc:
            reasons.append((f"value {original[:40]!r} refused: {exc}", "P-grammar"))
    reasons += [(r, "P-shape") for r in shape_reasons(action)]
    if not isinstance(action, Notify | Escalate):
        reasons += [(r, "P-confine") for r in confine_reasons(action, confine)]
    if isinstance(action, SysctlWrite) and policy.is_protected(action.key):
        reasons.append((f"{action.key} is a protected key", "P-protected"))
    if policy.is_protected_target(action.target):
        reasons.append((f"{action.target} is a protected target", "P-protected-target"))
    if reasons:
        rules = tuple(dict.fromkeys(rule for _, rule in reasons))
        return Decision(verdict="deny", reasons=tuple(r[:_REASON_MAX] for r, _ in reasons),
                        rules=rules)
    return Decision(verdict="allow", reasons=(f"writing back {action.target} passes",),
                    rules=("P-write",))
