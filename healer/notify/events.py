"""Notification events and severities: the vocabulary every channel speaks."""

from __future__ import annotations

import enum


class Event(enum.StrEnum):
    """What happened; the outbox row's ``event`` column and the webhook's ``event`` field."""

    INCIDENT_OPENED = "incident_opened"
    INCIDENT_RESOLVED = "incident_resolved"
    APPROVAL_NEEDED = "approval_needed"
    ACTION_APPLIED = "action_applied"
    ACTION_VERIFIED = "action_verified"
    ACTION_ROLLED_BACK = "action_rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    ESCALATION = "escalation"
    APPROVAL_EXPIRED = "approval_expired"
    FLEET_INCIDENT = "fleet_incident"  # one fingerprint on too many hosts: automation holds
    BREAKER_TRIPPED = "breaker_tripped"  # a remedy failed on K hosts: it waits for a person


# Syslog-like ordering (RFC 5424 names); route patterns "event@warning" match this or higher.
SEVERITIES: dict[str, int] = {"info": 1, "warning": 2, "error": 3, "critical": 4}

# The severity an event carries when the caller gives none.
DEFAULT_SEVERITY: dict[Event, str] = {
    Event.INCIDENT_OPENED: "warning",
    Event.INCIDENT_RESOLVED: "info",
    Event.APPROVAL_NEEDED: "warning",
    Event.ACTION_APPLIED: "info",
    Event.ACTION_VERIFIED: "info",
    Event.ACTION_ROLLED_BACK: "warning",
    Event.ROLLBACK_FAILED: "critical",
    Event.ESCALATION: "critical",
    Event.APPROVAL_EXPIRED: "warning",
    Event.FLEET_INCIDENT: "critical",
    Event.BREAKER_TRIPPED: "critical",
}


def severity_rank(severity: str) -> int:
    """Rank of a severity name; unknown names count as warning."""
    return SEVERITIES.get(severity.lower(), SEVERITIES["warning"])
