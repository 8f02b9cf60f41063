"""Kernel-log matching: one pass of literal pre-filters, then each regex compiled once.

Signals that share a literal and a regex (every Xid playbook reads ``NVRM: Xid``) share
one match per line and are told apart by their ``where`` filters. Lines are untrusted:
the library's regexes use bounded quantifiers, and ``tests/detect`` holds them to a time
bound on hostile input (10 kB lines, near-miss prefixes, repeated groups).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from healer.models import KmsgRecord
from playbooks.schema import Kmsg

SigKey = tuple[int, int]  # (playbook index, signal index)
MAX_MESSAGE_CHARS = 16384  # /dev/kmsg records are < 1 kB (LOG_LINE_MAX); longer is malformed
KEEP_LINES = 20


@dataclass
class KmsgAgg:
    """Matches of one signal with one set of captures in one scan."""

    captures: dict[str, str]
    count: int = 0
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=KEEP_LINES))


@dataclass
class _Subscriber:
    key: SigKey
    where: dict[str, frozenset[str]]
    contexts: tuple[int, ...]  # context slot ids merged into each match


@dataclass
class _Pattern:
    regex: re.Pattern[str]
    subscribers: list[_Subscriber] = field(default_factory=list)
    context_slot: int | None = None  # set when this pattern feeds a context slot


@dataclass(frozen=True)
class _ContextSpec:
    max_lines: int


class KmsgMatcher:
    """Scans records for every kmsg signal of the library; keeps context between scans."""

    def __init__(self, signals: Iterable[tuple[SigKey, Kmsg]]) -> None:
        self._groups: dict[str, dict[str, _Pattern]] = {}  # literal -> regex text -> pattern
        self._ctx_specs: list[_ContextSpec] = []
        self._ctx_state: list[tuple[int, dict[str, str]] | None] = []
        self._lineno = 0
        self.malformed = 0
        for key, sig in signals:
            slots = tuple(self._add_context(c.contains, c.regex, c.max_lines) for c in sig.context)
            where = {k: frozenset(v) for k, v in sig.where.items()}
            self._pattern(sig.contains, sig.regex).subscribers.append(
                _Subscriber(key, where, slots))
        self._ordered = [(lit, list(pats.values())) for lit, pats in self._groups.items()]

    def _pattern(self, literal: str, regex: str) -> _Pattern:
        pats = self._groups.setdefault(literal, {})
        if regex not in pats:
            pats[regex] = _Pattern(re.compile(regex))
        return pats[regex]

    def _add_context(self, literal: str, regex: str, max_lines: int) -> int:
        # A context pattern gets its own entry (even when its text repeats) so its slot is its own.
        pats = self._groups.setdefault(literal, {})
        slot = len(self._ctx_specs)
        pats[f"ctx{slot}\0{regex}"] = _Pattern(re.compile(regex), context_slot=slot)
        self._ctx_specs.append(_ContextSpec(max_lines))
        self._ctx_state.append(None)
        return slot

    @property
    def literals(self) -> list[str]:
        """The distinct pre-filter literals, one substring test each per line."""
        return [lit for lit, _ in self._ordered]

    def scan(self, records: Sequence[KmsgRecord]) -> dict[SigKey, dict[tuple[tuple[str, str], ...],
                                                                       KmsgAgg]]:
        """Match new records in order; malformed ones are counted in ``malformed`` and skipped."""
        out: dict[SigKey, dict[tuple[tuple[str, str], ...], KmsgAgg]] = {}
        ordered = self._ordered
        for rec in records:
            msg = getattr(rec, "message", None)
            if not isinstance(msg, str) or len(msg) > MAX_MESSAGE_CHARS or "\x00" in msg:
                self.malformed += 1
                continue
            self._lineno += 1
            for literal, patterns in ordered:
                if literal in msg:
                    for pat in patterns:
                        self._apply(pat, msg, out)
        return out

    def _apply(self, pat: _Pattern, msg: str, out: dict[SigKey, dict[tuple[tuple[str, str], ...],
                                                                      KmsgAgg]]) -> None:
        m = pat.regex.search(msg)
        if m is None:
            return
        caps = {k: v for k, v in m.groupdict().items() if v is not None}
        if pat.context_slot is not None:
            self._ctx_state[pat.context_slot] = (self._lineno, caps)
            return
        for sub in pat.subscribers:
            if any(caps.get(k) not in allowed for k, allowed in sub.where.items()):
                continue
            merged = caps
            for slot in sub.contexts:
                state = self._ctx_state[slot]
                if state is not None and self._lineno - state[0] <= self._ctx_specs[slot].max_lines:
                    merged = {**state[1], **merged}
            aggs = out.setdefault(sub.key, {})
            ckey = tuple(sorted(merged.items()))
            agg = aggs.get(ckey)
            if agg is None:
                agg = aggs[ckey] = KmsgAgg(merged)
            agg.count += 1
            agg.lines.append(msg[:512])
