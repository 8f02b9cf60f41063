"""Which channel hears which event, per severity (``Settings.notify_routes``).

A route maps a channel name to patterns: ``"approval_needed"`` (that event, any severity),
``"incident_opened@critical"`` (that event at critical or higher), ``"*"`` (everything) and
``"*@warning"`` (everything at warning or higher). A channel with no entry hears everything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from healer.errors import ConfigError
from healer.notify.events import SEVERITIES, Event, severity_rank
from healer.settings import Settings


@dataclass(frozen=True)
class _Pattern:
    event: str  # an Event value or "*"
    min_rank: int


@dataclass(frozen=True)
class Routes:
    """Parsed routing table; ``wants(channel, event, severity)`` decides delivery."""

    table: Mapping[str, tuple[_Pattern, ...]]

    def wants(self, channel: str, event: str, severity: str) -> bool:
        """True when ``channel`` should receive ``event`` at ``severity``."""
        patterns = self.table.get(channel)
        if patterns is None:
            return True
        rank = severity_rank(severity)
        return any(p.event in ("*", event) and rank >= p.min_rank for p in patterns)


def _parse_pattern(channel: str, text: str) -> _Pattern:
    event, _, sev = text.strip().partition("@")
    if event != "*" and event not in {e.value for e in Event}:
        raise ConfigError(f"notify_routes.{channel}", f"unknown event {event!r}")
    if sev and sev not in SEVERITIES:
        raise ConfigError(f"notify_routes.{channel}", f"unknown severity {sev!r}")
    return _Pattern(event, SEVERITIES[sev] if sev else 0)


def parse_routes(raw: Mapping[str, Sequence[str]]) -> Routes:
    """Parse ``Settings.notify_routes``; raises ConfigError naming the bad key."""
    return Routes({ch: tuple(_parse_pattern(ch, p) for p in pats) for ch, pats in raw.items()})


def configured_channels(settings: Settings) -> list[str]:
    """Names of the channels ``settings`` enables, without building clients."""
    names = ["log"]
    if settings.slack_webhook_url:
        names.append("slack")
    if settings.webhook_url:
        names.append("webhook")
    return names
