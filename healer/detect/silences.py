"""Silences: an operator marks an unclassified kernel-message template harmless, until it
expires (Alertmanager's silences, for the unknown path).

A silence holds a template, never a playbook: detection consults silences only for lines no
playbook claims, and ``silence_for`` refuses a template (or an incident's lines) that a
playbook claims, so a silence can never hide a known failure. ``SilenceCache`` is what the
detector reads: the store's active silences, re-read every few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

from healer.detect.kmsg import KmsgMatcher
from healer.detect.templates import MAX_TEMPLATE_CHARS, example
from healer.errors import HealerError
from healer.models import UNCLASSIFIED, Incident, SilenceCheck, SilenceRefused, SilenceRequest
from playbooks.schema import Playbook

log = logging.getLogger("healer.detect")
MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(days=365)
DEFAULT_DURATION = timedelta(hours=24)
ActiveSilences = Callable[[datetime], "dict[str, datetime]"]  # now -> template -> expires_at


class SilenceCache:
    """The templates under an active silence, read from the store at most every ``ttl``
    seconds (an add or a remove takes effect within that); an expiry takes effect at once.
    A store error keeps the last set: detection never stops for the dashboard's database."""

    def __init__(self, read: ActiveSilences, ttl: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self._ttl = ttl
        self._clock = clock
        self._at = -ttl
        self._active: dict[str, datetime] = {}

    def __call__(self, now: float) -> frozenset[str]:
        wall = datetime.fromtimestamp(now, tz=UTC)
        if self._clock() - self._at >= self._ttl:
            try:
                self._active = self._read(wall)
                self._at = self._clock()
            except HealerError as exc:
                log.warning("silences not re-read; keeping the last set: error=%s", exc)
        return frozenset(t for t, until in self._active.items() if until > wall)


def claimed_by(playbooks: Sequence[Playbook], texts: Sequence[str]) -> str | None:
    """The id of a playbook that claims one of ``texts`` (templates are tried with their
    placeholders filled in), or None."""
    matcher = KmsgMatcher(playbooks)
    for text in texts:
        for line in (text, example(text)):
            found = matcher.claimant(line)
            if found is not None:
                return playbooks[found].id
    return None


def silence_for(playbooks: Sequence[Playbook], *, comment: str, now: datetime,
                template: str | None = None, incident: Incident | None = None,
                duration: timedelta | None = None,
                expires_at: datetime | None = None) -> SilenceRequest:
    """Check a silence asked for by template or by an unclassified incident; raises
    ``SilenceRefused`` with one clear line when it cannot be granted."""
    if (template is None) == (incident is None):
        raise SilenceRefused("give exactly one of a template or an unclassified incident")
    lines: tuple[str, ...] = ()
    if incident is not None:
        if incident.playbook != UNCLASSIFIED or not incident.subject:
            raise SilenceRefused(
                f"incident {incident.id} is {incident.playbook!r}: only unclassified kernel "
                "messages can be silenced; a playbook's incidents are handled, not hidden")
        template, lines = incident.subject, incident.evidence.kmsg
    assert template is not None
    template = template.strip()
    if not template or len(template) > MAX_TEMPLATE_CHARS or not template.isprintable():
        raise SilenceRefused(f"a template is 1 to {MAX_TEMPLATE_CHARS} printable characters")
    comment = comment.strip()
    if not comment or len(comment) > 2000:
        raise SilenceRefused("a comment (1 to 2000 characters) says why it is harmless")
    owner = claimed_by(playbooks, (template, *lines))
    if owner is not None:
        raise SilenceRefused(f"playbook {owner!r} claims this message; a silence never "
                             "covers a known failure")
    return SilenceRequest(template=template, comment=comment,
                          expires_at=_expiry(now, duration, expires_at))


def silence_check(playbooks: Sequence[Playbook]) -> SilenceCheck:
    """``silence_for`` over one library: what the web app is handed to check silences."""
    return partial(silence_for, tuple(playbooks))


def _expiry(now: datetime, duration: timedelta | None, expires_at: datetime | None) -> datetime:
    if duration is not None and expires_at is not None:
        raise SilenceRefused("give a duration or an expiry time, not both")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        duration = expires_at - now
    duration = DEFAULT_DURATION if duration is None else duration
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise SilenceRefused("a silence lasts between 1 minute and 365 days")
    return now + duration
