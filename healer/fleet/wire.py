"""The protocol's messages as the agent reads them (docs/fleet-protocol.md).

Everything here arrives from the control plane: untrusted, validated into frozen models
with bounds, unknown fields ignored (a newer control plane may add some). What the agent
sends is built as plain JSON by the module that sends it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from healer.models import Alert

API = "/api/v1/agent/"
MAX_LABELS = 64
MAX_LABEL_CHARS = 1024


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_max_length=4096)


class Remedy(_Wire):
    """What the fleet caps: (playbook, action kind, target name), never a value."""

    playbook: str = Field(max_length=200)
    kind: str = Field(max_length=64)
    target: str = Field(max_length=512)


class Grant(_Wire):
    lease_id: int
    epoch: int
    ttl_seconds: float = Field(gt=0, le=3600)
    rule: str = Field(default="", max_length=64)


class Wait(_Wire):
    reason: str = Field(max_length=32)
    rule: str = Field(default="", max_length=64)
    retry_after: float = Field(default=2.0, ge=0, le=3600)


class LeaseReply(_Wire):
    """``POST /lease``: exactly one of a grant or a wait."""

    grant: Grant | None = None
    wait: Wait | None = None


class HeartbeatReply(_Wire):
    server_time: datetime
    paused: bool = False
    heartbeat_seconds: float = Field(default=5.0, ge=1, le=300)

    @field_validator("server_time")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)  # the protocol's zone


class ReportReply(_Wire):
    acked_through: int = Field(ge=0)


class AlertIn(_Wire):
    """An alert for this host (an ``incident`` event): Alertmanager's labels, and the fleet
    fingerprint the control plane keyed it by."""

    alertname: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_LABELS)
    status: Literal["firing", "resolved"] = "firing"
    fleet_fingerprint: str | None = Field(default=None, max_length=512)

    def alert(self) -> Alert | None:
        """The domain alert; None without an alert name or with oversized labels."""
        name = self.alertname or self.labels.get("alertname")
        if not name or any(len(k) > 200 or len(v) > MAX_LABEL_CHARS
                           for k, v in self.labels.items()):
            return None
        labels = {**self.labels, "alertname": name}
        return Alert(alertname=name[:200], labels=labels, status=self.status,
                     fleet_fingerprint=self.fleet_fingerprint or alert_fingerprint(labels))


def alert_fingerprint(labels: dict[str, str]) -> str:
    """``alertname{k="v",...}`` over every label but ``instance``, sorted: the same alert on
    every host; a long one keeps its name and a digest of the rest."""
    name = labels.get("alertname", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())
                    if k not in ("alertname", "instance"))
    text = f"{name}{{{rest}}}"
    if len(text) <= 400:
        return text
    return f"{name[:200]}{{sha256:{hashlib.sha256(rest.encode()).hexdigest()}}}"


class VoteEvent(_Wire):
    type: Literal["vote"]
    action_id: int = Field(gt=0)
    user: str = Field(min_length=1, max_length=100)
    approve: bool
    comment: str = Field(default="", max_length=2000)


class PauseEvent(_Wire):
    type: Literal["pause"]


class ResumeEvent(_Wire):
    type: Literal["resume"]
    remedy: Remedy | None = None  # None: the fleet; else that remedy's breaker


class BreakerEvent(_Wire):
    type: Literal["breaker"]
    remedy: Remedy
    open: bool


class TurnEvent(_Wire):
    """A lease of ``remedy`` ended: there may be room, so a waiting host asks again now."""

    type: Literal["turn"]
    remedy: Remedy


class IncidentEvent(_Wire):
    type: Literal["incident"]
    incident: AlertIn


class DiagnosisEvent(_Wire):
    type: Literal["diagnosis"]
    fleet_fingerprint: str = Field(min_length=1, max_length=512)
    answer: dict[str, Any]  # LLMResult JSON: validated again where it is taken up
    model: str = Field(default="", max_length=200)


Event = Annotated[VoteEvent | PauseEvent | ResumeEvent | BreakerEvent | TurnEvent
                  | IncidentEvent | DiagnosisEvent, Field(discriminator="type")]
EVENT: TypeAdapter[Event] = TypeAdapter(Event)


class EventsReply(_Wire):
    cursor: str = Field(default="", max_length=256)
    events: list[dict[str, Any]] = Field(default_factory=list)  # each validated on its own
