"""cgroup limits on v1 and v2 (Documentation/admin-guide/cgroup-v2.rst, cgroup-v1/).

The hierarchy is detected per path: a v2 knob name is written at the unified mount when
that cgroup has the file there (its controller is enabled in v2); otherwise it is
translated to the v1 controller's file (memory.max -> memory.limit_in_bytes, cpu.weight ->
cpu.shares, pids.max unchanged). The journal keeps the file's own spelling, so a restore
writes back exactly what was read; ``in_action_units`` converts for the guard.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from guardrails.actions import CGROUP_KNOBS, Action, CgroupLimit, check_cgroup_value
from guardrails.decision import Decision
from healer.act.base import require_allow, require_original, translate_os_error
from healer.errors import ActuatorError
from healer.host.cgroupfs import V1_UNLIMITED_FLOOR, CgroupMounts, from_v1_value, parse_mountinfo
from healer.host.cgroupfs import to_v1_value as _to_v1
from healer.models import ActionRecord

V2_KNOBS = frozenset({"memory.max", "memory.high", "pids.max", "cpu.weight"})
# Files in the same cgroup that tell the guard how much memory the group has used.
PEAK_FILES = ("memory.peak", "memory.max_usage_in_bytes")


@dataclass(frozen=True)
class _Knob:
    file: Path
    mount: Path
    translate: str | None  # the v2 knob name when the file is its v1 twin under another name


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None


def _as_bytes(text: str | None) -> float | None:
    if text is None or not text.isdigit() or int(text) >= V1_UNLIMITED_FLOOR:
        return None  # "max", unlimited or absent
    return float(text)


class CgroupActuator:
    """``cgroup_limit`` on v1 or v2, confined to ``cgroup_root`` when one is set."""

    kinds: tuple[str, ...] = ("cgroup_limit",)

    def __init__(
        self,
        mounts: CgroupMounts | None = None,
        cgroup_root: Path | None = None,
        procfs_root: Path = Path("/proc"),
    ) -> None:
        self._mounts = mounts
        self._root = str(cgroup_root).rstrip("/") if cgroup_root is not None else None
        self._procfs = procfs_root

    @property
    def mounts(self) -> CgroupMounts:
        """The cgroup mounts, read once from /proc/self/mountinfo unless given."""
        if self._mounts is None:
            text = (self._procfs / "self" / "mountinfo").read_text(encoding="utf-8")
            self._mounts = parse_mountinfo(text)
        return self._mounts

    def _check_confined(self, action: CgroupLimit) -> None:
        path = action.path.rstrip("/") or "/"
        if action.scope.startswith("cgroup:"):
            scope_path = action.scope.removeprefix("cgroup:").rstrip("/")
            if path != scope_path and not path.startswith(scope_path + "/"):
                raise ActuatorError(action.scope, action.target, "path outside the action's scope")
        elif action.scope != "host":
            raise ActuatorError(action.scope, action.target, "cgroup limits act in cgroup scopes")
        if self._root is not None and path != self._root and not path.startswith(self._root + "/"):
            raise ActuatorError(action.scope, action.target, f"outside cgroup_root {self._root}")

    def _knob(self, action: Action, *, must_exist: bool = True) -> tuple[CgroupLimit, _Knob | None]:
        if not isinstance(action, CgroupLimit):
            raise ActuatorError(action.scope, action.target, "not a cgroup action")
        self._check_confined(action)
        rel = action.path.strip("/")
        if ".." in rel.split("/"):
            raise ActuatorError(action.scope, action.target, "'..' in cgroup path")
        knob, mounts = action.knob, self.mounts
        candidates: list[tuple[Path, str, str | None]] = []
        if knob in V2_KNOBS and mounts.unified is not None:
            candidates.append((mounts.unified, knob, None))
        v1_name = CGROUP_KNOBS[knob]
        v1_mount = mounts.v1.get(v1_name.split(".")[0]) if v1_name else None
        if v1_name and v1_mount is not None:
            candidates.append((v1_mount, v1_name, knob if v1_name != knob else None))
        for mount, name, translate in candidates:
            file = mount / rel / name
            if file.is_file() and os.path.realpath(file).startswith(str(mount) + os.sep):
                return action, _Knob(file, mount, translate)
        if must_exist:
            raise ActuatorError(action.scope, action.target, "no such cgroup or knob")
        return action, None

    def key_exists(self, action: Action) -> bool:
        """True when the cgroup has this knob (in either hierarchy) within our confinement."""
        try:
            return self._knob(action, must_exist=False)[1] is not None
        except ActuatorError:
            return False

    def read(self, action: Action) -> str | None:
        """The knob file's content, as the kernel spells it; None when it does not exist."""
        _, knob = self._knob(action, must_exist=False)
        return _read_text(knob.file) if knob else None

    def in_action_units(self, action: Action, value: str) -> str:
        """Convert a v1 read (shares, PAGE_COUNTER_MAX bytes) into the v2 knob's units."""
        if not isinstance(action, CgroupLimit):
            return value
        _, knob = self._knob(action, must_exist=False)
        return from_v1_value(knob.translate, value) if knob and knob.translate else value

    def facts(self, action: Action) -> dict[str, float]:
        """Host memory, the budget the parent allows, and the group's peak usage."""
        cg, knob = self._knob(action)
        assert knob is not None
        out: dict[str, float] = {}
        host = self._host_memory()
        if host is not None:
            out["host_memory_bytes"] = host
        if cg.knob in ("memory.max", "memory.high", "memory.limit_in_bytes"):
            budget = self._parent_budget(knob)
            if budget is not None or host is not None:
                out["cgroup_budget_bytes"] = min(b for b in (budget, host) if b is not None)
            for name in PEAK_FILES:
                peak = _as_bytes(_read_text(knob.file.parent / name))
                if peak is not None:
                    out["peak_bytes"] = peak
                    break
        return out

    def _host_memory(self) -> float | None:
        text = _read_text(self._procfs / "meminfo") or ""
        for line in text.splitlines():
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024  # proc(5): kB
        return None

    def _parent_budget(self, knob: _Knob) -> float | None:
        # The tightest finite limit on the same file among the ancestors (hierarchical limits).
        limits: list[float] = []
        parent = knob.file.parent.parent
        while parent != knob.mount and str(parent).startswith(str(knob.mount)):
            limit = _as_bytes(_read_text(parent / knob.file.name))
            if limit is not None:
                limits.append(limit)
            parent = parent.parent
        return min(limits) if limits else None

    def apply(self, action: Action, decision: Decision) -> str:
        """Write the limit (only under an allow), read it back and return the read-back."""
        require_allow(action, decision)
        cg, knob = self._knob(action)
        assert knob is not None
        value = _to_v1(knob.translate, cg.value) if knob.translate else cg.value
        return self._write_and_read(cg, knob, value)

    def restore(self, record: ActionRecord) -> str:
        """Write the original file content back and return the read-back."""
        cg, knob = self._knob(record.action)
        assert knob is not None
        return self._write_and_read(cg, knob, require_original(record, check_cgroup_value))

    def _write_and_read(self, action: CgroupLimit, knob: _Knob, value: str) -> str:
        try:
            if _read_text(knob.file) != value:
                knob.file.write_text(value + "\n", encoding="ascii")
            back = _read_text(knob.file)
        except OSError as exc:
            raise translate_os_error(action.scope, action.target, exc, str(knob.file)) from exc
        if back is None:
            raise ActuatorError(action.scope, action.target, "knob vanished after write")
        return back
