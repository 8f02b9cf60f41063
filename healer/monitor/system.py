"""Collectors for host-wide /proc files: memory, load, CPU, vmstat, PSI, fs and pids."""

from __future__ import annotations

import logging
from pathlib import Path

from healer.errors import CollectorError
from healer.models import SamplePart
from healer.monitor.parse_proc import (
    CpuTimes,
    cpu_percentages,
    parse_file_nr,
    parse_int,
    parse_loadavg,
    parse_meminfo,
    parse_psi,
    parse_stat,
    parse_vmstat,
)
from healer.monitor.procfs import ProcReader

log = logging.getLogger(__name__)


class ProcFileCollector:
    """Shared plumbing: a procfs root, cached descriptors, OSError -> CollectorError."""

    name = "proc"

    def __init__(self, procfs_root: Path = Path("/proc"), reader: ProcReader | None = None) -> None:
        self.root = procfs_root
        self._reader = reader or ProcReader()
        self._paths: dict[str, str] = {}

    def _path(self, rel: str) -> str:
        """``root/rel`` as text, built once (pathlib joins are not free at 1 Hz)."""
        path = self._paths.get(rel)
        if path is None:
            path = self._paths[rel] = str(self.root / rel)
        return path

    def _read(self, rel: str) -> str:
        path = self._path(rel)
        try:
            return self._reader.read(path)
        except OSError as exc:
            raise CollectorError(self.name, f"{path}: {exc.strerror or exc}") from exc


class MemoryCollector(ProcFileCollector):
    """/proc/meminfo -> ``mem.*_bytes``."""

    name = "meminfo"

    def collect(self) -> SamplePart:
        return SamplePart(metrics=parse_meminfo(self._read("meminfo"), self._path("meminfo")))


class LoadCollector(ProcFileCollector):
    """/proc/loadavg -> ``load.1m`` ..., and the pid count against ``kernel.pid_max``."""

    name = "loadavg"

    def collect(self) -> SamplePart:
        metrics = parse_loadavg(self._read("loadavg"), self._path("loadavg"))
        pid_max = parse_int(self._read("sys/kernel/pid_max"), "sys/kernel/pid_max")
        metrics["pids.max"] = float(pid_max)
        metrics["pids.used_percent"] = 100.0 * metrics["pids.count"] / max(pid_max, 1)
        return SamplePart(metrics=metrics)


class CpuCollector(ProcFileCollector):
    """/proc/stat -> ``cpu.*_percent`` since the previous reading, plus its counters."""

    name = "stat"

    def __init__(self, procfs_root: Path = Path("/proc"), reader: ProcReader | None = None) -> None:
        super().__init__(procfs_root, reader)
        self._prev: CpuTimes | None = None

    def collect(self) -> SamplePart:
        cpu, metrics = parse_stat(self._read("stat"), self._path("stat"))
        if self._prev is not None:
            metrics.update(cpu_percentages(self._prev, cpu))
        self._prev = cpu
        return SamplePart(metrics=metrics)


class VmstatCollector(ProcFileCollector):
    """/proc/vmstat -> every counter."""

    name = "vmstat"

    def collect(self) -> SamplePart:
        return SamplePart(metrics=parse_vmstat(self._read("vmstat"), self._path("vmstat")))


class PsiCollector(ProcFileCollector):
    """/proc/pressure/{cpu,memory,io}; absent on kernels before 4.20 or with psi=0."""

    name = "psi"
    RESOURCES = ("cpu", "memory", "io")

    def __init__(self, procfs_root: Path = Path("/proc"), reader: ProcReader | None = None) -> None:
        super().__init__(procfs_root, reader)
        self._absent_logged = False

    def collect(self) -> SamplePart:
        if not (self.root / "pressure").is_dir():
            if not self._absent_logged:
                log.info("psi absent: no %s (kernel < 4.20 or psi=0)", self.root / "pressure")
                self._absent_logged = True
            return SamplePart()
        metrics: dict[str, float] = {}
        for res in self.RESOURCES:
            rel = f"pressure/{res}"
            metrics.update(parse_psi(self._read(rel), res, self._path(rel)))
        return SamplePart(metrics=metrics)


class FsCollector(ProcFileCollector):
    """/proc/sys/fs/file-nr -> ``fs.file_nr.allocated`` / ``fs.file_nr.max``."""

    name = "file_nr"

    def collect(self) -> SamplePart:
        rel = "sys/fs/file-nr"
        metrics = parse_file_nr(self._read(rel), self._path(rel))
        fmax = metrics["fs.file_nr.max"]
        metrics["fs.file_nr.used_percent"] = 100.0 * metrics["fs.file_nr.allocated"] / max(fmax, 1)
        return SamplePart(metrics=metrics)
