"""History rules: cooldown and rate limit per target, and no repeat of a rolled-back value.

``context.history`` is the journal's earlier actions (never the one being checked).
Only states in ``policy.limits.counted_states`` count as changes that happened.
A rollback counts as "this value was bad" only when it was ``judged`` (a regression, a
failed or timed-out verification, an operator's rollback); a crash-recovery restore of a
change nobody confirmed still counts for cooldown and rate, but not against the value.

The cooldown keeps unrelated changes of one target apart. The steps of one convergence
(a capacity raise stepped again because its verdict was "insufficient") are one remedy:
a kept step starts no cooldown for the next step of the same convergence. It still counts
toward ``max_per_target_per_hour``, and every other rule holds as for any change.
"""

from __future__ import annotations

from collections.abc import Iterator

from guardrails.bounds import Numbers, parse_numbers
from guardrails.context import CheckContext, HistoryEntry
from guardrails.policy import Limits

_HOUR = 3600.0


def history_reasons(
    target: str, values: Numbers | None, ctx: CheckContext, limits: Limits
) -> Iterator[tuple[str, str]]:
    """(reason, rule) for each history rule a change of ``target`` to ``values`` breaks."""
    counted = limits.counted_states
    newest: float | None = None
    in_hour = 0
    repeat = False
    for entry in ctx.history:
        if entry.target != target:
            continue
        age = (ctx.now - entry.ts).total_seconds()
        if entry.state in counted:
            in_hour += age < _HOUR
            if not _same_remedy(entry, ctx):
                newest = age if newest is None else min(newest, age)
        if (
            entry.state == "rolled_back"
            and entry.judged
            and age < limits.rollback_memory_seconds
            and values is not None
            and parse_numbers(entry.value) == values
        ):
            repeat = True
    if newest is not None and newest < limits.cooldown_seconds:
        ago, cooldown = max(newest, 0.0), limits.cooldown_seconds
        yield (f"cooldown: {target} changed {ago:.0f}s ago (cooldown {cooldown:g}s)", "R-cooldown")
    if in_hour >= limits.max_per_target_per_hour:
        yield (
            f"rate limit: {in_hour} changes of {target} in the last hour "
            f"(max {limits.max_per_target_per_hour})",
            "R-rate",
        )
    if repeat:
        yield (f"{target} was rolled back from this value recently", "R-repeat-rollback")


def _same_remedy(entry: HistoryEntry, ctx: CheckContext) -> bool:
    """The entry is a kept earlier step of the convergence the checked change continues."""
    return (
        ctx.convergence is not None
        and entry.convergence == ctx.convergence
        and entry.state == "verified"
    )
