"""Top processes by CPU, memory and file-descriptor usage, via psutil.

A scan costs tens of microseconds per process, so it runs every
``process_scan_seconds`` (default 10 s) and returns ``processes=None`` in between.
The fd ranking exists for the fd-limit playbook: a process close to its
RLIMIT_NOFILE is usually idle and small, so CPU and memory would never pick it.
Watched pids (``watch``: open incidents' ``pid:<n>`` scopes, in-flight actions) are kept
in every scan whatever their rank: after a fix lowers a process's fd usage it would drop
out of the top N, and per-process verification would have nothing to judge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psutil

from healer.models import ProcessInfo, SamplePart
from healer.monitor.base import Collector

log = logging.getLogger(__name__)
WatchSource = Callable[[], Iterable[int]]  # pids to keep in every scan, asked once a scan
# The username (a /proc/PID/status read plus a passwd lookup) and the cgroup and command
# line are read only for the processes kept (``_enrich``), not for every process scanned.
_ATTRS = ["pid", "name", "cpu_percent", "memory_info", "num_fds"]


class ProcessCollector:
    """Every ``interval`` seconds: the top ``top_n`` by CPU, by RSS and by fd usage, plus
    every watched pid that is still alive."""

    name = "processes"

    def __init__(
        self,
        top_n: int = 10,
        interval: float = 10.0,
        procfs_root: Path = Path("/proc"),
        clock: Callable[[], float] = time.monotonic,
        watched_pids: WatchSource | None = None,
    ) -> None:
        self.top_n = top_n
        self.interval = interval
        self.root = procfs_root
        self._clock = clock
        self._next = 0.0
        self._watched = watched_pids
        self._watch_failed = False

    def watch(self, source: WatchSource) -> None:
        """Keep the pids ``source()`` returns in every scan (it is called once per scan)."""
        self._watched = source

    def _watched_now(self) -> set[int]:
        if self._watched is None:
            return set()
        try:
            pids = {int(p) for p in self._watched()}
        except Exception as exc:  # the source reads the store: a failure must not cost the scan
            if not self._watch_failed:
                log.warning("process watch-list unavailable: error=%r", exc)
                self._watch_failed = True
            return set()
        self._watch_failed = False
        return pids

    def collect(self) -> SamplePart:
        now = self._clock()
        if now < self._next:
            return SamplePart()
        self._next = now + self.interval
        infos = list(self._scan())
        metrics: dict[str, float] = {"procs.count": float(len(infos))}
        usage = [_fd_usage(p) for p in infos]
        if usage:
            metrics["procs.fd_usage_max_percent"] = max(usage)
        return SamplePart(metrics=metrics, processes=tuple(self._top(infos)))

    def _scan(self) -> Iterable[ProcessInfo]:
        for proc in psutil.process_iter(_ATTRS, ad_value=None):
            info: dict[str, Any] = proc.info
            mem = info.get("memory_info")
            soft, hard = self._nofile(proc)
            yield ProcessInfo(
                pid=info["pid"],
                name=info.get("name") or "",
                cpu_percent=float(info.get("cpu_percent") or 0.0),
                rss_bytes=int(mem.rss) if mem is not None else 0,
                num_fds=info.get("num_fds"),
                nofile_soft=soft,
                nofile_hard=hard,
            )

    def _top(self, infos: list[ProcessInfo]) -> list[ProcessInfo]:
        n = self.top_n
        picked: dict[int, ProcessInfo] = {}
        for key in (lambda p: p.cpu_percent, lambda p: float(p.rss_bytes), _fd_usage):
            for p in sorted(infos, key=key, reverse=True)[:n]:
                picked.setdefault(p.pid, p)
        watched = self._watched_now()
        for p in infos:
            if p.pid in watched:
                picked.setdefault(p.pid, p)
        return [self._enrich(p) for p in picked.values()]

    def _enrich(self, p: ProcessInfo) -> ProcessInfo:
        """Add the user, cgroup path and command line, only for the processes we keep."""
        cgroup = read_cgroup(self.root / str(p.pid) / "cgroup")
        try:
            proc = psutil.Process(p.pid)
        except (psutil.Error, OSError):
            return p.model_copy(update={"cgroup": cgroup, "cmdline": ""})
        cmdline = _quietly(lambda: " ".join(proc.cmdline())[:512])
        username = _quietly(proc.username)
        return p.model_copy(update={"cgroup": cgroup, "cmdline": cmdline, "username": username})

    def _nofile(self, proc: psutil.Process) -> tuple[int | None, int | None]:
        """RLIMIT_NOFILE soft/hard via prlimit(2); falls back to /proc/PID/limits."""
        try:
            soft, hard = proc.rlimit(psutil.RLIMIT_NOFILE)
            return _lim(soft), _lim(hard)
        except (psutil.Error, OSError):
            return parse_limits_nofile(self.root / str(proc.pid) / "limits")


def _quietly(read: Callable[[], str]) -> str:
    try:
        return read()
    except (psutil.Error, OSError):  # gone or not ours to read: an empty field, as in a scan
        return ""


def _lim(v: int) -> int | None:
    return None if v == psutil.RLIM_INFINITY or v < 0 else int(v)


def _fd_usage(p: ProcessInfo) -> float:
    if p.num_fds is None or not p.nofile_soft:
        return 0.0
    return 100.0 * p.num_fds / p.nofile_soft


def parse_limits_nofile(path: Path) -> tuple[int | None, int | None]:
    """``Max open files  1024  4096  files`` from /proc/PID/limits; (None, None) if unreadable."""
    try:
        text = path.read_text()
    except OSError:
        return None, None
    for line in text.splitlines():
        if line.startswith("Max open files"):
            parts = line.split()
            vals = [None if v == "unlimited" else int(v) for v in parts[3:5]]
            return vals[0], vals[1]
    return None, None


def read_cgroup(path: Path) -> str | None:
    """The v1 memory controller's path where memory is bound to v1, else the unified path.

    cgroups(7): a hybrid host lists ``N:memory:/path`` and ``0::/path``; systemd keeps
    its own tree in the unified line, while the controllers (and the knobs healer reads
    and writes, ``cgroup.<path>.*``) live in the v1 hierarchies. Pure v2: the ``0::`` line.
    """
    try:
        text = path.read_text()
    except OSError:
        return None
    unified = None
    for line in text.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, cgpath = rest.partition(":")
        if "memory" in controllers.split(","):
            return cgpath
        if hier == "0" and controllers == "":
            unified = cgpath
    return unified or ("/" if text else None)


def watch_processes(collectors: Sequence[Collector], source: WatchSource) -> None:
    """Hand ``source`` to every process collector in ``collectors`` (the daemon's wiring)."""
    for c in collectors:
        if isinstance(c, ProcessCollector):
            c.watch(source)
