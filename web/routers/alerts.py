"""``POST /api/v1/alerts/alertmanager``: Alertmanager's webhook (payload version 4), with a
bearer token of role ``ingest``.

Each alert opens (or, resolved, resolves) an incident on the host its ``host`` label
names, else its ``instance`` label without the port. The incident is the alert's
playbook's when a playbook's ``kind: alert`` signal matches it, else unclassified; it
keeps the alert's fingerprint. Alertmanager delivers at least once, and in HA to every
replica: the same alert twice changes nothing (healer.store.repo_fleet.ingest_alert).
Labels and annotations are untrusted text: they are bounded here and stored as data.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from guardrails.fleet import alert_fingerprint
from healer.logs import logfmt
from healer.store.fleet_types import AlertIn
from healer.store.repo_hosts import bounded
from healer.store.tables import SUBJECT_LEN
from playbooks.alerts import match_alert
from web.auth import Principal, requires_service
from web.context import get_ctx
from web.fleet import FleetConfig

log = logging.getLogger("healer.web.alerts")
router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
Ingest = Annotated[Principal, Depends(requires_service("ingest"))]
SEVERITIES = ("info", "warning", "critical")
Text = Annotated[str, Field(max_length=4096)]
LabelMap = Annotated[dict[Annotated[str, Field(max_length=128)], Text], Field(max_length=64)]


class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: LabelMap
    annotations: LabelMap = Field(default_factory=dict)
    startsAt: datetime  # Alertmanager's own spelling
    endsAt: datetime | None = None
    fingerprint: str = Field(min_length=1, max_length=64)


class AlertmanagerWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    alerts: list[AlertmanagerAlert] = Field(max_length=1000)


def alert_host(labels: dict[str, str]) -> str | None:
    """The host an alert is about: its ``host`` label, else ``instance`` without a port."""
    host = labels.get("host") or ""
    if not host:
        instance = labels.get("instance", "")
        host = instance.rsplit(":", 1)[0] if instance.count(":") == 1 else instance
        if host.startswith("[") and "]" in host:  # [::1]:9100
            host = host[1:host.index("]")]
    if not host or len(host) > 253 or any(c.isspace() for c in host):
        return None
    return host


def _when(ts: datetime | None) -> datetime | None:
    """UTC; Alertmanager's zero time (year 1) means "not ended"."""
    if ts is None or ts.year < 1970:
        return None
    return ts.astimezone(UTC) if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def to_incident(alert: AlertmanagerAlert, fleet: FleetConfig) -> AlertIn | None:
    """The incident one alert stands for; None without a host or an alertname."""
    labels = dict(alert.labels)
    host, name = alert_host(labels), labels.get("alertname", "")
    starts = _when(alert.startsAt)
    if host is None or not name or starts is None:
        return None
    playbook = match_alert(fleet.library.playbooks, name, labels)
    identity = alert_fingerprint(name, labels)
    severity = labels.get("severity", "")
    if severity not in SEVERITIES:
        severity = playbook.severity if playbook is not None else "warning"
    captures = labels | {f"annotation_{k}": v for k, v in alert.annotations.items()}
    return AlertIn(
        host_id=host, alert_key=f"{alert.fingerprint}@{starts.isoformat()}"[:200],
        alertname=name, labels=labels,
        fingerprint=bounded(identity), playbook=playbook.id if playbook else "unclassified",
        scope="host", subject=bounded(identity, SUBJECT_LEN), severity=severity,
        firing=alert.status == "firing", starts_at=starts, ends_at=_when(alert.endsAt),
        evidence={"captures": captures})


@router.post("/alertmanager")
def alertmanager(request: Request, who: Ingest, body: AlertmanagerWebhook) -> dict[str, Any]:
    """Open, update or resolve one incident per alert; the same delivery again is a no-op."""
    ctx = get_ctx(request)
    assert ctx.fleet is not None  # mounted only on a control plane
    opened: list[int] = []
    changed = skipped = 0
    for alert in body.alerts:
        incident = to_incident(alert, ctx.fleet)
        if incident is None:
            skipped += 1
            continue
        row, moved = ctx.repo.ingest_alert(incident)
        opened.append(row.id or 0)
        changed += moved
        if moved:
            log.info(logfmt(msg=f"alert {'firing' if incident.firing else 'resolved'}",
                            host=incident.host_id, alert=incident.subject[:120],
                            incident=row.id, playbook=incident.playbook, via=who.name))
    return {"incidents": opened, "changed": changed, "skipped": skipped}
