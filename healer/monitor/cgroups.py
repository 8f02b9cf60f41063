"""Per-cgroup metrics on cgroup v1, v2 or hybrid hosts, and a confined knob reader.

Each controller is read from the hierarchy that owns it: its v1 mount when it has one,
else the unified (v2) mount when the v2 root offers it (a controller binds to one hierarchy
only; Documentation/admin-guide/cgroup-v2.rst, "Mounting"). Paths are cgroup paths as the
kernel prints them ("/healer-chaos-1/oom"), relative to each hierarchy's mount, and are
embedded in metric names: ``cgroup./healer-chaos-1/oom.memory.current_bytes``.

Unlimited limits (v2 "max", v1 PAGE_COUNTER_MAX bytes) are omitted rather than given a
sentinel, so a threshold on ``*.max_bytes`` never sees a fake number. The walk is
re-done every ``rescan_seconds``; each cycle only re-reads the files planned then.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from healer.host.cgroupfs import (
    V1_UNLIMITED_FLOOR,
    CgroupMounts,
    from_v1_value,
    parse_mountinfo,
    shares_to_weight,
)
from healer.models import SamplePart

log = logging.getLogger(__name__)

Extract = Callable[[str], "float | None"]
MAX_GROUPS = 64  # ~7 files a group at ~9 us each (open+read+close): ~6 ms a cycle at the cap
MAX_DEPTH = 2
RESCAN_SECONDS = 5.0
# v2 knob -> v1 file for read_cgroup; None: no v1 equivalent (memory.high is v2-only;
# v1 soft_limit_in_bytes means something else). Names not listed are the same in both.
V1_FILES: dict[str, str | None] = {
    "memory.max": "memory.limit_in_bytes",
    "memory.current": "memory.usage_in_bytes",
    "memory.peak": "memory.max_usage_in_bytes",
    "memory.high": None,
    "cpu.weight": "cpu.shares",
}
_KNOB_RE = re.compile(r"[a-z_]+(?:\.[a-z_]+)+")


@dataclass(frozen=True)
class Hierarchy:
    """Where one controller's files live, and in which version's spelling."""

    mount: Path
    v2: bool


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.events, pids.events, cpu.stat, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        if key and value.isdigit():
            out[key] = int(value)
    return out


def parse_count(text: str) -> float | None:
    """A single non-negative integer file; None when it is anything else."""
    value = text.strip()
    return float(value) if value.isdigit() else None


def parse_limit(text: str) -> float | None:
    """A limit file; None for "max" and for v1's PAGE_COUNTER_MAX "unlimited"."""
    value = parse_count(text)
    return None if value is None or value >= V1_UNLIMITED_FLOOR else value


def _keyed(key: str, scale: float = 1.0) -> Extract:
    def extract(text: str) -> float | None:
        value = parse_flat_keyed(text).get(key)
        return None if value is None else value * scale

    return extract


def _shares_as_weight(text: str) -> float | None:
    shares = parse_count(text)
    return None if shares is None else float(shares_to_weight(int(shares)))


def _scaled(scale: float) -> Extract:
    def extract(text: str) -> float | None:
        value = parse_count(text)
        return None if value is None else value * scale

    return extract


@dataclass(frozen=True)
class Spec:
    """One metric: its controller, and its file and parser in v2 and in v1."""

    metric: str
    controller: str
    v2: tuple[str, Extract]
    v1: tuple[str, Extract]


SPECS = (
    Spec("memory.current_bytes", "memory",
         ("memory.current", parse_count), ("memory.usage_in_bytes", parse_count)),
    Spec("memory.max_bytes", "memory",
         ("memory.max", parse_limit), ("memory.limit_in_bytes", parse_limit)),
    Spec("memory.peak_bytes", "memory",  # v2 memory.peak: Linux 5.19+
         ("memory.peak", parse_count), ("memory.max_usage_in_bytes", parse_count)),
    Spec("memory.oom_kill_total", "memory",  # v1 oom_control's oom_kill: Linux 4.13+
         ("memory.events", _keyed("oom_kill")), ("memory.oom_control", _keyed("oom_kill"))),
    Spec("pids.current", "pids", ("pids.current", parse_count), ("pids.current", parse_count)),
    Spec("pids.max", "pids", ("pids.max", parse_limit), ("pids.max", parse_limit)),
    Spec("pids.events_max_total", "pids",  # forks refused by this group's (or an ancestor's) max
         ("pids.events", _keyed("max")), ("pids.events", _keyed("max"))),
    Spec("cpu.weight", "cpu", ("cpu.weight", parse_count), ("cpu.shares", _shares_as_weight)),
    Spec("cpu.usage_seconds_total", "cpuacct",  # v2 cpu.stat exists without the cpu controller
         ("cpu.stat", _keyed("usage_usec", 1e-6)), ("cpuacct.usage", _scaled(1e-9))),
)


def resolve_hierarchies(
    mounts: CgroupMounts, v2_controllers: frozenset[str]
) -> dict[str, Hierarchy]:
    """controller -> hierarchy: the v1 mount if any, else unified if its root offers it."""
    out: dict[str, Hierarchy] = {}
    for ctrl in ("memory", "pids", "cpu", "cpuacct"):
        if ctrl in mounts.v1:
            out[ctrl] = Hierarchy(mounts.v1[ctrl], v2=False)
        elif mounts.unified is not None and (ctrl in v2_controllers or ctrl == "cpuacct"):
            out[ctrl] = Hierarchy(mounts.unified, v2=True)
    return out


def _read(path: str) -> str | None:
    """One small cgroupfs file; None when it (or its cgroup) is gone or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 4096).decode("ascii", "replace")
    except OSError:  # ENODEV: the cgroup was removed after open
        return None
    finally:
        os.close(fd)


def _normalize(path: str) -> str:
    """``/a/b`` from any spelling of an absolute cgroup path; ValueError on '..' or junk."""
    parts = [p for p in path.split("/") if p]
    if not path.startswith("/") or "\0" in path or any(p in (".", "..") for p in parts):
        raise ValueError(f"bad cgroup path {path!r}")
    return "/" + "/".join(parts)


class CgroupTree:
    """The host's cgroup hierarchies, confined to ``cgroup_root`` when one is set."""

    def __init__(
        self,
        procfs_root: Path = Path("/proc"),
        sysfs_root: Path = Path("/sys"),
        cgroup_root: Path | str | None = None,
        mounts: CgroupMounts | None = None,
    ) -> None:
        self._procfs = procfs_root
        self._sysfs = sysfs_root
        self.root = _normalize(str(cgroup_root)) if cgroup_root is not None else "/"
        self._mounts = mounts
        self._hier: dict[str, Hierarchy] | None = None

    def _rebase(self, mount: Path) -> Path:
        # mountinfo names real mount points; a test's sysfs_root stands in for /sys.
        if self._sysfs == Path("/sys") or not mount.is_relative_to("/sys"):
            return mount
        return self._sysfs / mount.relative_to("/sys")

    def hierarchies(self) -> dict[str, Hierarchy]:
        """controller -> hierarchy, read once from mountinfo ({} when there is none)."""
        if self._hier is None:
            mounts = self._mounts
            if mounts is None:
                text = _read_file(self._procfs / "self" / "mountinfo") or ""
                mounts = parse_mountinfo(text)
            mounts = CgroupMounts(
                unified=self._rebase(mounts.unified) if mounts.unified else None,
                v1={c: self._rebase(m) for c, m in mounts.v1.items()},
            )
            ctl = _read_file(mounts.unified / "cgroup.controllers") if mounts.unified else None
            self._hier = resolve_hierarchies(mounts, frozenset((ctl or "").split()))
        return self._hier

    def contains(self, path: str) -> bool:
        """True when the normalized ``path`` is ``cgroup_root`` or below it."""
        return self.root == "/" or path == self.root or path.startswith(self.root + "/")

    def discover(self, max_groups: int = MAX_GROUPS, max_depth: int = MAX_DEPTH) -> list[str]:
        """Cgroup paths to watch, shallowest first: the root's subtree, or the host's top."""
        mounts = {h.mount for h in self.hierarchies().values()}
        found: dict[str, int] = {}
        for mount in sorted(mounts):
            for path, depth in _walk(mount, self.root, max_groups, max_depth):
                found.setdefault(path, depth)
        if self.root == "/":
            found.pop("/", None)  # the root cgroup is the host: already in mem.*, load.*
        return sorted(found, key=lambda p: (found[p], p))[:max_groups]

    def read_cgroup(self, path: str, knob: str) -> str | None:
        """A knob by its v2 name, in v2 units ("max" kept, v1 shares as weight); None if absent.

        Raises ValueError for '..', a relative path or a malformed knob name; a path
        outside ``cgroup_root`` reads as None.
        """
        rel = _normalize(path)
        if not _KNOB_RE.fullmatch(knob):
            raise ValueError(f"bad cgroup knob {knob!r}")
        if not self.contains(rel):
            return None
        ctrl = "cpuacct" if knob.startswith("cpuacct.") else knob.split(".")[0]
        hier = self.hierarchies().get(ctrl)
        name = knob if hier is None or hier.v2 else V1_FILES.get(knob, knob)
        if hier is None or name is None:
            return None
        text = _read(str(hier.mount / rel.lstrip("/") / name))
        if text is None:
            return None
        value = text.strip()
        return value if name == knob else from_v1_value(knob, value)


def _read_file(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _walk(mount: Path, root: str, limit: int, max_depth: int) -> list[tuple[str, int]]:
    """Breadth-first (path, depth) under ``mount/root``; stops once ``limit`` are found."""
    start = os.path.join(mount, root.lstrip("/"))
    if not os.path.isdir(start):
        return []
    out: list[tuple[str, int]] = [(root, 0)]
    level = [(start, root.rstrip("/"))]
    for depth in range(1, max_depth + 1):
        nxt: list[tuple[str, str]] = []
        for directory, path in level:
            if len(out) + len(nxt) >= limit:
                break
            try:
                with os.scandir(directory) as it:
                    names = sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
            except OSError:  # removed while we walked
                continue
            for name in names:
                if any(c.isspace() or not c.isprintable() for c in name):
                    continue  # metric names cannot hold it (the detector matches \S+)
                nxt.append((f"{directory}/{name}", f"{path}/{name}"))
        out.extend((p, depth) for _, p in nxt)
        level = nxt
    return out


class CgroupCollector:
    """``cgroup.<path>.*`` for each watched cgroup: memory, pids and CPU, v1 or v2."""

    name = "cgroups"

    def __init__(
        self,
        tree: CgroupTree,
        rescan_seconds: float = RESCAN_SECONDS,
        max_groups: int = MAX_GROUPS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tree = tree
        self._rescan = rescan_seconds
        self._max_groups = max_groups
        self._clock = clock
        self._next_scan = float("-inf")
        self._plan: list[tuple[str, str, Extract]] = []  # (metric, file, parser)
        self._absent_logged = False

    def read_cgroup(self, path: str, knob: str) -> str | None:
        """The Detector's ``read_cgroup``: see ``CgroupTree.read_cgroup``."""
        return self.tree.read_cgroup(path, knob)

    def _replan(self) -> None:
        hier = self.tree.hierarchies()
        if not hier and not self._absent_logged:
            log.info("cgroup metrics off: no memory, pids or cpu hierarchy in mountinfo")
            self._absent_logged = True
        plan: list[tuple[str, str, Extract]] = []
        for path in self.tree.discover(self._max_groups):
            dirs: dict[Path, str | None] = {}  # v1: a path exists only in some hierarchies
            for spec in SPECS:
                h = hier.get(spec.controller)
                if h is None:
                    continue
                if h.mount not in dirs:
                    d = f"{h.mount}{path}"
                    dirs[h.mount] = d if os.path.isdir(d) else None
                directory = dirs[h.mount]
                if directory is not None:
                    file, parse = spec.v2 if h.v2 else spec.v1
                    plan.append((f"cgroup.{path}.{spec.metric}", f"{directory}/{file}", parse))
        self._plan = plan

    def collect(self) -> SamplePart:
        """Read every planned file; a cgroup removed since the walk just drops out."""
        now = self._clock()
        if now >= self._next_scan:
            self._replan()
            self._next_scan = now + self._rescan
        metrics: dict[str, float] = {}
        for metric, file, parse in self._plan:
            text = _read(file)
            if text is not None:
                value = parse(text)
                if value is not None:
                    metrics[metric] = value
        return SamplePart(metrics=metrics)
