"""Where the cgroup hierarchies are mounted, and how v2 knob names map onto v1.

Parsing is pure (``parse_mountinfo``); reading /proc/self/mountinfo is the caller's job.
Field layout: proc(5), /proc/pid/mountinfo: ``id parent maj:min root mountpoint opts
[optional...] - fstype source superopts``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# systemd's conversion between cgroup v2 cpu.weight (1..10000, default 100) and cgroup v1
# cpu.shares (2..262144, default 1024): src/basic/cgroup-util.h, CGROUP_WEIGHT_* and
# CGROUP_CPU_SHARES_*; shares = weight * 1024 / 100, clamped.
WEIGHT_MIN, WEIGHT_DEFAULT, WEIGHT_MAX = 1, 100, 10000
SHARES_MIN, SHARES_DEFAULT, SHARES_MAX = 2, 1024, 262144

# v1 memory.limit_in_bytes reads back PAGE_COUNTER_MAX pages for "unlimited"
# (9223372036854771712 on 4 KiB pages); anything at or above 2**62 means no limit.
V1_UNLIMITED_FLOOR = 2**62


# cgroup v1 mount options that are not controller names (Documentation/admin-guide/
# cgroup-v1/cgroups.rst, "Mounting"); name=..., release_agent=... carry an "=".
_NOT_CONTROLLERS = frozenset({"rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode"})


@dataclass(frozen=True)
class CgroupMounts:
    """The unified (v2) mount, if any, and the v1 mount of each controller."""

    unified: Path | None = None
    v1: dict[str, Path] = field(default_factory=dict)


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and len(text[i + 1 : i + 4]) == 3 and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> CgroupMounts:
    """Find the cgroup2 mount and the v1 controller mounts in mountinfo text."""
    unified: Path | None = None
    v1: dict[str, Path] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mountpoint = Path(_unescape(fields[4]))
        if tail[0] == "cgroup2" and unified is None:
            unified = mountpoint
        elif tail[0] == "cgroup":
            for opt in tail[2].split(","):
                if opt not in _NOT_CONTROLLERS and "=" not in opt:
                    v1.setdefault(opt, mountpoint)
    return CgroupMounts(unified=unified, v1=v1)


def weight_to_shares(weight: int) -> int:
    """cgroup v2 cpu.weight -> v1 cpu.shares, as systemd converts it."""
    return max(SHARES_MIN, min(SHARES_MAX, weight * SHARES_DEFAULT // WEIGHT_DEFAULT))


def shares_to_weight(shares: int) -> int:
    """cgroup v1 cpu.shares -> v2 cpu.weight, as systemd converts it."""
    return max(WEIGHT_MIN, min(WEIGHT_MAX, shares * WEIGHT_DEFAULT // SHARES_DEFAULT))


def to_v1_value(v2_knob: str, value: str) -> str:
    """A value written in v2 units, spelled for the v1 file it lands in."""
    if v2_knob == "memory.max":
        return "-1" if value == "max" else value  # v1 takes -1 for "no limit"
    if v2_knob == "cpu.weight":
        return str(weight_to_shares(int(value)))
    return value


def from_v1_value(v2_knob: str, value: str) -> str:
    """A value read from a v1 file, in the v2 knob's units."""
    if v2_knob == "memory.max" and value.isdigit() and int(value) >= V1_UNLIMITED_FLOOR:
        return "max"
    if v2_knob == "cpu.weight" and value.isdigit():
        return str(shares_to_weight(int(value)))
    return value
