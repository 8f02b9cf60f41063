"""Kernel-log matching: every playbook pattern over a whole batch at once, and reports.

A cycle's records are joined into one buffer that a single RE2 automaton scans once: the
alternation of every pattern's pre-filter literal, plus the failure vocabulary. Only the
lines it hits (and records at err or worse) are looked at one by one: an RE2 set says
which literals a line holds, and only those literals' regexes run, for their captures.
RE2 costs about 1 us per call, so calls are paid per candidate line, never per line and
pattern. Kernel text is attacker-chosen; every pattern here is RE2 (linear time).

Claims: a line goes to the highest-priority playbook whose pattern (and ``where``) matches
it, so one line is one event. Reports (``playbooks.schema.Report``, ``Kmsg.role``): an OOM
report, an oops or a stall is assembled across cycles into one event; the lines between its
claimed lines are its continuation and open nothing. Kernel-facility records at err or
worse, and warnings in the failure vocabulary, that nothing claims and no report holds are
handed back for the unknown path.
"""

from __future__ import annotations

import itertools
import operator
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from guardrails import linear
from healer.models import KmsgRecord
from playbooks.schema import Kmsg, Playbook, Report

SigKey = tuple[int, int]  # (playbook index, signal index)
CapKey = tuple[tuple[str, str], ...]
Found = dict[SigKey, dict[CapKey, "KmsgAgg"]]
MAX_MESSAGE_CHARS = 16384  # /dev/kmsg records are < 1 kB (LOG_LINE_MAX); longer is malformed
KEEP_LINES = 20  # evidence lines kept per signal and scope, and per report
KERN_FACILITY = 0  # LOG_KERN: printk; user space writing /dev/kmsg gets LOG_USER
LOG_ERR, LOG_WARNING = 3, 4
_message = operator.attrgetter("message")
_priority = operator.attrgetter("priority")
# Per syslog level (0-7, one byte each): 1 where the record is err or worse / a warning.
_IS_ERR = bytes(int(level <= LOG_ERR) for level in range(256))
_IS_WARNING = bytes(int(level == LOG_WARNING) for level in range(256))


@dataclass
class KmsgAgg:
    """Matches of one signal with one set of captures in one scan (a report counts once)."""

    captures: dict[str, str]
    count: int = 0
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=KEEP_LINES))


@dataclass
class ScanResult:
    """What one scan found: events per signal, and the records left for the unknown path."""

    found: Found = field(default_factory=dict)
    unclaimed: list[KmsgRecord] = field(default_factory=list)

    def add(self, key: SigKey, captures: dict[str, str], lines: Iterable[str]) -> None:
        aggs = self.found.setdefault(key, {})
        ckey = tuple(sorted(captures.items()))
        agg = aggs.get(ckey)
        if agg is None:
            agg = aggs[ckey] = KmsgAgg(captures)
        agg.count += 1
        agg.lines.extend(line[:512] for line in lines)


@dataclass(frozen=True)
class _Sub:
    """One kmsg signal listening on a pattern."""

    key: SigKey
    where: dict[str, frozenset[str]]
    contexts: tuple[int, ...]  # context slot ids merged into each match
    role: str
    # (priority, -playbook index, opens, -signal index): the highest claims the line; within
    # one playbook a signal that opens wins over a part, then the first listed.
    rank: tuple[int, int, bool, int]
    report: Report | None


@dataclass
class _Pattern:
    regex: linear.Pattern
    subs: list[_Sub] = field(default_factory=list)
    context_slot: int | None = None  # set when this pattern feeds a context slot
    groups: tuple[tuple[str, int], ...] = ()  # (name, index) of its named groups

    def __post_init__(self) -> None:
        self.groups = tuple(sorted(self.regex.groupindex.items(), key=lambda g: g[1]))

    def captures(self, data: bytes) -> dict[str, str] | None:
        """The named groups of the first match in ``data`` (None: no match)."""
        found = linear.spans(self.regex, data)
        if found is None:
            return None
        return {name: data[a:b].decode("utf-8", "replace") for name, i in self.groups
                for a, b in (found[i],) if a >= 0}


@dataclass
class _Open:
    """A report being assembled."""

    spec: Report
    held: list[tuple[int, str]]  # (line number, text): claimed lines and the first others
    claims: list[tuple[_Sub, dict[str, str]]]
    last_us: int
    arrived: float
    lines: int = 1
    extra: int = 0  # continuation lines held
    opens: bool = False  # holds a start or end line: a report of parts alone opens nothing

    def seen(self, key: SigKey) -> bool:
        return any(sub.key == key for sub, _ in self.claims)


class KmsgMatcher:
    """Scans records for every kmsg signal of the library; keeps context and open reports."""

    def __init__(self, playbooks: Sequence[Playbook],
                 vocabulary: linear.Pattern | None = None) -> None:
        self._literals: dict[str, list[_Pattern]] = {}
        self._patterns: dict[tuple[tuple[str, ...], str], _Pattern] = {}
        self._ctx_max: list[int] = []
        self._ctx_state: list[tuple[int, dict[str, str]] | None] = []
        self._opening: dict[int, SigKey] = {}  # playbook index -> the signal its reports feed
        for pi, pb in enumerate(playbooks):
            for si, sig in enumerate(pb.detect.signals):
                if isinstance(sig, Kmsg):
                    self._subscribe(pi, si, pb, sig)
        self._vocabulary = vocabulary
        literals = list(self._literals)
        self._by_index = [self._literals[lit] for lit in literals]
        self._set = linear.PatternSet([linear.escape(lit) for lit in literals]) if literals \
            else None
        self._prefilter = linear.compile("|".join(linear.escape(lit) for lit in literals)) \
            if literals else None
        self._report: _Open | None = None
        self._lineno = 0
        self.malformed = 0

    def _subscribe(self, pi: int, si: int, pb: Playbook, sig: Kmsg) -> None:
        slots = tuple(self._context(c.contains, c.regex, c.max_lines) for c in sig.context)
        where = {k: frozenset(v) for k, v in sig.where.items()}
        rank = (pb.priority, -pi, sig.role != "part", -si)
        sub = _Sub((pi, si), where, slots, sig.role, rank, pb.report)
        pat = self._patterns.get((sig.literals, sig.regex))
        if pat is None:
            pat = self._patterns[(sig.literals, sig.regex)] = _Pattern(linear.compile(sig.regex))
            for literal in sig.literals:
                self._literals.setdefault(literal, []).append(pat)
        pat.subs.append(sub)
        if sig.role != "part":
            self._opening.setdefault(pi, (pi, si))

    def _context(self, literal: str, regex: str, max_lines: int) -> int:
        # A context pattern gets its own entry (even when its text repeats): its own slot.
        slot = len(self._ctx_max)
        self._literals.setdefault(literal, []).append(
            _Pattern(linear.compile(regex), context_slot=slot))
        self._ctx_max.append(max_lines)
        self._ctx_state.append(None)
        return slot

    @property
    def literals(self) -> list[str]:
        """The distinct pre-filter literals, scanned for in one pass."""
        return list(self._literals)

    def claimant(self, message: str) -> int | None:
        """The index of the playbook that claims ``message`` on its own, if any."""
        claims = self._claims(message, self._lineno)
        return max(claims, key=lambda c: c[0].rank)[0].key[0] if claims else None

    # --- one batch -----------------------------------------------------------------------
    def scan(self, records: Sequence[KmsgRecord], now: float) -> ScanResult:
        """Match new records in order; malformed ones are counted in ``malformed``, skipped."""
        out = ScanResult()
        recs, msgs, joined = self._wellformed(records)
        base, prev = self._lineno, 0
        candidates, literal = self._candidates(recs, msgs, joined)
        for i in candidates:
            self._continue(recs, msgs, base, prev, i, now, out)
            self._line(recs[i], msgs[i], base + i, now, out, i in literal)
            prev = i + 1
        self._continue(recs, msgs, base, prev, len(recs), now, out)
        self._lineno += len(recs)
        rep = self._report
        if rep is not None and now - rep.arrived >= rep.spec.silence_seconds:
            self._close(out)
        return out

    def _wellformed(self, records: Sequence[KmsgRecord]
                    ) -> tuple[list[KmsgRecord], list[str], str]:
        """The records, their messages and the messages joined by newlines; the per-record
        checks run only when the batch as a whole fails them (a non-text message, a NUL,
        an absurd length, a newline inside a message)."""
        recs = list(records)
        try:
            msgs = list(map(_message, recs))
            joined = "\n".join(msgs)
        except (TypeError, AttributeError):
            joined = None
        if joined is not None and "\x00" not in joined and joined.count("\n") == len(msgs) - 1 \
                and (not msgs or max(map(len, msgs)) <= MAX_MESSAGE_CHARS):
            return recs, msgs, joined
        kept_recs, kept = [], []
        for rec in recs:
            msg = getattr(rec, "message", None)
            if not isinstance(msg, str) or len(msg) > MAX_MESSAGE_CHARS or "\x00" in msg:
                self.malformed += 1
                continue
            kept_recs.append(rec)
            kept.append(msg.replace("\n", " "))
        return kept_recs, kept, "\n".join(kept)

    def _candidates(self, recs: list[KmsgRecord], msgs: list[str], joined: str
                    ) -> tuple[list[int], set[int]]:
        """Lines holding a playbook literal, records at err or worse, and warnings in the
        failure vocabulary, in order, each once; and which of them hold a literal."""
        levels = _levels(recs)
        found = set(itertools.compress(range(len(recs)), levels.translate(_IS_ERR)))
        literal = set(_hit_lines(self._prefilter, joined)) if self._prefilter and msgs else set()
        found |= literal
        warnings = list(itertools.compress(range(len(recs)), levels.translate(_IS_WARNING)))
        if self._vocabulary is not None and warnings:
            text = "\n".join([msgs[i] for i in warnings])
            found.update(warnings[i] for i in _hit_lines(self._vocabulary, text))
        return sorted(found), literal

    def _line(self, rec: KmsgRecord, msg: str, lineno: int, now: float, out: ScanResult,
              literal: bool) -> None:
        rep = self._report
        if rep is not None and rec.ts_us - rep.last_us > rep.spec.silence_seconds * 1e6:
            self._close(out)
        claims = self._claims(msg, lineno) if literal else []
        if not claims:
            if self._report is not None:
                self._hold(rec, msg, lineno, now, out)
            elif rec.facility == KERN_FACILITY and self._unknown(rec, msg):
                out.unclaimed.append(rec)
            return
        sub, caps = max(claims, key=lambda c: c[0].rank)
        caps = self._with_context(sub, caps, lineno)
        if sub.role == "line" or sub.report is None:
            if sub.role == "line":
                out.add(sub.key, caps, (msg,))
            elif self._report is not None:  # a claimed continuation line
                self._hold(rec, msg, lineno, now, out)
            return
        self._report_line(sub, caps, rec, msg, lineno, now, out)

    def _unknown(self, rec: KmsgRecord, msg: str) -> bool:
        if rec.priority <= LOG_ERR:
            return True
        vocab = self._vocabulary
        return rec.priority == LOG_WARNING and vocab is not None and vocab.search(msg) is not None

    def _claims(self, msg: str, lineno: int) -> list[tuple[_Sub, dict[str, str]]]:
        """Every (signal, captures) whose pattern and ``where`` match; feeds context slots."""
        claims: list[tuple[_Sub, dict[str, str]]] = []
        if self._set is None:
            return claims
        data = msg.encode("utf-8", "replace")  # RE2 reads bytes: no offset translation
        found = self._set.match(data)
        if not found:
            return claims
        # A pattern listed under two literals the line both holds runs once.
        pats = self._by_index[found[0]] if len(found) == 1 else list(
            {id(p): p for li in sorted(found) for p in self._by_index[li]}.values())
        for pat in pats:
            caps = pat.captures(data)
            if caps is None:
                continue
            if pat.context_slot is not None:
                self._ctx_state[pat.context_slot] = (lineno, caps)
                continue
            for sub in pat.subs:
                if not sub.where or _where(sub, caps):
                    claims.append((sub, caps))
        return claims

    def _with_context(self, sub: _Sub, caps: dict[str, str], lineno: int) -> dict[str, str]:
        merged = caps
        for slot in sub.contexts:
            state = self._ctx_state[slot]
            if state is not None and lineno - state[0] <= self._ctx_max[slot]:
                merged = {**state[1], **merged}
        return merged

    # --- reports -------------------------------------------------------------------------
    def _report_line(self, sub: _Sub, caps: dict[str, str], rec: KmsgRecord, msg: str,
                     lineno: int, now: float, out: ScanResult) -> None:
        assert sub.report is not None
        rep = self._report
        same = rep is not None and rep.spec.group == sub.report.group
        if sub.role == "part" and rep is not None and not same:
            self._hold(rec, msg, lineno, now, out)  # another group's continuation: not ours
            return
        if rep is not None and same and not (sub.role == "start" and rep.seen(sub.key)):
            rep.claims.append((sub, caps))
            if len(rep.held) < 3 * KEEP_LINES or sub.role == "end":  # a long report's evidence
                rep.held.append((lineno, msg))
            rep.lines += 1
            rep.last_us, rep.arrived = rec.ts_us, now
        else:
            if rep is not None:
                self._close(out)
            rep = self._report = _Open(sub.report, [(lineno, msg)], [(sub, caps)], rec.ts_us,
                                       now)
        rep.opens = rep.opens or sub.role != "part"
        if sub.role == "end" or rep.lines >= rep.spec.max_lines:
            self._close(out)

    def _hold(self, rec: KmsgRecord, msg: str, lineno: int, now: float,
              out: ScanResult) -> None:
        """An unclaimed line inside the open report: its continuation."""
        rep = self._report
        assert rep is not None
        rep.lines += 1
        rep.last_us, rep.arrived = rec.ts_us, now
        if rep.extra < KEEP_LINES:
            rep.extra += 1
            rep.held.append((lineno, msg))
        if rep.lines >= rep.spec.max_lines:
            self._close(out)

    def _continue(self, recs: list[KmsgRecord], msgs: list[str], base: int, start: int,
                  stop: int, now: float, out: ScanResult) -> None:
        """Lines ``start..stop`` matched nothing: the open report's continuation, if any,
        until a silence longer than the report's gap between two lines."""
        for i in range(start, stop):
            rep = self._report
            if rep is None:
                return
            if recs[i].ts_us - rep.last_us > rep.spec.silence_seconds * 1e6:
                self._close(out)
                return
            self._hold(recs[i], msgs[i], base + i, now, out)

    def _close(self, out: ScanResult) -> None:
        """Emit the open report as one event of its owner: the highest-priority claimant."""
        rep, self._report = self._report, None
        if rep is None or not rep.opens:
            return
        owner = max((sub for sub, _ in rep.claims), key=lambda s: s.rank)
        pi = owner.key[0]
        keys = [sub.key for sub, _ in rep.claims if sub.key[0] == pi and sub.role != "part"]
        key = keys[0] if keys else self._opening.get(pi, owner.key)
        captures: dict[str, str] = {}
        for _, caps in rep.claims:  # later lines win: the kill line names the victim
            captures.update(caps)
        out.add(key, captures, (text for _, text in sorted(rep.held)))


def _where(sub: _Sub, caps: dict[str, str]) -> bool:
    """The captures hold an allowed value for each of the signal's ``where`` filters."""
    return all(caps.get(name) in allowed for name, allowed in sub.where.items())


def _levels(recs: list[KmsgRecord]) -> bytes:
    """One byte per record, its syslog level (anything outside 0-7 counts as debug)."""
    try:
        return bytes(map(_priority, recs))
    except (ValueError, TypeError):  # a record built in-process with a bad level
        return bytes(p if isinstance(p, int) and 0 <= p <= 7 else 7
                     for p in map(_priority, recs))


def _hit_lines(regex: linear.Pattern, text: str) -> list[int]:
    """The numbers of the ``\\n``-separated lines of ``text`` that ``regex`` finds something
    in: one RE2 search per hit line, resumed at the next line (bytes: no offset mapping)."""
    buf = text.encode("utf-8", "replace")
    hits: list[int] = []
    pos = last = line = 0
    while (found := linear.spans(regex, buf, pos)) is not None:
        start = found[0][0]
        line += buf.count(b"\n", last, start)
        hits.append(line)
        nl = buf.find(b"\n", start)
        if nl < 0:
            break
        pos = last = nl + 1
        line += 1
    return hits
