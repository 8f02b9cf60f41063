"""The root agent's composition root: build the loop from ``Settings`` and run it.

APScheduler runs the sampling cycle (one instance at a time, coalescing missed runs) and
retention pruning. After every cycle the agent publishes its live file (the latest sample,
its own metrics and a heartbeat) for ``healer serve``, the unprivileged process that
answers HTTP and delivers notifications; the agent itself listens on no port
(healer.cli.run starts both). In a fleet (``control_plane_url``), the agent also speaks
the control-plane protocol on threads of its own (healer.fleet): every change that writes
the host waits for a lease, and what happens is reported. Nothing here is built at import
time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import generate_latest

from healer.act.engine import ChangeEngine
from healer.act.registry import build_actuators
from healer.act.seal import JournalSeal
from healer.detect import Detector, IncidentTracker, UnknownPath
from healer.detect.silences import SilenceCache
from healer.diagnose.context import playbook_context
from healer.diagnose.playbook import PlaybookDiagnoser
from healer.fleet.config import FleetConfig
from healer.host.gpu import build_gpu_backend
from healer.live import LivePublisher, prepare_runtime_dir
from healer.logs import logfmt
from healer.models import IncidentStatus
from healer.monitor.process import watch_processes
from healer.monitor.registry import Monitor, build_collectors, cgroup_tree_from
from healer.notify.notifier import Notifier
from healer.pipeline import Pipeline
from healer.settings import Settings
from healer.store.engine import open_store
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from healer.window import MetricWindow
from playbooks.loader import load_library
from playbooks.noise import load_noise

if TYPE_CHECKING:
    from healer.fleet.link import FleetLink

log = logging.getLogger("healer.daemon")

PRUNE_EVERY_SECONDS = 600.0  # retention pruning
PRUNE_FIRST_AFTER_SECONDS = 30.0  # not during start-up's busiest seconds


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Daemon:
    """Everything ``healer run`` holds; tests build one with their own Settings."""

    settings: Settings
    repo: Repository
    telemetry: Telemetry
    pipeline: Pipeline
    scheduler: BackgroundScheduler
    publisher: LivePublisher | None = None  # None: nobody reads the live file (tests)
    fleet: FleetLink | None = None  # None: a single host
    _last_start: float = 0.0
    _lag: float = 0.0
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Recover unfinished changes (the network is not needed for that), then start the
        fleet's threads and the scheduled jobs."""
        # In a fleet the recovery's own transitions are reported too; a host that left its
        # fleet stops queueing reports (root CLI commands follow the same flag).
        self.repo.set_fleet_reporting(self.fleet is not None)
        self.pipeline.engine.reconcile_on_start()
        if self.fleet is not None:
            self.fleet.start()
        s = self.settings
        self.scheduler.add_job(self._cycle, "interval", seconds=s.interval_seconds, id="sample",
                               max_instances=1, coalesce=True, misfire_grace_time=None,
                               next_run_time=utcnow())
        self.scheduler.add_job(self._prune, "interval", seconds=PRUNE_EVERY_SECONDS, id="prune",
                               max_instances=1, coalesce=True,
                               next_run_time=utcnow() + timedelta(
                                   seconds=PRUNE_FIRST_AFTER_SECONDS))
        self.scheduler.start()
        log.info(logfmt(msg="healer agent started", mode=s.mode, interval=s.interval_seconds,
                        host_id=s.host_id))

    def stop(self) -> None:
        """Stop the jobs and flush what is buffered; idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.scheduler.shutdown(wait=True)
        if self.fleet is not None:
            self.fleet.stop()
        self.pipeline.close()
        log.info(logfmt(msg="healer stopped"))

    def _cycle(self) -> None:
        start = time.monotonic()
        if self._last_start:
            self._lag = max(0.0, start - self._last_start - self.settings.interval_seconds)
            self.telemetry.cycle_lag_seconds.set(self._lag)
        self._last_start = start
        _guarded("cycle", self._cycle_and_publish)

    def _cycle_and_publish(self) -> None:
        if self.fleet is not None:
            self.fleet.drain()  # votes, alerts, diagnoses: into this cycle
        sample = self.pipeline.cycle()
        if self.fleet is not None:
            self.fleet.sampled(sample)
        if self.publisher is not None:
            agent_metrics = generate_latest(self.telemetry.agent_registry).decode()
            self.publisher.publish(sample, agent_metrics, self._lag)

    def _prune(self) -> None:
        s = self.settings
        _guarded("prune", lambda: self.repo.prune(utcnow(), s.retention_days,
                                                  s.raw_retention_minutes))


def _guarded(job: str, fn: Callable[[], object]) -> None:
    """A job's failure is logged with its traceback; it never kills the scheduler."""
    try:
        fn()
    except Exception:
        log.exception(logfmt(msg="job failed", job=job))


def effective_settings(settings: Settings) -> Settings:
    """Cap the mode at ``advise`` without root: healer can read but not write the kernel."""
    if os.geteuid() != 0 and settings.mode == "auto":
        log.warning(logfmt(msg="not root: mode capped at advise; actuators report not permitted"))
        return settings.model_copy(update={"mode": "advise"})
    return settings


def _join(fleet: FleetConfig, repo: Repository, telemetry: Telemetry,
          notifier: Notifier) -> FleetLink:
    """The fleet link. Its module (the protocol, the transport, the threads: ~1 MB) loads
    here, so a single host never carries it."""
    from healer.fleet.link import FleetLink

    return FleetLink(fleet, repo, telemetry=telemetry, notifier=notifier)


def build_daemon(settings: Settings, *, publish_group: int | None = None,
                 publish: bool = True, fleet: FleetConfig | None = None) -> Daemon:
    """Build every part from settings; nothing runs until ``Daemon.start``.

    ``publish``: write the live file for ``healer serve`` (in ``settings.live_dir``, group
    ``publish_group``). ``fleet``: join that fleet (healer.fleet.config.fleet_config)."""
    settings = effective_settings(settings)
    telemetry = Telemetry()
    repo = open_store(settings, isolate_migration=True)  # alembic stays out of the daemon
    library = load_library(settings.playbooks_dir)  # all or nothing: a bad file stops start-up
    gpu = build_gpu_backend(settings)
    cgroups = cgroup_tree_from(settings)
    monitor = Monitor(build_collectors(settings, telemetry=telemetry, gpu=gpu,
                                       cgroup_tree=cgroups), telemetry=telemetry)
    window = MetricWindow(settings.window_seconds, settings.interval_seconds)
    notifier = Notifier(settings, repo)
    # The mode the fleet sees is the one in force (capped at advise without root).
    link = None if fleet is None else _join(replace(fleet, mode=settings.mode), repo,
                                            telemetry, notifier)
    engine = ChangeEngine.from_settings(settings, repo=repo, window=window, telemetry=telemetry,
                                        actuators=build_actuators(settings, gpu=gpu),
                                        notifier=notifier,
                                        seal=JournalSeal.open(repo, settings.key_dir),
                                        fleet=link.leases if link else None)
    watch_processes(monitor.collectors, engine.watched_pids)  # keep fixed pids in the scans
    unknown = UnknownPath(load_noise(), SilenceCache(repo.active_silences),
                          new_per_hour=settings.unclassified_templates_per_hour)
    detector = Detector(library.playbooks,
                        net_scope=f"netns:{settings.netns}" if settings.netns else "host",
                        read_sysctl=engine.read_sysctl, read_cgroup=cgroups.read_cgroup,
                        cgroup_root=str(settings.cgroup_root) if settings.cgroup_root else None,
                        unknown=unknown)
    tracker = IncidentTracker(settings.host_id, sink=repo)
    tracker.resume(repo.iter_incidents(IncidentStatus.OPEN))  # what the last run left open
    pipeline = Pipeline(
        monitor=monitor, window=window, detector=detector, tracker=tracker,
        diagnoser=PlaybookDiagnoser(), context_for=playbook_context(library),
        engine=engine, notifier=notifier, repo=repo, library=library, telemetry=telemetry,
        rediagnose_seconds=settings.rediagnose_seconds,
        # The LLM runs in healer serve; the agent takes up its stored answers and re-checks
        # every proposal with the guard (healer.diagnose.pending.take_up_answers).
        take_llm_answers=settings.llm_enabled,
    )
    if link is not None:
        link.intake = pipeline
    scheduler = BackgroundScheduler(timezone=UTC)
    publisher = None
    if publish:
        prepare_runtime_dir(settings.live_dir, publish_group)
        publisher = LivePublisher(settings.live_dir, interval_seconds=settings.interval_seconds,
                                  mode=settings.mode, group=publish_group)
    return Daemon(settings, repo, telemetry, pipeline, scheduler, publisher, link)

