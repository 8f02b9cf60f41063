"""Pure parsers for the system-wide /proc files (text in, metrics out; no I/O).

Formats: proc(5) and Documentation/filesystems/proc.rst (meminfo, loadavg, stat,
vmstat), Documentation/accounting/psi.rst (pressure files).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from healer.errors import ParseError

_PLURAL_ACRONYM = re.compile(r"([A-Z]{2,})s(?=[A-Z]|$)")  # DelayedACKs, SpuriousRTOs
_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=4096)
def snake(name: str) -> str:
    """``ListenOverflows`` -> ``listen_overflows``; ``Active(anon)`` -> ``active_anon``."""
    s = _PLURAL_ACRONYM.sub(r"\1S", name)
    s = _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", s))
    return _NON_WORD.sub("_", s.lower()).strip("_")


@lru_cache(maxsize=512)
def _meminfo_name(field: str, has_kb: bool) -> str:
    base = field[3:] if field in ("MemTotal", "MemFree", "MemAvailable") else field
    return f"mem.{snake(base)}_{'bytes' if has_kb else 'pages'}"


def parse_meminfo(text: str, path: str = "meminfo") -> dict[str, float]:
    """``MemTotal: 123 kB`` -> ``mem.total_bytes`` (exactly 123*1024); unitless -> ``_pages``."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        field, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            raise ParseError(path, f"bad line {line!r}")
        has_kb = len(parts) > 1 and parts[1] == "kB"
        value = int(parts[0]) * 1024 if has_kb else int(parts[0])
        out[_meminfo_name(field, has_kb)] = float(value)
    if "mem.total_bytes" not in out:
        raise ParseError(path, "no MemTotal")
    total, avail = out["mem.total_bytes"], out.get("mem.available_bytes")
    if avail is not None and total > 0:
        out["mem.available_percent"] = 100.0 * avail / total
    return out


def parse_loadavg(text: str, path: str = "loadavg") -> dict[str, float]:
    """Load averages plus runnable and total scheduling entities (processes + threads)."""
    parts = text.split()
    try:
        running, total = parts[3].split("/")
        return {
            "load.1m": float(parts[0]),
            "load.5m": float(parts[1]),
            "load.15m": float(parts[2]),
            "procs.runnable": float(running),
            # proc(5): "the number of kernel scheduling entities (processes, threads)
            # that currently exist" -- each holds a PID, so this is what pid_max bounds.
            "pids.count": float(total),
        }
    except (IndexError, ValueError) as exc:
        raise ParseError(path, f"bad loadavg {text.strip()!r}") from exc


class CpuTimes(NamedTuple):
    """The aggregate ``cpu`` line of /proc/stat, in USER_HZ ticks."""

    user: int
    nice: int
    system: int
    idle: int
    iowait: int
    irq: int
    softirq: int
    steal: int

    @property
    def total(self) -> int:
        # guest and guest_nice are already included in user and nice (proc(5)).
        return sum(self)


_STAT_COUNTERS = {
    "ctxt": "cpu.context_switches_total",
    "processes": "cpu.forks_total",
    "intr": "cpu.interrupts_total",
}
_STAT_GAUGES = {"procs_running": "procs.running", "procs_blocked": "procs.blocked"}


def parse_stat(text: str, path: str = "stat") -> tuple[CpuTimes, dict[str, float]]:
    """The aggregate CPU times and the counters of /proc/stat (btime as ``boot.time_seconds``)."""
    cpu: CpuTimes | None = None
    out: dict[str, float] = {}
    ncpu = 0
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        try:
            if key == "cpu":
                vals = [int(v) for v in rest.split()[:8]]
                vals += [0] * (8 - len(vals))  # pre-2.6.11 kernels lack steal
                cpu = CpuTimes(*vals)
            elif key.startswith("cpu"):
                ncpu += 1
            elif key in _STAT_COUNTERS:
                out[_STAT_COUNTERS[key]] = float(rest.split()[0])
            elif key in _STAT_GAUGES:
                out[_STAT_GAUGES[key]] = float(rest)
            elif key == "btime":
                out["boot.time_seconds"] = float(rest)
        except (ValueError, IndexError) as exc:
            raise ParseError(path, f"bad line {line[:80]!r}") from exc
    if cpu is None:
        raise ParseError(path, "no aggregate cpu line")
    out["cpu.count"] = float(ncpu)
    return cpu, out


def cpu_percentages(prev: CpuTimes, cur: CpuTimes) -> dict[str, float]:
    """Share of ticks per state between two readings, in percent (empty if no time passed)."""
    deltas = [max(0, c - p) for c, p in zip(cur, prev, strict=True)]
    total = sum(deltas)
    if total <= 0:
        return {}
    d = dict(zip(CpuTimes._fields, deltas, strict=True))
    out = {f"cpu.{k}_percent": 100.0 * v / total for k, v in d.items()}
    out["cpu.busy_percent"] = 100.0 * (total - d["idle"] - d["iowait"]) / total
    return out


@lru_cache(maxsize=1024)
def _vmstat_name(field: str) -> str:
    # nr_* are current page counts (gauges); the rest are event counters (mm/vmstat.c).
    return f"vmstat.{field}" if field.startswith("nr_") else f"vmstat.{field}_total"


def parse_vmstat(text: str, path: str = "vmstat") -> dict[str, float]:
    """Every line of /proc/vmstat: ``nr_*`` as gauges, the rest as ``_total`` counters."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        field, _, value = line.partition(" ")
        try:
            out[_vmstat_name(field)] = float(int(value))
        except ValueError as exc:
            raise ParseError(path, f"bad line {line[:80]!r}") from exc
    return out


_PSI_KEYS = ("avg10", "avg60", "avg300")


def parse_psi(text: str, resource: str, path: str = "pressure") -> dict[str, float]:
    """``some avg10=.. avg60=.. avg300=.. total=<us>`` -> ``psi.<res>.some_avg10`` etc.

    ``total`` is cumulative stall time in microseconds (psi.rst); it becomes
    ``psi.<res>.some_seconds_total``.
    """
    out: dict[str, float] = {}
    for line in text.splitlines():
        kind, *pairs = line.split()
        if kind not in ("some", "full"):
            raise ParseError(path, f"bad line {line!r}")
        try:
            kv = dict(p.split("=", 1) for p in pairs)
            for k in _PSI_KEYS:
                out[f"psi.{resource}.{kind}_{k}"] = float(kv[k])
            out[f"psi.{resource}.{kind}_seconds_total"] = int(kv["total"]) / 1e6
        except (KeyError, ValueError) as exc:
            raise ParseError(path, f"bad line {line!r}") from exc
    if not out:
        raise ParseError(path, "empty pressure file")
    return out


def parse_file_nr(text: str, path: str = "sys/fs/file-nr") -> dict[str, float]:
    """``allocated unused max`` (Documentation/admin-guide/sysctl/fs.rst)."""
    parts = text.split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ParseError(path, f"bad file-nr {text.strip()!r}")
    return {
        "fs.file_nr.allocated": float(parts[0]),
        "fs.file_nr.unused": float(parts[1]),
        "fs.file_nr.max": float(parts[2]),
    }


def parse_int(text: str, path: str) -> int:
    """A sysctl file holding one integer."""
    try:
        return int(text.strip())
    except ValueError as exc:
        raise ParseError(path, f"not an integer: {text.strip()[:40]!r}") from exc
