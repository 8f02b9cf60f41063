"""Kernel-log text is attacker-controlled: bounded regex time, malformed records skipped."""

from __future__ import annotations

import re
import time

import pytest

from healer.detect import Detector
from healer.models import KmsgRecord, Sample
from playbooks.loader import load_library
from playbooks.schema import Kmsg
from tests.detect.fakes import FIXTURES, FakeWindow, fixture_records, kmsg_line

BOUND_S = 0.05  # generous for CI; catastrophic backtracking takes seconds or more


def _patterns() -> list[tuple[str, str]]:
    out = []
    for pb in load_library():
        for sig in pb.detect.signals:
            if isinstance(sig, Kmsg):
                out.append((sig.contains, sig.regex))
                out += [(c.contains, c.regex) for c in sig.context]
    return sorted(set(out))


PATTERNS = _patterns()


def _hostile(literal: str) -> list[str]:
    """10 kB lines built to make a backtracking regex explode after the literal matches."""
    return [
        literal + "A" * 10_000,
        literal + " " * 10_000,
        literal + "0" * 10_000,
        literal + ":" * 10_000,
        literal + "(" * 5_000 + ")" * 5_000,
        literal + "[" + "a:" * 5_000,
        (literal + " ") * (10_000 // (len(literal) + 1)),  # repeated groups
        literal[:-1] + "\u00e9" + "x" * 10_000,  # near-miss prefix
        "NVRM: Xid (PCI:0000:3b:00): " + "1" * 10_000,
        "Memory cgroup out of memory: Killed process 1 (" + "x" * 10_000,
        "INFO: task " + "a:" * 5_000 + " blocked for more than 1 seconds.",
        "BUG: soft lockup - CPU#1 stuck for 1s! [" + ":" * 10_000,
        "oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/" + "a" * 10_000,
    ]


@pytest.mark.parametrize(("literal", "regex"), PATTERNS, ids=[p[0] for p in PATTERNS])
def test_every_library_regex_runs_in_bounded_time_on_hostile_lines(literal: str,
                                                                   regex: str) -> None:
    compiled = re.compile(regex)
    for line in _hostile(literal):
        started = time.perf_counter()
        compiled.search(line)
        elapsed = time.perf_counter() - started
        assert elapsed < BOUND_S, f"{regex!r}: {elapsed * 1000:.1f} ms on {len(line)} chars"


def test_the_full_detector_handles_a_cycle_of_hostile_lines_quickly() -> None:
    detector = Detector(load_library())
    lines = tuple(kmsg_line(text, seq=i)
                  for i, text in enumerate(t for lit, _ in PATTERNS for t in _hostile(lit)))
    window = FakeWindow()
    sample = Sample(ts=1.0, metrics={}, kmsg=lines)
    window.append(sample)
    started = time.perf_counter()
    detector.observe(window, sample)
    per_line = (time.perf_counter() - started) / len(lines)
    assert per_line < BOUND_S


def test_the_prefilter_never_hides_a_match_in_the_recorded_lines() -> None:
    lines = [r.message for f in sorted(FIXTURES.glob("*.kmsg")) for r in fixture_records(f.name)]
    matched = 0
    for literal, regex in PATTERNS:
        for line in lines:
            if re.search(regex, line):
                matched += 1
                assert literal in line, (literal, line)
    assert matched >= len(PATTERNS)


def test_malformed_records_are_counted_and_skipped_never_fatal() -> None:
    detector = Detector(load_library())
    good = kmsg_line("watchdog: BUG: soft lockup - CPU#3 stuck for 23s! [stress:999]", seq=3)
    bad = (
        KmsgRecord.model_construct(seq=1, priority=4, ts_us=1, message=None),  # type: ignore[arg-type]
        kmsg_line("soft lockup - CPU#1 \x00 stuck", seq=2),
        kmsg_line("soft lockup - CPU#" + "9" * 20_000, seq=4),
    )
    window = FakeWindow()
    sample = Sample.model_construct(ts=1.0, metrics={}, kmsg=(*bad, good), gpus=(),
                                    processes=None, collector_errors=())
    window.append(sample)
    events = detector.observe(window, sample)
    assert detector.malformed == 3
    assert [(e.playbook_id, e.count) for e in events] == [("soft-lockup", 1)]


def test_a_crafted_systemd_scope_hitting_tasksmax_cannot_freeze_detection() -> None:
    # The review's finding: a local user names a scope like this and lets it hit TasksMax;
    # the pids playbook captures the path from the kernel line, and the old scope regex
    # backtracked for minutes on it (holding the GIL: no sampling, no /healthz, no SIGTERM).
    crafted = "/user.slice/user-1000.slice/user@1000.service/app.slice/" + "a.b-c" * 8 + "+"
    detector = Detector(load_library())
    window = FakeWindow()
    lines = [kmsg_line(f"cgroup: fork rejected by pids controller in {crafted * k}", seq=k)
             for k in range(1, 40)]
    sample = Sample(ts=1000.0, metrics={}, kmsg=tuple(lines))
    window.append(sample)
    started = time.perf_counter()
    events = detector.observe(window, sample)
    assert time.perf_counter() - started < 1.0
    assert all(e.scope == "host" for e in events if e.playbook_id == "pids-limit-too-low")
    assert detector.bad_scopes >= 1
