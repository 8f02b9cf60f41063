"""``FleetLink``: the agent's whole side of the fleet, built from Settings and the host token.

    link = FleetLink(FleetConfig.of(settings, token), repo, telemetry=..., notifier=...)
    engine = ChangeEngine(..., fleet=link.leases)   # leases gate every change to the host
    link.intake = pipeline                          # alerts and fleet diagnoses go in here
    link.start()                                    # three threads: leases, sender, events
    each cycle: link.drain(); pipeline.cycle(); link.sampled(sample)
    link.stop()

The threads (healer.fleet.worker) speak the protocol; the sampling cycle only reads what
they learned and, in ``drain``, hands the events that change the journal or the incidents
to the loop: votes onto this host's own awaiting rows (the engine decides them, the guard
re-checks), alerts into detection, fleet diagnoses into the LLM take-up. When the control
plane stops answering, fleet-gated changes wait (no fresh grant), a person is told once
per outage, and everything local goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from healer.errors import HealerError
from healer.fleet.config import FleetConfig
from healer.fleet.events import CycleEvent, EventPoller
from healer.fleet.leases import LeaseClient
from healer.fleet.sender import REPORT_COALESCE, Sender
from healer.fleet.state import FleetState
from healer.fleet.transport import Endpoint, Transport, tls_context
from healer.fleet.wire import DiagnosisEvent, IncidentEvent, VoteEvent
from healer.fleet.worker import Worker
from healer.logs import logfmt
from healer.models import Alert, Sample
from healer.notify.events import Event
from healer.notify.notifier import Notifier
from healer.store.repository import Repository
from healer.telemetry import Telemetry

log = logging.getLogger("healer.fleet")

REQUEST_TIMEOUT = 10.0
# The headline numbers of a sample report (those the host has).
SAMPLE_METRICS = ("load.1m", "mem.available_bytes", "psi.cpu.some_avg10",
                  "psi.memory.some_avg10", "psi.io.some_avg10")


class Intake(Protocol):
    """Where alerts and fleet diagnoses enter the loop (healer.pipeline.Pipeline)."""

    def take_alert(self, alert: Alert) -> None: ...

    def take_fleet_answer(self, fleet_fingerprint: str, answer: dict[str, Any],
                          model: str) -> None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FleetLink:
    """The lease client, the sender and the events poller, with their threads."""

    def __init__(self, config: FleetConfig, repo: Repository, *,
                 telemetry: Telemetry | None = None, notifier: Notifier | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = _utcnow) -> None:
        endpoint = Endpoint.parse(config.url)
        context = tls_context(config.ca_file) if endpoint.tls else None

        def transport() -> Transport:
            return Transport(endpoint, config.token, config.version, context=context,
                             timeout=REQUEST_TIMEOUT, telemetry=telemetry)

        self.config, self.repo, self.telemetry, self.notifier = config, repo, telemetry, notifier
        self._mono, self._wall = monotonic, wall
        self.state = FleetState(monotonic)
        self.leases = LeaseClient(transport(), config.host_id, self.state, repo.get_incident,
                                  monotonic=monotonic)
        self.sender = Sender(transport(), repo, self.state, config.mode, dict(config.labels),
                             config.version, config.outbox_bytes, telemetry=telemetry,
                             wall=wall, monotonic=monotonic)
        self.events = EventPoller(transport(), repo, self.state, on_turn=self.leases.turn)
        lease_worker = Worker("fleet-leases", [self.leases.step],
                              abort=self.leases.transport.close)
        self.leases.wake = lease_worker.wake
        sender_worker = Worker("fleet-sender", [self.sender.heartbeat, self.sender.report],
                               abort=self.sender.transport.close)
        # a report queued: send it, with those queued with it (a cycle's transitions)
        repo.on_report = partial(sender_worker.wake, 1, REPORT_COALESCE)
        self._workers = [
            lease_worker,
            sender_worker,
            Worker("fleet-events", [self.events.poll], abort=self.events.transport.close),
        ]
        self.intake: Intake | None = None
        self._outage: datetime | None = None  # when the current outage was noticed
        self._sampled = float("-inf")

    def start(self) -> None:
        """Report from now on, and start the threads."""
        self.repo.set_fleet_reporting(True)
        for worker in self._workers:
            worker.start()
        log.info(logfmt(msg="fleet agent started", control_plane=self.config.url,
                        host_id=self.config.host_id, version=self.config.version))

    def stop(self) -> None:
        """Stop the threads (requests in flight, a long poll too, are cut short); what is
        unsent stays in the outbox."""
        for worker in self._workers:
            worker.stop()
        for worker in self._workers:
            worker.join()

    # -- on the sampling cycle ----------------------------------------------------------
    def drain(self) -> None:
        """Hand the events that arrived to the loop, and tell a person once when the
        control plane stopped answering."""
        for batch in self.events.take():
            for event in batch.events:
                self._handle(event)
            self.events.keep_cursor(batch.cursor)
        self._watch_reachability()

    def sampled(self, sample: Sample) -> None:
        """Queue a sample summary every ``sample_seconds`` (droppable, unlike the rest)."""
        now = self._mono()
        if now - self._sampled < self.config.sample_seconds:
            return
        self._sampled = now
        metrics = {k: sample.metrics[k] for k in SAMPLE_METRICS if k in sample.metrics}
        self.repo.add_report("sample", "sample", {
            "at": datetime.fromtimestamp(sample.ts, UTC).isoformat(), "metrics": metrics,
            "collector_errors": list(sample.collector_errors)})

    def _handle(self, event: CycleEvent) -> None:
        if isinstance(event, VoteEvent):
            self._vote(event)
        elif isinstance(event, IncidentEvent):
            alert = event.incident.alert()
            if alert is None:
                log.warning(logfmt(msg="alert event ignored: no alert name, or labels too "
                                   "long"))
            elif self.intake is not None:
                self.intake.take_alert(alert)
        elif isinstance(event, DiagnosisEvent) and self.intake is not None:
            self.intake.take_fleet_answer(event.fleet_fingerprint, event.answer, event.model)

    def _vote(self, event: VoteEvent) -> None:
        try:
            self.repo.add_fleet_vote(event.action_id, event.user, event.approve, event.comment)
        except HealerError as exc:  # not this host's, or no longer awaiting
            log.info(logfmt(msg="fleet vote not taken", id=event.action_id, error=exc))
            return
        log.info(logfmt(msg="fleet vote recorded", id=event.action_id, user=event.user,
                        approve=event.approve))

    def _watch_reachability(self) -> None:
        down_for = self.state.unreachable_for()
        if self.telemetry is not None:
            self.telemetry.fleet_reachable.set(0 if down_for else 1)
        if down_for < self.config.unreachable_after:
            if self._outage is not None and down_for == 0:
                log.warning(logfmt(msg="control plane answers again", down_since=self._outage))
                self._outage = None
            return
        if self._outage is not None:
            return
        self._outage = self._wall()
        text = (f"the control plane {self.config.url} has not answered for {down_for:.0f}s: "
                "fleet-gated changes wait (none is applied without a fresh lease); "
                "notifications, escalations and verification go on, reports wait locally")
        log.error(logfmt(msg="control plane unreachable", url=self.config.url,
                         seconds=f"{down_for:.0f}"))
        if self.notifier is not None:
            self.notifier.emit(Event.ESCALATION, "fleet:control-plane", {"text": text},
                               "warning", occurrence=self._outage.isoformat())
