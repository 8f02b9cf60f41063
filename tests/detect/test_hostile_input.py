"""Kernel-log text is attacker-controlled: linear-time (RE2) matching, malformed records
skipped."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from guardrails import linear
from healer.cli.main import main
from healer.detect import Detector
from healer.models import KmsgRecord, Sample
from playbooks.loader import DEFAULT_DIR, load_library, validate_dir
from playbooks.schema import Kmsg
from tests.detect.fakes import FIXTURES, FakeWindow, fixture_records, kmsg_line

BOUND_S = 0.05  # generous for CI; catastrophic backtracking takes seconds or more
CORPUS = FIXTURES.parent / "kernel-corpus" / "lines.jsonl"


def _patterns() -> list[tuple[str, str]]:
    out = []
    for pb in load_library():
        for sig in pb.detect.signals:
            if isinstance(sig, Kmsg):
                out += [(lit, sig.regex) for lit in sig.literals]
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
    compiled = linear.compile(regex)
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


def _recorded_lines() -> list[str]:
    lines = [r.message for f in sorted(FIXTURES.glob("*.kmsg")) for r in fixture_records(f.name)]
    if CORPUS.exists():
        lines += [json.loads(t)["message"] for t in CORPUS.read_text().splitlines() if t.strip()]
    return lines


def test_the_prefilter_never_hides_a_match_and_every_pattern_meets_a_real_line() -> None:
    """A line a pattern matches holds one of its literals (the one-pass pre-filter cannot
    skip it); and every pattern matches a recorded line (fixtures, corpus)."""
    lines = _recorded_lines()
    unmatched = []
    for regex in sorted({rx for _, rx in PATTERNS}):
        compiled = linear.compile(regex)
        literals = {lit for lit, rx in PATTERNS if rx == regex}
        hits = [line for line in lines if compiled.search(line)]
        for line in hits:
            assert any(lit in line for lit in literals), (literals, line)
        if not hits:
            unmatched.append(regex)
    assert unmatched == []


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
    quiet = Sample(ts=4.0, metrics={})  # the soft-lockup report closes after 2 s of silence
    window.append(quiet)
    events += detector.observe(window, quiet)
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


# The scope ReDoS of the hardening review: catastrophic for a backtracking engine (a
# 40-character path took 17 s with Python's re; this one never returns), linear for RE2.
REDOS = r"^(?:[A-Za-z0-9_.@:-]+/?)*$"
REDOS_LINE = ("/user.slice/user-1000.slice/user@1000.service/app.slice/" + "a.b-c" * 8 + "+")


def _playbook_with(tmp_path: Path, regex: str) -> Path:
    text = (DEFAULT_DIR / "soft-lockup.yaml").read_text()
    old = next(ln for ln in text.splitlines() if ln.strip().startswith("regex: 'BUG: soft"))
    indent = old[: len(old) - len(old.lstrip())]
    (tmp_path / "soft-lockup.yaml").write_text(text.replace(old, f"{indent}regex: '{regex}'"))
    return tmp_path


def test_a_catastrophic_pattern_runs_in_linear_time_in_the_detector(tmp_path: Path) -> None:
    regex = r"soft lockup (?P<path>(?:[A-Za-z0-9_.@:-]+/?)*)$"
    library = load_library(_playbook_with(tmp_path, regex))
    detector = Detector(library)
    lines = tuple(kmsg_line("soft lockup " + REDOS_LINE * k, seq=k) for k in range(1, 60))
    window = FakeWindow()
    sample = Sample(ts=1.0, metrics={}, kmsg=lines)
    window.append(sample)
    started = time.perf_counter()
    detector.observe(window, sample)
    assert time.perf_counter() - started < 1.0  # backtracking: beyond any timeout


@pytest.mark.parametrize("text", [REDOS_LINE, "(" * 30 + "a" * 30 + "!", "a" * 5000 + "!"])
def test_re2_answers_nested_quantifiers_in_linear_time(text: str) -> None:
    compiled = linear.compile(REDOS)
    started = time.perf_counter()
    compiled.search(text)
    assert time.perf_counter() - started < BOUND_S


@pytest.mark.parametrize(("regex", "problem"), [
    (r"Xid (?P<xid>[0-9]{1,3})(?![0-9])", "(?!"),  # the old shipped Xid lookahead
    (r"(?<=task )(?P<pid>[0-9]+)", "(?<"),
    (r"(?P<a>x)(?P=a)", "(?P="),  # a backreference
])
def test_playbook_validate_rejects_what_re2_cannot_run(tmp_path: Path, regex: str,
                                                       problem: str,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    path = _playbook_with(tmp_path, regex)
    _, errors = validate_dir(path)
    assert len(errors) == 1
    assert errors[0].startswith(f"{path}/soft-lockup.yaml:")
    assert "detect.any.0.regex: invalid regex (RE2" in errors[0] and "\n" not in errors[0]
    assert main(["playbooks", "validate", str(path)]) == 1
    out = capsys.readouterr()
    assert "soft-lockup.yaml" in out.out + out.err and "detect.any.0.regex" in out.out + out.err
