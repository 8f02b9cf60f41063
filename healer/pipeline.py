"""The loop, in one screen:

    monitor -> detect -> diagnose -> guard -> act -> verify -> keep | roll back -> notify

``Pipeline.cycle`` runs once per sampling interval on the scheduler's thread. Slow work
(an LLM diagnosis) runs on a small pool and its result is taken up on a later cycle, so
sampling stays on schedule; everything that changes the system happens on the cycle
thread, through the change engine, which re-checks the guard at apply time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from healer.act.engine import ChangeEngine
from healer.detect import Detector, IncidentChange, IncidentTracker
from healer.diagnose.base import DiagnoseContext, Diagnoser
from healer.logs import kv
from healer.models import Diagnosis, Incident, Sample
from healer.monitor.registry import Monitor
from healer.notify import Notifier
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
    _pending: dict[int, Future[Diagnosis]] = field(default_factory=dict)

    def cycle(self) -> Sample:
        """Take one sample and move every incident and action one step forward."""
        started = time.perf_counter()
        sample = self.monitor.sample()  # monitor
        self.window.append(sample)
        self.telemetry.host.update(sample.metrics)
        self.repo.add_rollups(self.rollups.add(sample))
        for change in self.tracker.apply(self.detector.observe(self.window, sample)):  # detect
            self._on_incident(change)
        self._take_diagnoses()  # diagnose -> guard (proposals enter the journal)
        self.engine.step()  # act -> verify -> keep | roll back
        self.telemetry.cycle_seconds.observe(time.perf_counter() - started)
        return sample

    def _on_incident(self, change: IncidentChange) -> None:
        incident = change.incident
        self.telemetry.incidents.labels(incident.playbook, change.kind).inc()
        if change.kind in ("opened", "reopened", "resolved"):
            log.info(kv(msg=f"incident {change.kind}: {incident.playbook}", scope=incident.scope,
                        id=incident.id, count=incident.count))
            self.notifier.incident(change.kind, incident)
        if change.kind in ("opened", "reopened") and incident.id is not None:
            self._diagnose(incident)

    def _diagnose(self, incident: Incident) -> None:
        assert incident.id is not None
        if incident.id in self._pending:
            return
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
                log.exception(kv(msg="diagnosis failed", incident=incident_id))
                continue
            self.repo.set_diagnosis(incident_id, diagnosis)
            log.info(kv(msg=f"diagnosed: {diagnosis.root_cause}", incident=incident_id,
                        source=diagnosis.source, confidence=diagnosis.confidence,
                        proposals=len(diagnosis.proposals)))
            playbook = self.library.get(incident.playbook)
            for proposal in diagnosis.proposals:
                self.engine.propose(incident, proposal, playbook)

    def close(self) -> None:
        """Finish in-flight diagnoses and persist the partial rollup minute."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.repo.add_rollups(self.rollups.flush())
