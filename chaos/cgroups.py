"""Scratch cgroups on cgroup v1, v2 or a hybrid host, detected at runtime.

Paths are cgroup paths as the kernel prints them ("/healer-chaos-ab12/app"), relative to
each hierarchy's mount, the same form the action catalog's ``cgroup:<path>`` scopes use.
On v1 the path exists once per controller hierarchy (memory, pids, cpu); on v2 once, with
controllers enabled top-down through ``cgroup.subtree_control``
(Documentation/admin-guide/cgroup-v2.rst, "Enabling and Disabling").
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu")

# v2 knob -> v1 knob (Documentation/admin-guide/cgroup-v1/*.rst).
V1_KNOBS = {"memory.max": "memory.limit_in_bytes", "cpu.weight": "cpu.shares"}


class CgroupError(RuntimeError):
    """A cgroup operation failed."""


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(fstype, mountpoint, super options) for every cgroup mount (proc(5) mountinfo)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        parts, rparts = left.split(), right.split()
        if len(rparts) >= 3 and rparts[0] in ("cgroup", "cgroup2"):
            found.append((rparts[0], parts[4], set(rparts[2].split(","))))
    return found


@dataclass(frozen=True)
class CgroupFS:
    """One cgroup layout: version and where each controller lives."""

    version: int
    roots: dict[str, Path] = field(default_factory=dict)  # controller -> hierarchy mount

    @classmethod
    def detect(cls) -> CgroupFS:
        """Pure v2 when its root offers memory, pids and cpu; otherwise the v1 hierarchies."""
        mounts = _mounts()
        for fstype, point, _ in mounts:
            if fstype == "cgroup2":
                avail = set(Path(point, "cgroup.controllers").read_text().split())
                if set(CONTROLLERS) <= avail:
                    return cls.v2(Path(point))
        roots: dict[str, Path] = {}
        for fstype, point, opts in mounts:
            if fstype == "cgroup":
                for c in CONTROLLERS:
                    if c in opts:
                        roots[c] = Path(point)
        if set(roots) != set(CONTROLLERS):
            raise CgroupError(
                f"no usable cgroup hierarchy for {CONTROLLERS} (have {sorted(roots)})"
            )
        return cls(1, roots)

    @classmethod
    def v2(cls, root: Path, controllers: tuple[str, ...] = CONTROLLERS) -> CgroupFS:
        """A v2 layout rooted at root, with the given controllers enabled below it."""
        return cls(2, {c: root for c in controllers} or {"": root})

    @property
    def hierarchies(self) -> list[Path]:
        """The distinct mount points (one on v2)."""
        return sorted(set(self.roots.values()))

    def dirs(self, path: str) -> list[Path]:
        """Every directory that represents path."""
        rel = path.strip("/")
        if ".." in rel.split("/"):
            raise ValueError(f"bad cgroup path {path!r}")
        return [h / rel for h in self.hierarchies]

    def _dir(self, path: str, knob: str) -> Path:
        return self.roots.get(knob.split(".")[0], self.hierarchies[0]) / path.strip("/")

    def create(self, path: str) -> None:
        """mkdir path in every hierarchy; on v2 enable controllers down to it."""
        for d in self.dirs(path):
            d.mkdir(parents=True, exist_ok=True)
        if self.version == 2:
            self._enable_subtree(path)

    def _enable_subtree(self, path: str) -> None:
        want = " ".join(f"+{c}" for c in self.roots if c)
        if not want:
            return
        root = self.hierarchies[0]
        parts = path.strip("/").split("/")
        for i in range(len(parts)):  # every ancestor of the leaf, root included
            parent = root.joinpath(*parts[:i])
            ctl = parent / "cgroup.subtree_control"
            have = set(ctl.read_text().split())
            if not {c for c in self.roots if c} <= have:
                ctl.write_text(want)

    def knob_name(self, knob: str) -> str:
        """The knob's file name in this version."""
        return V1_KNOBS.get(knob, knob) if self.version == 1 else knob

    def write(self, path: str, knob: str, value: str) -> None:
        """Write a knob given by its v2 name; values translate to v1 where needed."""
        name = self.knob_name(knob)
        if self.version == 1 and knob == "cpu.weight":
            value = str(max(2, int(value) * 1024 // 100))  # weight 100 == shares 1024
        if self.version == 1 and value == "max":
            value = "-1"
        try:
            (self._dir(path, knob) / name).write_text(value)
        except OSError as exc:
            raise CgroupError(f"write {path}:{name}={value}: {exc}") from exc

    def read(self, path: str, knob: str) -> str:
        """A knob's raw value, by its v2 name."""
        return (self._dir(path, knob) / self.knob_name(knob)).read_text().strip()

    def procs_files(self, path: str) -> list[str]:
        """The cgroup.procs files a child writes its pid to, to join path everywhere."""
        return [str(d / "cgroup.procs") for d in self.dirs(path)]

    def procs(self, path: str) -> set[int]:
        """Pids in path (any hierarchy)."""
        out: set[int] = set()
        for d in self.dirs(path):
            with contextlib.suppress(OSError):
                out |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
        return out

    def events(self, path: str, controller: str) -> dict[str, int]:
        """memory: ``oom_kill`` etc.; pids: ``max`` (fork failures). v1 and v2 alike."""
        d = self._dir(path, controller)
        name = {"memory": "memory.events", "pids": "pids.events"}[controller]
        if self.version == 1 and controller == "memory":
            name = "memory.oom_control"  # v1 carries oom_kill here since Linux 4.13
        out: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in (d / name).read_text().splitlines():
                k, _, v = line.partition(" ")
                with contextlib.suppress(ValueError):
                    out[k] = int(v)
        return out

    def remove(self, path: str, timeout: float = 10.0) -> None:
        """Kill every member process, then rmdir the subtree bottom-up (idempotent)."""
        for top in self.dirs(path):
            if not top.is_dir():
                continue
            subtree = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*subtree, top]:
                _kill_members(d, timeout)
                with contextlib.suppress(FileNotFoundError):
                    _rmdir(d, timeout)

    def list_chaos(self, prefix: str = "healer-chaos-") -> list[str]:
        """Top-level scratch cgroups chaos made (for leak checks)."""
        names: set[str] = set()
        for h in self.hierarchies:
            names |= {p.name for p in h.iterdir() if p.is_dir() and p.name.startswith(prefix)}
        return sorted(names)


def _kill_members(d: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            return
        if (d / "cgroup.kill").exists():  # v2, Linux 5.14+
            with contextlib.suppress(OSError):
                (d / "cgroup.kill").write_text("1")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _rmdir(d: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            d.rmdir()
            return
        except OSError as exc:  # EBUSY while zombies are being reaped
            if isinstance(exc, FileNotFoundError) or time.monotonic() > deadline:
                if isinstance(exc, FileNotFoundError):
                    return
                raise CgroupError(f"rmdir {d}: {exc}") from exc
            time.sleep(0.05)
