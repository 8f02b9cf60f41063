"""``Notifier``: turns loop events into outbox rows, one per interested channel.

Enqueueing is idempotent: each row carries a dedupe key (channel, event, subject and the
occurrence), and the store refuses a key it already holds, so replaying an event after a
crash never queues it twice. Delivery happens later, in the outbox job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from healer.errors import HealerError
from healer.logs import logfmt
from healer.models import ActionRecord, Incident
from healer.notify.events import DEFAULT_SEVERITY, Event
from healer.notify.formats import MESSAGE_VERSION, event_title
from healer.notify.routes import Routes, configured_channels, parse_routes
from healer.settings import Settings

log = logging.getLogger("healer.notify")


class OutboxWriter(Protocol):
    """The one store method the notifier needs (healer.store.repository.Repository)."""

    def enqueue_notification(
        self, channel: str, event: str, payload: dict[str, Any], dedupe_key: str
    ) -> bool: ...


def base_url(settings: Settings) -> str:
    """Where links in notifications point: ``public_url`` or the dashboard's own address."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Notifier:
    """Queues notifications for delivery; never sends anything itself."""

    def __init__(self, settings: Settings, repo: OutboxWriter, *,
                 channels: Collection[str] | None = None, routes: Routes | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self._repo = repo
        self._host_id = settings.host_id
        self._base = base_url(settings)
        self._channels = list(channels if channels is not None else configured_channels(settings))
        self._routes = routes or parse_routes(settings.notify_routes)
        self._clock = clock

    def emit(self, event: Event | str, subject: str, payload: Mapping[str, Any],
             severity: str | None = None, *, occurrence: str = "") -> int:
        """Queue ``event`` about ``subject`` (``incident:3``, ``action:7``); returns rows queued.

        ``payload`` may carry ``title``, ``text``, ``link``, ``action_id``, ``incident_id``;
        anything else goes under ``data``. ``occurrence`` tells repeats of one event on one
        subject apart (a reopened incident); the same occurrence is queued once only.
        """
        ev = Event(event)
        sev = severity or DEFAULT_SEVERITY[ev]
        queued = 0
        for channel in self._channels:
            if not self._routes.wants(channel, ev.value, sev):
                continue
            key = "|".join(p for p in (channel, ev.value, subject, occurrence) if p)
            message = self._message(ev, subject, payload, sev, key)
            try:
                if self._repo.enqueue_notification(channel, ev.value, message, key):
                    queued += 1
            except HealerError as exc:  # a store hiccup must not stop the loop
                log.error(logfmt(msg="notification not queued", channel=channel, event=ev.value,
                                 subject=subject, error=exc))
        return queued

    def _message(self, event: Event, subject: str, payload: Mapping[str, Any], severity: str,
                 key: str) -> dict[str, Any]:
        known = {"title", "text", "link", "action_id", "incident_id"}
        return {
            "version": MESSAGE_VERSION, "id": key, "event": event.value, "severity": severity,
            "host_id": self._host_id, "subject": subject,
            "title": str(payload.get("title") or event_title(event.value)),
            "text": str(payload.get("text", "")), "link": payload.get("link"),
            "action_id": payload.get("action_id"), "incident_id": payload.get("incident_id"),
            "at": self._clock().isoformat(),
            "data": {k: v for k, v in payload.items() if k not in known},
        }

    def incident(self, kind: str, incident: Incident) -> int:
        """Queue ``incident_opened`` (kind opened/reopened) or ``incident_resolved``."""
        if kind not in ("opened", "reopened", "resolved") or incident.id is None:
            return 0
        event = Event.INCIDENT_RESOLVED if kind == "resolved" else Event.INCIDENT_OPENED
        when = incident.first_seen if kind == "opened" else incident.last_seen
        diag = incident.diagnosis
        about = f" [{incident.subject}]" if incident.subject else ""  # a device, a template
        text = f"{incident.playbook}{about} in scope {incident.scope} (seen {incident.count}x)"
        if diag is not None:
            text += f"; diagnosis {diag.root_cause} ({diag.source}, {diag.confidence:.0%})"
        payload = {"text": text, "link": f"{self._base}/incidents/{incident.id}",
                   "incident_id": incident.id, "playbook": incident.playbook,
                   "scope": incident.scope, "about": incident.subject,
                   "signals": dict(incident.evidence.signals)}
        sev = "info" if kind == "resolved" else incident.severity
        return self.emit(event, f"incident:{incident.id}", payload, sev,
                         occurrence=f"{kind}@{when.isoformat()}")

    def action(self, event: Event | str, record: ActionRecord, *, detail: str = "",
               severity: str | None = None) -> int:
        """Queue an action event (applied, verified, rolled back, approval needed or expired)."""
        if record.id is None:
            return 0
        ev = Event(event)
        act = record.action
        text = f"{act.kind} {act.key_name} ({act.scope}): {detail or record.rationale or ev.value}"
        if ev is Event.APPROVAL_NEEDED:
            text += "; guard: " + "; ".join(record.decision.reasons or ("needs approval",))
        link = (f"{self._base}/approvals#action-{record.id}" if ev is Event.APPROVAL_NEEDED
                else f"{self._base}/actions#action-{record.id}")
        payload = {"text": text, "link": link, "action_id": record.id,
                   "incident_id": record.incident_id, "action": act.model_dump(mode="json"),
                   "state": record.state.value, "original": record.original,
                   "applied": record.applied, "verdict": record.decision.verdict}
        return self.emit(ev, f"action:{record.id}", payload, severity)

    def escalation(self, subject: str, message: str, *, incident_id: int | None = None,
                   action_id: int | None = None) -> int:
        """Queue an escalation: healer will not act, a person must."""
        link = f"{self._base}/incidents/{incident_id}" if incident_id is not None else self._base
        return self.emit(Event.ESCALATION, subject, {"text": message, "link": link,
                                                     "incident_id": incident_id,
                                                     "action_id": action_id})
