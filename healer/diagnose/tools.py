"""Read-only investigation tools the LLM may call; there is no write tool.

Arguments are pydantic models with ``extra="forbid"``, validated like catalog actions.
Every result is capped (``MAX_OUTPUT`` bytes) and, by the caller, redacted and put in a
data block. Paths are virtual (``/proc/...``, ``/sys/...``), matched against an
allow-list, mapped under the injected roots and resolved, so neither ``..`` nor a
symlink can leave the root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from guardrails import linear
from guardrails.actions import SysctlKey
from healer.diagnose.evidence import format_gpus, format_processes, summarize_series
from healer.models import GpuState, ProcessInfo

MAX_OUTPUT = 4096
MAX_KMSG_SCAN = 5000
_SEG = r"[A-Za-z0-9_.@:-]+"
# Relative to /proc: system-wide counters, sysctls and per-process status (never
# environ, cmdline, mem or maps, which can hold secrets).
PROC_ALLOW = tuple(linear.compile(p) for p in (
    r"(?:loadavg|meminfo|vmstat|stat|uptime|buddyinfo|zoneinfo|slabinfo)",
    r"pressure/(?:cpu|memory|io)",
    r"net/(?:netstat|snmp|snmp6|sockstat|sockstat6|softnet_stat)",
    r"sys/[a-z0-9_]+(?:/[A-Za-z0-9_-]+){1,5}",
    r"[1-9][0-9]{0,9}/(?:status|limits|cgroup|stat|statm|io|oom_score|oom_score_adj)",
    r"driver/nvidia/gpus/[0-9a-fA-F:.]+/information",
))
# Relative to /sys: cgroup accounting files, NIC counters, THP and thermal zones.
SYS_ALLOW = tuple(linear.compile(p) for p in (
    rf"fs/cgroup/(?:{_SEG}/)*(?:memory|pids|cpu|cpuacct|io|cpuset)\.[a-z_.]+",
    rf"fs/cgroup/(?:{_SEG}/)*cgroup\.(?:procs|events|stat)",
    r"class/net/[A-Za-z0-9_.-]+/statistics/[a-z_]+",
    r"kernel/mm/transparent_hugepage/[a-z_]+",
    r"class/thermal/thermal_zone[0-9]+/(?:temp|type)",
))


class _Args(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_max_length=256)


class ReadFile(_Args):
    """Read an allow-listed file under /proc or /sys (counters, sysctls, cgroup stats)."""

    path: str = Field(description="absolute path, e.g. /proc/meminfo or /sys/fs/cgroup/a/pids.max")

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        allowed_rel(v)
        return v


class ReadSysctl(_Args):
    """Read the current value of one sysctl (read only)."""

    key: SysctlKey = Field(description="dotted sysctl name, e.g. net.core.somaxconn")


class GrepKmsg(_Args):
    """Search recent kernel-log records with a regular expression (RE2 syntax)."""

    pattern: str = Field(max_length=128, description="RE2 regular expression")
    limit: int = Field(default=20, ge=1, le=50)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        # The LLM writes this pattern and kernel lines are attacker-chosen: RE2 matches in
        # linear time whatever the pair, and refuses what it cannot (backreferences).
        try:
            linear.compile(v)
        except linear.PatternError as exc:
            raise ValueError(f"bad regular expression: {exc.problem}") from None
        return v


class TopProcesses(_Args):
    """List the top processes by CPU, resident memory or open file descriptors."""

    sort: Literal["cpu", "rss", "fds"] = "cpu"
    limit: int = Field(default=10, ge=1, le=20)


class GpuStateQuery(_Args):
    """Show GPU state (metrics, throttle reasons, processes), one GPU or all."""

    index: int | None = Field(default=None, ge=0, lt=64)


class MetricWindow(_Args):
    """Summarise one metric over the recent window (baseline median vs now, min, max)."""

    name: str = Field(pattern=r"^[a-z0-9_]+(?:\.[a-z0-9_]+){1,6}$", max_length=128)


TOOLS: dict[str, type[_Args]] = {
    "read_file": ReadFile, "read_sysctl": ReadSysctl, "grep_kmsg": GrepKmsg,
    "top_processes": TopProcesses, "gpu_state": GpuStateQuery, "metric_window": MetricWindow,
}


def allowed_rel(path: str) -> tuple[str, str]:
    """Split ``/proc/x`` or ``/sys/x`` into (root name, relative path) if allow-listed."""
    if "\x00" in path or "//" in path or path.endswith("/"):
        raise ValueError("malformed path")
    parts = path.split("/")
    if any(p in ("..", ".") for p in parts):
        raise ValueError("path traversal is not allowed")
    for root, allow in (("proc", PROC_ALLOW), ("sys", SYS_ALLOW)):
        prefix = f"/{root}/"
        if path.startswith(prefix):
            rel = path[len(prefix):]
            if any(a.fullmatch(rel) for a in allow):
                return root, rel
            raise ValueError(f"{path} is not on the allow-list")
    raise ValueError("only /proc and /sys may be read")


def openai_tool_specs() -> list[dict[str, Any]]:
    """The tools in OpenAI function-calling form."""
    specs = []
    for name, model in TOOLS.items():
        schema = model.model_json_schema()
        schema.pop("title", None)
        specs.append({"type": "function", "function": {
            "name": name, "description": (model.__doc__ or "").strip(), "parameters": schema}})
    return specs


def _cap(text: str) -> str:
    data = text.encode()
    if len(data) <= MAX_OUTPUT:
        return text
    return data[:MAX_OUTPUT].decode(errors="ignore") + "\n[truncated]"


@dataclass
class ToolBox:
    """The tools bound to their injected sources."""

    procfs_root: Path = Path("/proc")
    sysfs_root: Path = Path("/sys")
    kmsg: Callable[[], Sequence[str]] = tuple
    processes: Callable[[], Sequence[ProcessInfo]] = tuple
    gpus: Callable[[], Sequence[GpuState]] = tuple
    metric: Callable[[str], Sequence[tuple[float, float]]] = lambda name: ()
    calls: list[str] = field(default_factory=list)

    def run(self, name: str, raw_args: Any) -> str:
        """Validate and run one tool; problems come back as text, never as exceptions."""
        model = TOOLS.get(name)
        if model is None:
            return f"error: unknown tool {name[:64]!r}; tools: {', '.join(TOOLS)}"
        try:
            args = model.model_validate(raw_args if isinstance(raw_args, dict) else {})
        except ValidationError as exc:
            return "error: invalid arguments: " + "; ".join(
                str(e["msg"]) for e in exc.errors(include_url=False))[:500]
        self.calls.append(name)
        try:
            return _cap(getattr(self, f"_{name}")(args))
        except OSError as exc:
            return f"error: {exc.strerror or type(exc).__name__}"

    def _read_file(self, args: ReadFile) -> str:
        root_name, rel = allowed_rel(args.path)
        root = (self.procfs_root if root_name == "proc" else self.sysfs_root).resolve()
        return _read_under(root, rel)

    def _read_sysctl(self, args: ReadSysctl) -> str:
        rel = "sys/" + args.key.replace(".", "/")
        return f"{args.key} = {_read_under(self.procfs_root.resolve(), rel).strip()}"

    def _grep_kmsg(self, args: GrepKmsg) -> str:
        rx = linear.compile(args.pattern)
        lines = list(self.kmsg())[-MAX_KMSG_SCAN:]
        hits = [ln[:400] for ln in lines if rx.search(ln[:400])]
        return "\n".join(hits[-args.limit:]) or "(no matching records)"

    def _top_processes(self, args: TopProcesses) -> str:
        keys: dict[str, Callable[[ProcessInfo], float]] = {
            "cpu": lambda p: p.cpu_percent, "rss": lambda p: p.rss_bytes,
            "fds": lambda p: p.num_fds or 0}
        procs = sorted(self.processes(), key=keys[args.sort], reverse=True)[: args.limit]
        return format_processes(procs)

    def _gpu_state(self, args: GpuStateQuery) -> str:
        gpus = [g for g in self.gpus() if args.index is None or g.index == args.index]
        return format_gpus(gpus) or "(no GPU)"

    def _metric_window(self, args: MetricWindow) -> str:
        pts = list(self.metric(args.name))
        s = summarize_series(args.name, pts)
        if s is None:
            return f"{args.name}: no data"
        values = [v for _, v in pts]
        return (f"{args.name}: baseline={s.baseline} now={s.now} min={min(values)} "
                f"max={max(values)} points={s.points}")


def _read_under(root: Path, rel: str) -> str:
    """Read at most MAX_OUTPUT+1 bytes of root/rel, refusing anything that resolves outside."""
    target = (root / rel).resolve(strict=True)
    if not target.is_relative_to(root):
        raise PermissionError(1, "path escapes its root")
    fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PermissionError(1, "not a regular file")
        return os.read(fd, MAX_OUTPUT + 1).decode(errors="replace")
    finally:
        os.close(fd)
