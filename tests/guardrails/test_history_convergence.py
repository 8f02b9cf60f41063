"""One convergence's steps are one remedy: a kept "insufficient" step starts no cooldown for
the next step of the same convergence. The hourly cap, the ceiling and every other rule
still hold, and nothing else escapes the cooldown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from guardrails import Decision, HistoryEntry

from .conftest import NOW, sysctl

Decide = Callable[..., Decision]
TARGET = "sysctl_write:netns:chaos-1:net.core.somaxconn"
KEY = "convergence:41"


def step(seconds: float, *, state: str = "verified", convergence: str | None = KEY,
         value: str = "4096") -> HistoryEntry:
    return HistoryEntry(target=TARGET, ts=NOW - timedelta(seconds=seconds), state=state,
                        value=value, convergence=convergence)


def somaxconn(value: str) -> dict[str, str]:
    return sysctl("net.core.somaxconn", value, "netns:chaos-1")


def test_the_next_step_of_the_same_convergence_is_not_held_by_the_cooldown(
        decide: Decide) -> None:
    d = decide(somaxconn("8192"), current="4096", history=(step(5),), convergence=KEY)
    assert d.verdict == "allow", d.reasons


def test_an_unrelated_change_of_the_target_is_still_held_by_the_cooldown(
        decide: Decide) -> None:
    d = decide(somaxconn("8192"), current="4096", history=(step(5),))  # not a next step
    assert d.verdict == "deny" and d.rules == ("R-cooldown",)
    other = decide(somaxconn("8192"), current="4096", history=(step(5),),
                   convergence="convergence:7")  # another convergence's step
    assert other.verdict == "deny" and other.rules == ("R-cooldown",)


def test_a_step_that_was_not_kept_as_insufficient_still_starts_the_cooldown(
        decide: Decide) -> None:
    plain = step(5, convergence=None)  # the journal marks only kept insufficient steps
    rolled = step(5, state="rolled_back")  # kept no longer: a person or a regression undid it
    for entry in (plain, rolled):
        d = decide(somaxconn("8192"), current="4096", history=(entry,), convergence=KEY)
        assert d.verdict == "deny" and "R-cooldown" in d.rules, entry


def test_the_hourly_cap_counts_every_step_of_a_convergence(decide: Decide) -> None:
    history = tuple(step(600 * i + 5, value=str(1024 * 2**i)) for i in range(4))
    d = decide(somaxconn("32768"), current="16384", history=history, convergence=KEY)
    assert d.verdict == "deny" and d.rules == ("R-rate",)
    assert "4 changes" in d.reasons[0]


def test_a_next_step_past_the_range_or_the_step_bound_is_not_allowed(decide: Decide) -> None:
    past_range = decide(somaxconn("70000"), current="40000", history=(step(5),),
                        convergence=KEY)
    assert past_range.verdict == "deny" and "S-somaxconn" in past_range.rules
    past_step = decide(somaxconn("40000"), current="4096", history=(step(5),), convergence=KEY)
    assert past_step.verdict == "needs_approval" and "S-somaxconn" in past_step.rules
