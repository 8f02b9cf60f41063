"""The loop, in one screen:

    monitor -> detect -> diagnose -> guard -> act -> verify -> keep | roll back -> notify

``Pipeline.cycle`` runs once per sampling interval on the scheduler's thread. Slow work
runs on a small pool and its result is taken up on a later cycle, so sampling stays on
schedule; everything that changes the system happens on the cycle thread, through the
change engine, which re-checks the guard at apply time.

Diagnosis comes in two halves: the playbook's, here, for every incident; and, when an LLM
is configured, the LLM job (``healer.diagnose.pending``), which runs in the unprivileged
``healer serve`` and answers unclassified incidents and gives second opinions through the
store. Each cycle takes up its stored answers: they join the playbook's diagnosis (never
replace it), and every LLM proposal goes to the engine's guard like any other.

In a fleet (healer.fleet), two more things come in from the control plane, handed over on
this thread before the cycle: Alertmanager alerts about this host (``take_alert``: they
enter detection as events, healer.detect.alerts) and the fleet's LLM answers
(``take_fleet_answer``: taken up as the local ones are, healer.diagnose.answers).

An incident is diagnosed when it opens or reopens, and again while it keeps firing once
its change was rolled back (a regression, or commit-confirmed recovery after a restart) and
``rediagnose_seconds`` passed since the last diagnosis and the rollback; see
``rediagnosis_due``. A storm costs nothing extra: the interval is checked in memory first.
A capacity raise that was not enough is not rolled back: the engine keeps it and steps
again at once (healer.act.converge), with no new diagnosis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from healer.act.engine import OPEN_STATES, ChangeEngine
from healer.detect import Detector, IncidentChange, IncidentTracker
from healer.diagnose.answers import FleetAnswers, rejoin, take_up_answers
from healer.diagnose.base import DiagnoseContext, Diagnoser
from healer.diagnose.schedule import REDIAGNOSE_SECONDS, rediagnosis_due
from healer.logs import logfmt
from healer.models import Alert, Diagnosis, Incident, IncidentStatus, Sample
from healer.monitor.registry import Monitor
from healer.notify.notifier import Notifier
from healer.recorder import RawRecorder
from healer.store.repository import Repository
from healer.store.rollup import RollupAccumulator
from healer.telemetry import Telemetry
from healer.window import MetricWindow
from playbooks.loader import Library

log = logging.getLogger("healer.pipeline")


@dataclass
class Pipeline:
    """Wires the stages; built by ``healer.daemon.build_daemon``."""

    monitor: Monitor
    window: MetricWindow
    detector: Detector
    tracker: IncidentTracker
    diagnoser: Diagnoser
    context_for: Callable[[Incident], DiagnoseContext]
    engine: ChangeEngine
    notifier: Notifier
    repo: Repository
    library: Library
    telemetry: Telemetry
    rollups: RollupAccumulator = field(default_factory=RollupAccumulator)
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="diagnose")
    )
    rediagnose_seconds: float = REDIAGNOSE_SECONDS
    # With an LLM configured, healer serve stores its answers; the agent takes them up.
    take_llm_answers: bool = False
    _alerts: list[Alert] = field(default_factory=list)  # relayed by the fleet, not yet seen
    _fleet_answers: FleetAnswers = field(default_factory=FleetAnswers)
    _pending: dict[int, Future[Diagnosis]] = field(default_factory=dict)
    _diagnosed: dict[int, datetime] = field(default_factory=dict)  # incident id -> last submit
    _started: datetime | None = None
    raw: RawRecorder = field(init=False)  # full resolution around incidents

    def __post_init__(self) -> None:
        self._started = self.engine.clock()
        self.raw = RawRecorder(self.repo, self.window, self.library, self.engine.slos)
        self._count_open()

    def cycle(self) -> Sample:
        """Take one sample and move every incident and action one step forward."""
        started = time.perf_counter()
        sample = self.monitor.sample()  # monitor
        self.window.append(sample)
        self.repo.add_rollups(self.rollups.add(sample))
        events = self.detector.observe(self.window, sample)
        events += [self.detector.alert(a, self.window, sample.ts) for a in self._alerts]
        self._alerts.clear()
        for change in self.tracker.apply(events):  # detect
            self._on_incident(change)
            self.raw.incident(change.kind, change.incident, sample.ts)
        self.raw.add(sample)
        self._take_diagnoses()  # diagnose -> guard (proposals enter the journal)
        self._consult_llm()
        self.engine.step()  # act -> verify -> keep | roll back
        self.telemetry.cycle_seconds.observe(time.perf_counter() - started)
        return sample

    def take_alert(self, alert: Alert) -> None:
        """An alert about this host, relayed by the fleet: detected on the next cycle."""
        self._alerts.append(alert)

    def take_fleet_answer(self, fleet_fingerprint: str, answer: dict[str, Any],
                          model: str) -> None:
        """The fleet's LLM answer for a fleet fingerprint: taken up on the next cycles."""
        self._fleet_answers.add(fleet_fingerprint, answer, model, self.engine.clock())

    def _on_incident(self, change: IncidentChange) -> None:
        incident = change.incident
        self.telemetry.incidents.labels(incident.playbook, change.kind).inc()
        if change.kind in ("opened", "reopened", "resolved"):
            log.info(logfmt(msg=f"incident {change.kind}: {incident.playbook}",
                            scope=incident.scope, id=incident.id, count=incident.count))
            self.notifier.incident(change.kind, incident)
            self._count_open()
        if incident.id is None:
            return
        if change.kind in ("opened", "reopened"):
            self._diagnose(incident)
        elif change.kind == "updated" and self._rediagnose(incident):
            log.info(logfmt(msg=f"diagnosing again: {incident.playbook}", scope=incident.scope,
                            id=incident.id))
            self._diagnose(incident)
        elif change.kind == "resolved":
            self._diagnosed.pop(incident.id, None)

    def _count_open(self) -> None:
        """``healer_open_incidents``: the store's count, which survives restarts."""
        self.telemetry.open_incidents.set(self.repo.count_incidents(IncidentStatus.OPEN))

    def _rediagnose(self, incident: Incident) -> bool:
        assert incident.id is not None
        if incident.id in self._pending:
            return False
        now, interval = self.engine.clock(), self.rediagnose_seconds
        last = self._diagnosed.get(incident.id)
        if last is None and incident.diagnosis is not None:
            last = self._started  # diagnosed before this process started: wait one interval
        if last is not None and (now - last).total_seconds() < interval:
            return False  # in memory, no I/O: an alert storm's updates stop here
        activity = self.repo.incident_activity(incident.id, OPEN_STATES)
        return rediagnosis_due(now, interval, diagnosed=incident.diagnosis is not None,
                               last_diagnosis=last, activity=activity)

    def _diagnose(self, incident: Incident) -> None:
        assert incident.id is not None
        if incident.id in self._pending:
            return
        self._diagnosed[incident.id] = self.engine.clock()
        ctx = self.context_for(incident)
        self._pending[incident.id] = self.pool.submit(self.diagnoser.diagnose, incident, ctx)

    def _take_diagnoses(self) -> None:
        for incident_id, future in list(self._pending.items()):
            if not future.done():
                continue
            del self._pending[incident_id]
            incident = self.repo.get_incident(incident_id)
            if incident is None:
                continue
            try:
                diagnosis = future.result()
            except Exception:  # a diagnoser bug must not stop the loop
                log.exception(logfmt(msg="diagnosis failed", incident=incident_id))
                continue
            self.repo.set_diagnosis(incident_id, rejoin(self.repo, incident_id, diagnosis))
            log.info(logfmt(msg=f"diagnosed: {diagnosis.root_cause}", incident=incident_id,
                            source=diagnosis.source, confidence=diagnosis.confidence,
                            proposals=len(diagnosis.proposals)))
            playbook = self.library.get(incident.playbook)
            for proposal in diagnosis.proposals:
                self.engine.propose(incident, proposal, playbook)

    def _consult_llm(self) -> None:
        """Take up the LLM's stored answers and the fleet's: every proposal is guarded here,
        as any other."""
        if self.take_llm_answers:
            take_up_answers(self.repo, self.library, self.engine.propose)
        self._fleet_answers.take_up(self.repo, self.library, self.engine.propose,
                                    self.engine.clock())

    def close(self) -> None:
        """Cancel diagnoses not yet started (one already running is abandoned, not awaited)
        and persist the partial rollup minute and the buffered raw samples."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.repo.add_rollups(self.rollups.flush())
        self.raw.flush()
