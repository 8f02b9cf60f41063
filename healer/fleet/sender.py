"""Heartbeats and reports: what the agent tells the control plane, from one thread.

- **Heartbeats** every ``heartbeat_seconds`` (5 s, or what the control plane answers)
  ± 20 %: the mode, the labels, the open incidents, the last report seq, and this host's
  wall clock, from which the control plane's answer gives the clock skew.
- **Reports** from the outbox (healer.store.repo_reports), oldest first, in batches, until
  acked; samples are dropped first when the outbox passes its cap.

A 429 or 503 holds that kind of call back for its ``Retry-After`` (plus jitter); a 426 is
logged as what it is and asked again slowly; no answer at all backs off up to a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from healer.fleet.state import FleetState, jittered
from healer.fleet.transport import Backpressure, FleetError, Outdated, Refused, Transport
from healer.fleet.wire import HeartbeatReply, ReportReply
from healer.logs import logfmt
from healer.models import IncidentStatus
from healer.store.repository import Repository
from healer.store.rows import ReportRow
from healer.telemetry import Telemetry

log = logging.getLogger("healer.fleet")

OUTDATED_RETRY = 60.0
MAX_BACKOFF = 60.0
BATCH_REPORTS = 200
BATCH_BYTES = 2 * 1024 * 1024  # the protocol's limit on a report body is 4 MiB
# How often an empty outbox is looked at again: the agent's own reports wake the sender
# when they are queued; those of other root processes (``healer rollback``) wait for this.
REPORT_IDLE = 10.0
REPORT_COALESCE = 0.25  # a queued report waits this long for others to go in one request
REPORT_GAP = 1.0  # acked short of what went: the control plane waits on a gap it lacks
SKEW_WARN_SECONDS = 2.0
REPORT_KEYS = {"incident": "incident", "transition": "action", "sample": "sample"}
Reply = TypeVar("Reply", HeartbeatReply, ReportReply)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Backoff:
    """Exponential, jittered: 1 s, 2 s, 4 s ... ``MAX_BACKOFF``; reset on an answer."""

    current: float = 0.0

    def next(self) -> float:
        self.current = min(MAX_BACKOFF, max(1.0, self.current * 2))
        return jittered(self.current)

    def reset(self) -> None:
        self.current = 0.0


@dataclass
class Sender:
    """The heartbeat and report steps (``healer.fleet.worker.Worker`` runs them)."""

    transport: Transport
    repo: Repository
    state: FleetState
    mode: str
    labels: dict[str, str]
    version: str
    outbox_bytes: int
    telemetry: Telemetry | None = None
    wall: Callable[[], datetime] = _utcnow
    monotonic: Callable[[], float] = time.monotonic
    _beat_backoff: Backoff = field(default_factory=Backoff)
    _report_backoff: Backoff = field(default_factory=Backoff)
    _outdated_logged: float = float("-inf")
    _report_hold: float = float("-inf")  # no report before this (a back-off), woken or not

    # -- heartbeats -------------------------------------------------------------------
    def heartbeat(self) -> float:
        """Send one heartbeat; seconds until the next."""
        sent_at, started = self.wall(), self.monotonic()
        body = {"host_id": self.repo.host_id, "agent_version": self.version, "mode": self.mode,
                "labels": self.labels, "sent_at": sent_at.isoformat(),
                "open_incidents": self.repo.count_incidents(IncidentStatus.OPEN),
                "last_report_seq": self.repo.last_report_seq()}
        reply = self._exchange("heartbeat", body, HeartbeatReply, self._beat_backoff)
        if isinstance(reply, float):
            return reply
        self._beat_backoff.reset()
        self.state.outdated = None
        rtt = self.monotonic() - started
        # The control plane read its clock about half way through the round trip.
        skew = (reply.server_time - sent_at).total_seconds() - rtt / 2
        if abs(skew) >= SKEW_WARN_SECONDS and (self.state.skew_seconds is None or abs(
                self.state.skew_seconds) < SKEW_WARN_SECONDS):
            log.warning(logfmt(msg="clock skew with the control plane", seconds=f"{skew:.3f}"))
        self.state.skew_seconds = skew
        if self.telemetry is not None:
            self.telemetry.fleet_clock_skew_seconds.set(skew)
        self.state.set_paused(reply.paused, "heartbeat")
        return jittered(reply.heartbeat_seconds)

    # -- reports ----------------------------------------------------------------------
    def report(self) -> float:
        """Send the next batch of reports; seconds until the next round. An empty outbox
        costs one probe a round (other root processes queue reports too, so it is asked)."""
        held = self._report_hold - self.monotonic()
        if held > 0:  # woken by a new report while backing off: the back-off stands
            return held
        count, size = self.repo.report_totals()
        if size > self.outbox_bytes:
            dropped = self.repo.cap_reports(self.outbox_bytes)
            if dropped:
                log.warning(logfmt(msg="fleet outbox over its cap: samples dropped",
                                   dropped=dropped, cap_bytes=self.outbox_bytes))
                count, size = self.repo.report_totals()
        if self.telemetry is not None:
            self.telemetry.fleet_outbox_reports.set(count)
            self.telemetry.fleet_outbox_bytes.set(size)
        batch = self.repo.report_batch(BATCH_REPORTS, BATCH_BYTES) if count else []
        if not batch:
            return REPORT_IDLE
        body = {"host_id": self.repo.host_id, "reports": [_wire(r) for r in batch]}
        reply = self._exchange("report", body, ReportReply, self._report_backoff)
        if isinstance(reply, float):
            self._report_hold = self.monotonic() + reply
            return reply
        self._report_backoff.reset()
        if self.repo.ack_reports(reply.acked_through):
            log.warning(logfmt(msg="the control plane acked reports this host never numbered "
                               "(its state was reset?): reports in flight numbered again "
                               "above its mark", acked_through=reply.acked_through))
            return 0.0
        sent = max(r.seq or 0 for r in batch)
        # Acked up to what was sent: more may be waiting. Short of it, the control plane
        # waits on a gap it lacks; the batch goes again after a pause.
        return 0.0 if reply.acked_through >= sent else REPORT_GAP

    # -- shared -----------------------------------------------------------------------
    def _exchange(self, name: str, body: dict[str, Any], answer: type[Reply],
                  backoff: Backoff) -> Reply | float:
        """POST ``body`` to ``name``: its validated answer, or the seconds to wait before
        calling it again."""
        try:
            raw = self.transport.call("POST", name, body)
            self.state.answered()
            return answer.model_validate(raw)
        except FleetError as exc:
            return self._trouble(name, exc, backoff)
        except ValidationError:
            log.error(logfmt(msg=f"{name} answer does not validate"))
            return backoff.next()

    def _trouble(self, name: str, exc: FleetError, backoff: Backoff) -> float:
        """What to do after ``exc``: the seconds to wait before calling ``name`` again."""
        if isinstance(exc, Backpressure):
            self.state.answered()
            return jittered(exc.retry_after, 0.2)
        if isinstance(exc, Outdated):
            self.state.answered()
            self.state.outdated = exc.detail
            if self.monotonic() - self._outdated_logged >= OUTDATED_RETRY * 10:
                self._outdated_logged = self.monotonic()
                log.error(logfmt(msg="the control plane refuses this agent's version (HTTP "
                                 "426): upgrade healer on this host or the control plane",
                                 version=self.version, detail=exc.detail))
            return jittered(OUTDATED_RETRY)
        if isinstance(exc, Refused):
            self.state.answered()
            log.error(logfmt(msg=f"{name} refused", error=exc))
        else:
            self.state.unanswered()
            log.info(logfmt(msg=f"{name}: no answer from the control plane", error=exc))
        return backoff.next()


def _wire(row: ReportRow) -> dict[str, Any]:
    return {"seq": row.seq, "kind": row.kind, "at": row.at.isoformat(),
            REPORT_KEYS.get(row.kind, row.kind): row.body}
