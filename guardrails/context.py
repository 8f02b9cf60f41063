"""Everything ``check`` needs to know about the world, passed in as one frozen value.

``check`` does no I/O: the caller reads the live value, the journal history and the
clock, and hands them over here. Frozen slotted dataclasses (not pydantic) keep the
hot path cheap; invariants that ``check`` relies on are enforced at construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal

Mode = Literal["observe", "advise", "auto"]
MODES: tuple[Mode, ...] = ("observe", "advise", "auto")
PROVENANCES = ("playbook", "llm", "operator")

_EMPTY_FACTS: Mapping[str, float] = MappingProxyType({})


def _require_aware(name: str, ts: datetime) -> None:
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {ts!r}")


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One earlier action on a target, as the journal recorded it."""

    target: str  # Action.target: "kind:scope:key"
    ts: datetime  # when it was applied (or last changed state), tz-aware
    state: str  # ActionState value, e.g. "verified", "rolled_back"
    value: str | None = None  # the value it set, as written
    # False when it was undone without a verdict on its value (a crash-recovery restore of
    # an unconfirmed change): R-repeat-rollback does not hold such a value against a retry.
    judged: bool = True
    # Set when this change was kept as a step of a convergence whose verdict was
    # "insufficient" (the convergence's key, e.g. "incident:42"): the next step of the same
    # convergence is the same remedy, so this entry starts no cooldown for it.
    convergence: str | None = None

    def __post_init__(self) -> None:
        _require_aware("HistoryEntry.ts", self.ts)


@dataclass(frozen=True, slots=True)
class CheckContext:
    """The arguments of one guard decision besides the action and the policy."""

    now: datetime
    mode: Mode = "auto"
    provenance: Literal["playbook", "llm", "operator"] = "playbook"
    # True only for one of the playbook's own remedies; the default is the safe side:
    # outside the playbook, never automatic.
    in_playbook: bool = False
    # The live value as the actuator read it; None when unknown.
    current: str | None = None
    # Numbers the bounds refer to: hard_limit, gpu_min_watts, gpu_max_watts,
    # host_memory_bytes, cgroup_budget_bytes, peak_bytes, ...
    facts: Mapping[str, float] = field(default_factory=lambda: _EMPTY_FACTS)
    # Did the sysctl exist under the scope's /proc/sys? None: not checked.
    key_exists: bool | None = None
    history: Sequence[HistoryEntry] = ()
    changes_this_cycle: int = 0
    changes_last_hour: int = 0
    # Targets where an administrator's value superseded ours: automation paused.
    paused_targets: frozenset[str] = frozenset()
    # Distinct approver names so far; quorum:N needs N of them.
    approvals: tuple[str, ...] = ()
    # If non-empty, the only scopes healer may act in (sandboxes); see check.confine.
    confine: tuple[str, ...] = ()
    # Without root nothing can be applied: the mode is capped at advise.
    root: bool = True
    # The convergence this change is the next step of (HistoryEntry.convergence); None: none.
    convergence: str | None = None

    def __post_init__(self) -> None:
        _require_aware("CheckContext.now", self.now)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"provenance must be one of {PROVENANCES}, got {self.provenance!r}")
        for entry in self.history:
            if not isinstance(entry, HistoryEntry):
                raise ValueError(f"history entries must be HistoryEntry, got {entry!r}")
