"""The unknown path: kernel lines that no playbook claims become ``unclassified`` incidents.

The matcher hands over kernel-facility records at err or worse, and warnings that read as a
failure (``playbooks/noise.yaml``), that no playbook claims and no report holds. Each is
reduced to its template (``templates``); the template is the incident's subject, so every
variant of one driver message is one incident. Noise control, in order:

- a line on the shipped harmless list, or a piece of a report (a stack frame, a register
  dump) on its own, opens nothing;
- a template an operator silenced opens nothing while the silence lasts;
- new templates are capped per hour (kernel lines carry names anyone picks); the lines
  beyond the cap share one overflow incident, so they are counted, not lost.

Severity starts at ``info`` for a one-off line and rises a step each when the template
repeats (``REPEATS`` in the hour), reads as a failure, or was logged at crit or worse.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from guardrails import linear
from healer.detect.events import DetectEvent
from healer.detect.subjects import HOUR, NewPerHour
from healer.detect.templates import template
from healer.models import UNCLASSIFIED, Evidence, KmsgRecord
from playbooks.noise import Noise

OVERFLOW = "(new kernel-message templates over the hourly cap)"
SIGNAL = "kmsg:unclassified"
REPEATS = 10  # lines of one template in an hour that make it more than a one-off
LOG_CRIT = 2
SEVERITIES = ("info", "warning", "critical")
Silenced = Callable[[float], Collection[str]]  # now -> the templates silenced at that time


@dataclass
class _Template:
    hits: deque[tuple[float, int]] = field(default_factory=deque)  # (cycle ts, lines)
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    level: int = 7
    failure: bool = False
    new: int = 0
    last: float = 0.0
    active: bool = False

    def in_hour(self, now: float) -> int:
        while self.hits and self.hits[0][0] <= now - HOUR:
            self.hits.popleft()
        return sum(n for _, n in self.hits)


def severity(level: int, failure: bool, in_hour: int) -> str:
    """``info`` for a one-off; a step up each for a repeat, a failure reading, crit or worse."""
    rank = int(failure) + int(in_hour >= REPEATS) + int(level <= LOG_CRIT)
    return SEVERITIES[min(rank, len(SEVERITIES) - 1)]


class UnknownPath:
    """Turns unclaimed kernel records into fire/clear events of ``unclassified`` incidents."""

    def __init__(self, noise: Noise, silenced: Silenced | None = None, *,
                 new_per_hour: int = 30, quiet_seconds: float = 300.0,
                 scope: str = "host") -> None:
        self.vocabulary = noise.vocabulary()
        self._quiet = noise.quiet_pattern()
        self._silenced = silenced
        self._cap = NewPerHour(new_per_hour, OVERFLOW)
        self.quiet_seconds = quiet_seconds
        self.scope = scope
        self._templates: dict[str, _Template] = {}
        self.silenced_total = 0

    @property
    def over_cap_total(self) -> int:
        """Lines whose new template came beyond the hourly cap."""
        return self._cap.refused

    def observe(self, records: Sequence[KmsgRecord], now: float) -> list[DetectEvent]:
        """This cycle's unclaimed records in, fire and clear events out."""
        silenced = self._silenced(now) if records and self._silenced is not None else ()
        for rec in records:
            self._take(rec, now, silenced)
        return self._events(now)

    def _take(self, rec: KmsgRecord, now: float, silenced: Collection[str]) -> None:
        msg = rec.message
        data = msg.encode("utf-8", "replace")
        if self._quiet is not None and linear.spans(self._quiet, data) is not None:
            return  # on the harmless list, or a piece of a report
        name = template(msg)
        if name in silenced:
            self.silenced_total += 1
            return
        if name not in self._templates:
            name = self._cap.admit(name, now)
        state = self._templates.get(name)
        if state is None:
            state = self._templates[name] = _Template()
        state.new += 1
        state.lines.append(msg[:512])
        state.level = min(state.level, rec.priority)
        state.failure = state.failure or linear.spans(self.vocabulary, data) is not None

    def _events(self, now: float) -> list[DetectEvent]:
        events = []
        for name, state in list(self._templates.items()):
            if state.new:
                state.hits.append((now, state.new))
                count = state.new if state.active else state.in_hour(now)
                state.new, state.last, state.active = 0, now, True
                events.append(self._fire(name, state, count, now))
            elif state.active and now - state.last >= self.quiet_seconds:
                state.active = False
                events.append(DetectEvent("clear", UNCLASSIFIED, self.scope, "info", Evidence(),
                                          0, now, name))
            elif not state.active and now - state.last > HOUR:
                del self._templates[name]
        return events

    def _fire(self, name: str, state: _Template, count: int, now: float) -> DetectEvent:
        in_hour = state.in_hour(now)
        evidence = Evidence(signals={SIGNAL: float(in_hour)}, kmsg=tuple(state.lines),
                            captures={"template": name, "level": str(state.level)})
        return DetectEvent("fire", UNCLASSIFIED, self.scope,
                           severity(state.level, state.failure, in_hour), evidence, count, now,
                           name)
