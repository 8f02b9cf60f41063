"""The fleet's periodic jobs, on one replica at a time (``pg_try_advisory_lock``).

Every tick: reclaim leases whose agents stopped renewing, trip breakers that reached K,
open systemic fleet incidents, end rollouts that went quiet, and queue the one page per
fleet incident and per tripped breaker. Once a minute, prune old events and reports.
A replica that does not get the lock skips the tick: another is doing it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from guardrails.policy import FleetPolicy
from healer.logs import logfmt
from healer.notify.events import Event
from healer.notify.notifier import Notifier
from healer.store.repository import Repository

log = logging.getLogger("healer.control")
TICK_SECONDS = 1.0  # a dead agent's lease (TTL 15 s) is reclaimed within TTL + a tick
PRUNE_SECONDS = 60.0


@dataclass
class TickReport:
    ran: bool = False  # False: another replica holds the jobs' lock
    reclaimed: int = 0
    tripped: list[str] = field(default_factory=list)
    systemic: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    paged: int = 0


@dataclass
class FleetJobs:
    """What ``healer serve`` schedules every ``TICK_SECONDS`` on a control plane."""

    repo: Repository
    policy: FleetPolicy
    notifier: Notifier
    clock: Callable[[], float] = time.monotonic
    _pruned_at: float | None = None

    def tick(self) -> TickReport:
        """One round of every job, if this replica holds the lock."""
        report = TickReport()
        with self.repo.one_replica("fleet-tick") as mine:
            if not mine:
                return report
            report.ran = True
            for lease in self.repo.reclaim_expired(self.policy):
                report.reclaimed += 1
                log.info(logfmt(msg="lease reclaimed: its agent stopped renewing",
                                host=lease.host_id, remedy=lease.remedy, lease=lease.id))
            report.tripped = self.repo.evaluate_breakers(self.policy)
            report.systemic = self.repo.evaluate_systemic(self.policy)
            for fingerprint in report.systemic:
                log.warning(logfmt(msg="systemic fleet incident opened: waiting hosts hold",
                                   fingerprint=fingerprint))
            report.ended = self.repo.end_quiet_rollouts(self.policy)
            report.paged = self._page()
            self._prune()
        return report

    def _page(self) -> int:
        incidents, breakers = self.repo.unpaged()
        for i in incidents:
            self.notifier.emit(Event.FLEET_INCIDENT, f"fleet-incident:{i.id}", {
                "text": f"{i.hosts} of {i.reporting} reporting hosts have {i.fingerprint} "
                        "at once: automatic remedies hold fleet-wide until a person looks "
                        "(`healer fleet resume`)", "fingerprint": i.fingerprint},
                occurrence=i.opened_at.isoformat())
            self.repo.mark_paged(fleet_incident=i.id)
        for b in breakers:
            self.notifier.emit(Event.BREAKER_TRIPPED, f"remedy:{b.remedy}", {
                "text": f"{b.remedy} failed verification on {b.failures} hosts within the "
                        f"hour: no host starts it until `healer fleet resume {b.remedy}`",
                "remedy": b.remedy}, occurrence=(b.tripped_at.isoformat() if b.tripped_at
                                                 else ""))
            self.repo.mark_paged(breaker=b.remedy)
        return len(incidents) + len(breakers)

    def _prune(self) -> None:
        now = self.clock()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_SECONDS:
            return
        self._pruned_at = now
        pruned = self.repo.prune_fleet()
        if pruned:
            log.info(logfmt(msg="fleet rows pruned", rows=pruned))
