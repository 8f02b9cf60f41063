"""The composition root: build every part from ``Settings`` and run them in one process.

APScheduler runs the sampling cycle (one instance at a time, coalescing missed runs)
and the maintenance jobs; uvicorn serves the dashboard and API on the main thread and
owns SIGTERM/SIGINT. Nothing here is built at import time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from healer.act.engine import ChangeEngine
from healer.act.registry import build_actuators
from healer.detect import Detector, IncidentTracker, UnknownPath
from healer.detect.silences import SilenceCache
from healer.diagnose.base import DiagnoseContext
from healer.diagnose.cache import RepositoryKV
from healer.diagnose.chain import ChainDiagnoser
from healer.diagnose.factory import build_diagnoser
from healer.diagnose.tools import ToolBox
from healer.host.gpu import build_gpu_backend
from healer.logs import logfmt
from healer.models import Incident
from healer.monitor.process import watch_processes
from healer.monitor.registry import Monitor, build_collectors, cgroup_tree_from
from healer.notify import Notifier, OutboxDeliverer, build_channels
from healer.pipeline import Pipeline
from healer.settings import Settings
from healer.store.engine import open_store
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from healer.window import MetricWindow
from playbooks.loader import Library, load_library
from playbooks.noise import load_noise

log = logging.getLogger("healer.daemon")

NOTIFY_EVERY_SECONDS = 2.0  # outbox delivery: separate from sampling, often enough for chat
PRUNE_EVERY_SECONDS = 600.0  # retention pruning
PRUNE_FIRST_AFTER_SECONDS = 30.0  # not during start-up's busiest seconds
TOOL_KMSG_SECONDS = 900.0  # the kernel-log span the LLM's grep_kmsg tool searches
TOOL_SERIES_SECONDS = 3600.0  # the metric span the LLM's metric_window tool summarises


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Daemon:
    """Everything ``healer run`` holds; tests build one with their own Settings."""

    settings: Settings
    repo: Repository
    telemetry: Telemetry
    pipeline: Pipeline
    deliverer: OutboxDeliverer
    scheduler: BackgroundScheduler
    diagnoser: ChainDiagnoser
    _last_start: float = 0.0
    _stopped: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Recover unfinished changes, then start the scheduled jobs."""
        self.pipeline.engine.reconcile_on_start()
        s = self.settings
        self.scheduler.add_job(self._cycle, "interval", seconds=s.interval_seconds, id="sample",
                               max_instances=1, coalesce=True, misfire_grace_time=None,
                               next_run_time=utcnow())
        self.scheduler.add_job(self._deliver, "interval", seconds=NOTIFY_EVERY_SECONDS, id="notify",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(self._prune, "interval", seconds=PRUNE_EVERY_SECONDS, id="prune",
                               max_instances=1, coalesce=True,
                               next_run_time=utcnow() + timedelta(
                                   seconds=PRUNE_FIRST_AFTER_SECONDS))
        self.scheduler.start()
        log.info(logfmt(msg="healer started", mode=s.mode, interval=s.interval_seconds,
                        host_id=s.host_id, web=f"http://{s.host}:{s.port}"))

    def stop(self) -> None:
        """Stop the jobs and flush what is buffered; idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.scheduler.shutdown(wait=True)
        self.pipeline.close()
        log.info(logfmt(msg="healer stopped"))

    def _cycle(self) -> None:
        start = time.monotonic()
        if self._last_start:
            lag = max(0.0, start - self._last_start - self.settings.interval_seconds)
            self.telemetry.cycle_lag_seconds.set(lag)
        self._last_start = start
        _guarded("cycle", self.pipeline.cycle)

    def _deliver(self) -> None:
        _guarded("notify", lambda: self.deliverer.deliver_due(utcnow()))

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


def diagnose_context_factory(settings: Settings, library: Library,
                             window: MetricWindow) -> Callable[[Incident], DiagnoseContext]:
    """What a diagnoser may see of this host: the playbook and read-only tools."""

    def latest_gpus() -> tuple[object, ...]:
        sample = window.latest()
        return sample.gpus if sample else ()

    tools = ToolBox(
        procfs_root=settings.procfs_root, sysfs_root=settings.sysfs_root,
        kmsg=lambda: [r.message for r in window.kmsg(TOOL_KMSG_SECONDS)],
        processes=lambda: window.processes() or (),
        gpus=latest_gpus,  # type: ignore[arg-type]
        metric=lambda name: window.series(name, TOOL_SERIES_SECONDS),
    )

    def context_for(incident: Incident) -> DiagnoseContext:
        return DiagnoseContext(playbook=library.get(incident.playbook), tools=tools)

    return context_for


def build_daemon(settings: Settings) -> Daemon:
    """Build every part from settings; nothing runs until ``Daemon.start``."""
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
    engine = ChangeEngine.from_settings(settings, repo=repo, window=window, telemetry=telemetry,
                                        actuators=build_actuators(settings, gpu=gpu),
                                        notifier=notifier)
    watch_processes(monitor.collectors, engine.watched_pids)  # keep fixed pids in the scans
    unknown = UnknownPath(load_noise(), SilenceCache(repo.active_silences),
                          new_per_hour=settings.unclassified_templates_per_hour)
    detector = Detector(library.playbooks,
                        net_scope=f"netns:{settings.netns}" if settings.netns else "host",
                        read_sysctl=engine.read_sysctl, read_cgroup=cgroups.read_cgroup,
                        cgroup_root=str(settings.cgroup_root) if settings.cgroup_root else None,
                        unknown=unknown)
    diagnoser = build_diagnoser(settings, telemetry, kv=RepositoryKV(repo))
    pipeline = Pipeline(
        monitor=monitor, window=window, detector=detector,
        tracker=IncidentTracker(settings.host_id, sink=repo),
        diagnoser=diagnoser,
        context_for=diagnose_context_factory(settings, library, window),
        engine=engine, notifier=notifier, repo=repo, library=library, telemetry=telemetry,
        rediagnose_seconds=settings.rediagnose_seconds,
    )
    deliverer = OutboxDeliverer(repo, build_channels(settings), telemetry=telemetry)
    scheduler = BackgroundScheduler(timezone=UTC)
    return Daemon(settings, repo, telemetry, pipeline, deliverer, scheduler, diagnoser)
