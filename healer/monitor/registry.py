"""The composition root for collectors, and the ``Monitor`` that merges their parts.

``build_collectors`` lists every collector explicitly (nothing registers itself);
a duplicate name is an error. ``Monitor.sample`` calls each collector once: one
that raises degrades only itself for that cycle, counted in
``healer_collector_errors_total{collector}`` and logged at most once a minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from healer.host.gpu import build_gpu_backend
from healer.host.gpu.backend import GpuBackend
from healer.host.netns import NetnsRunner
from healer.models import GpuState, KmsgRecord, ProcessInfo, Sample
from healer.monitor.base import Collector
from healer.monitor.cgroups import CgroupCollector, CgroupTree
from healer.monitor.gpu import GpuCollector
from healer.monitor.kmsg import KmsgCollector
from healer.monitor.net import NetCollector
from healer.monitor.process import ProcessCollector
from healer.monitor.procfs import ProcReader
from healer.monitor.system import (
    CpuCollector,
    FsCollector,
    LoadCollector,
    MemoryCollector,
    PsiCollector,
    VmstatCollector,
)
from healer.monitor.textfile import TextfileCollector
from healer.settings import Settings
from healer.telemetry import Telemetry

log = logging.getLogger(__name__)
ERROR_LOG_INTERVAL = 60.0  # seconds between log lines for one failing collector


def build_collectors(
    settings: Settings,
    telemetry: Telemetry | None = None,
    *,
    kmsg_persist: bool = True,
    processes: bool = True,
    gpu: GpuBackend | None = None,
    cgroups: bool = True,
    cgroup_tree: CgroupTree | None = None,
) -> list[Collector]:
    """Every collector Settings asks for, in sampling order; duplicate names raise ValueError.

    ``gpu`` shares one backend with the GPU actuators; None builds it from Settings.
    ``cgroup_tree`` is the one whose ``read_cgroup`` the Detector uses; None: from Settings.
    """
    root = settings.procfs_root
    reader = ProcReader()
    runner = NetnsRunner(settings.netns) if settings.netns else None
    collectors: list[Collector] = [
        MemoryCollector(root, reader),
        LoadCollector(root, reader),
        CpuCollector(root, reader),
        VmstatCollector(root, reader),
        PsiCollector(root, reader),
        FsCollector(root, reader),
        NetCollector(root, ProcReader() if runner else reader, runner),
    ]
    if processes:
        collectors.append(
            ProcessCollector(settings.top_processes, settings.process_scan_seconds, root)
        )
    if cgroups:
        collectors.append(CgroupCollector(cgroup_tree or cgroup_tree_from(settings)))
    if settings.textfile_dir is not None:
        collectors.append(TextfileCollector(settings.textfile_dir))
    if settings.kmsg_source != "none":
        collectors.append(
            KmsgCollector(settings.kmsg_source, settings.state_dir, persist=kmsg_persist,
                          telemetry=telemetry, procfs_root=root)
        )
    collectors.append(GpuCollector(gpu if gpu is not None else build_gpu_backend(settings)))
    check_unique(collectors)
    return collectors


def cgroup_tree_from(settings: Settings) -> CgroupTree:
    """The cgroup hierarchies Settings point at, confined to ``cgroup_root`` when set."""
    return CgroupTree(settings.procfs_root, settings.sysfs_root, settings.cgroup_root)


def check_unique(collectors: Sequence[Collector]) -> None:
    """Raise ValueError if two collectors share a name."""
    seen: set[str] = set()
    for c in collectors:
        if c.name in seen:
            raise ValueError(f"duplicate collector name {c.name!r}")
        seen.add(c.name)


class Monitor:
    """Runs every collector once per ``sample()`` and merges the parts into one Sample."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
    ) -> None:
        check_unique(collectors)
        self.collectors = list(collectors)
        self._clock = clock
        self._telemetry = telemetry
        self._last_log: dict[str, float] = {}

    def sample(self) -> Sample:
        """One reading of everything; failing collectors are listed in ``collector_errors``."""
        ts = self._clock()
        metrics: dict[str, float] = {}
        kmsg: list[KmsgRecord] = []
        gpus: list[GpuState] = []
        processes: tuple[ProcessInfo, ...] | None = None
        errors: list[str] = []
        for c in self.collectors:
            try:
                part = c.collect()
            except Exception as exc:  # a collector must never take the loop down
                errors.append(c.name)
                self._record_error(c.name, exc)
                continue
            metrics.update(part.metrics)
            kmsg.extend(part.kmsg)
            gpus.extend(part.gpus)
            if part.processes is not None:
                processes = part.processes
        return Sample(ts=ts, metrics=metrics, kmsg=tuple(kmsg), gpus=tuple(gpus),
                      processes=processes, collector_errors=tuple(errors))

    def _record_error(self, name: str, exc: Exception) -> None:
        if self._telemetry is not None:
            self._telemetry.collector_errors.labels(collector=name).inc()
        now = time.monotonic()
        if now - self._last_log.get(name, -ERROR_LOG_INTERVAL) >= ERROR_LOG_INTERVAL:
            self._last_log[name] = now
            log.warning("collector failed: collector=%s error=%s", name, str(exc)[:300])

    def close(self) -> None:
        """Release what collectors hold open (kmsg descriptor)."""
        for c in self.collectors:
            close = getattr(c, "close", None)
            if callable(close):
                close()
