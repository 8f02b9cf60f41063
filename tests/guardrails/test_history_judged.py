"""R-repeat-rollback holds only judged rollbacks; a crash-recovery restore was never judged."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from guardrails import Decision, HistoryEntry

from .conftest import NOW, sysctl

Decide = Callable[..., Decision]
SOMAXCONN = sysctl("net.core.somaxconn", "4096", "netns:chaos-1")
TARGET = "sysctl_write:netns:chaos-1:net.core.somaxconn"


def rolled_back(seconds: float, *, judged: bool, value: str = "4096") -> HistoryEntry:
    return HistoryEntry(target=TARGET, ts=NOW - timedelta(seconds=seconds), state="rolled_back",
                        value=value, judged=judged)


def test_history_entries_are_judged_unless_said_otherwise() -> None:
    assert HistoryEntry(target=TARGET, ts=NOW, state="verified").judged is True


def test_a_crash_recovery_restore_does_not_block_the_same_value(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="16", history=(rolled_back(3600, judged=False),))
    assert d.verdict == "allow"


def test_a_judged_rollback_of_the_same_value_still_blocks_it(decide: Decide) -> None:
    history = (rolled_back(7200, judged=True), rolled_back(3600, judged=False))
    d = decide(SOMAXCONN, current="16", history=history)
    assert d.verdict == "deny" and d.rules == ("R-repeat-rollback",)


def test_a_crash_recovery_restore_still_counts_for_the_cooldown(decide: Decide) -> None:
    d = decide(SOMAXCONN, current="16", history=(rolled_back(60, judged=False),))
    assert d.verdict == "deny" and d.rules == ("R-cooldown",)
