"""Bounds on identities taken from kernel text: subjects and message templates.

A subject (the device, interface or binary an incident is about) and an unclassified
line's template come from kernel lines, and some of those carry names anyone can pick (a
binary's name in a segfault line, a process name in a driver message). Each new identity
is a new incident, so new ones are capped per hour; what comes beyond the cap shares one
overflow identity and is still counted, never dropped.
"""

from __future__ import annotations

from collections import deque

HOUR = 3600.0
MAX_SUBJECT_CHARS = 128


def clean(text: str, limit: int = MAX_SUBJECT_CHARS) -> str:
    """``text`` without control characters, cut to ``limit`` characters."""
    text = text[: limit * 2]
    if text.isprintable():
        return text[:limit]
    return "".join(ch for ch in text if ch.isprintable())[:limit]


class NewPerHour:
    """Admits at most ``per_hour`` new names per hour; known names always pass."""

    def __init__(self, per_hour: int, overflow: str) -> None:
        self.per_hour = per_hour
        self.overflow = overflow
        self._last: dict[str, float] = {}  # name -> last seen
        self._new: deque[float] = deque()  # when each recent new name was admitted
        self.refused = 0

    def admit(self, name: str, now: float) -> str:
        """``name`` if it is known or the hour's budget allows it, else ``overflow``."""
        if name in self._last:
            self._last[name] = now
            return name
        while self._new and self._new[0] <= now - HOUR:
            self._new.popleft()
        if len(self._new) >= self.per_hour:
            self.refused += 1
            return self.overflow
        self._new.append(now)
        self._last[name] = now
        if len(self._last) > 8 * self.per_hour:  # forget names quiet for an hour
            self._last = {k: t for k, t in self._last.items() if t > now - HOUR}
        return name


class SubjectCap:
    """Per playbook, at most ``per_hour`` new subjects an hour; the rest share ``OTHER``."""

    OTHER = "(other)"

    def __init__(self, per_hour: int = 50) -> None:
        self.per_hour = per_hour
        self._caps: dict[str, NewPerHour] = {}

    def admit(self, playbook_id: str, raw: str, now: float) -> str:
        """The subject an incident of ``playbook_id`` gets for the captured ``raw`` value."""
        subject = clean(raw)
        if not subject:
            return ""
        cap = self._caps.get(playbook_id)
        if cap is None:
            cap = self._caps[playbook_id] = NewPerHour(self.per_hour, self.OTHER)
        return cap.admit(subject, now)
