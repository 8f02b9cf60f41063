"""The outbox delivery job: send due rows, retry with capped exponential backoff, give up.

Run it from the scheduler on its own job (never the sampling job). Each HTTP send is
bounded by a short timeout, and after one failure on a channel the rest of that channel's
rows wait for the next run, so a dead endpoint costs one timeout per run. Delivery is
at-least-once: a crash between a successful send and ``mark_delivered`` resends that one
row; receivers can drop it by its ``id`` / ``X-Healer-Delivery`` (the dedupe key).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from healer.logs import logfmt
from healer.notify.channels import Channel, DeliveryError
from healer.telemetry import Telemetry

log = logging.getLogger("healer.notify")


class OutboxRowLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def channel(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def attempts(self) -> int: ...


class OutboxStore(Protocol):
    """The store methods the job needs (healer.store.repository.Repository)."""

    def due_notifications(self, now: datetime, limit: int = 50) -> list[Any]: ...
    def mark_delivered(self, id: int, at: datetime) -> None: ...
    def mark_failed(self, id: int, error: str, next_attempt: datetime, give_up: bool) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (1-based): ``base * 2**(n-1)``, capped; dead after ``max_attempts``."""

    base_seconds: float = 10.0
    cap_seconds: float = 1800.0
    max_attempts: int = 8

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failure."""
        return float(min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0  # skipped this run because their channel just failed


class OutboxDeliverer:
    """Delivers due outbox rows through the configured channels."""

    def __init__(self, repo: OutboxStore, channels: Mapping[str, Channel], *,
                 backoff: Backoff | None = None, telemetry: Telemetry | None = None,
                 batch: int = 50) -> None:
        self._repo, self._channels = repo, dict(channels)
        self._backoff = backoff or Backoff()
        self._telemetry, self._batch = telemetry, batch

    def deliver_due(self, now: datetime | None = None) -> DeliveryReport:
        """Send every due row once; returns counts. Safe to call from a scheduler job."""
        now = now or datetime.now(UTC)
        failed_channels: set[str] = set()
        counts = {"delivered": 0, "retried": 0, "dead": 0, "deferred": 0}
        for row in self._repo.due_notifications(now, limit=self._batch):
            if row.channel in failed_channels:
                counts["deferred"] += 1
                continue
            result = self._deliver_one(row, now)
            counts[result] += 1
            if result != "delivered":
                failed_channels.add(row.channel)
        return DeliveryReport(**counts)

    def _deliver_one(self, row: OutboxRowLike, now: datetime) -> str:
        channel = self._channels.get(row.channel)
        try:
            if channel is None:
                raise DeliveryError(f"channel {row.channel!r} not configured", permanent=True)
            channel.send(row.payload)
        except DeliveryError as exc:
            attempt = row.attempts + 1
            give_up = exc.permanent or attempt >= self._backoff.max_attempts
            retry_at = now + timedelta(seconds=self._backoff.delay(attempt))
            self._repo.mark_failed(row.id, str(exc), retry_at, give_up)
            log.warning(logfmt(msg="notification failed", channel=row.channel, event=row.event,
                               id=row.id, attempt=attempt, error=exc,
                               next="dead" if give_up else retry_at.isoformat()))
            self._count(row.channel, "dead" if give_up else "retry")
            return "dead" if give_up else "retried"
        self._repo.mark_delivered(row.id, now)
        self._count(row.channel, "delivered")
        return "delivered"

    def _count(self, channel: str, result: str) -> None:
        if self._telemetry is not None:
            self._telemetry.notifications.labels(channel, result).inc()
