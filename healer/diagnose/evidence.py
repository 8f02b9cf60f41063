"""The compact evidence bundle an LLM sees, and delimited data blocks.

Raw series never leave the host: each metric becomes a baseline median against the
median of the last few points. Untrusted text (kernel-log lines, process names,
captures, the host's context, tool output) is only ever placed inside a ``data_block``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field

from guardrails import linear
from healer.models import GpuState, Incident, ProcessInfo

BLOCK_OPEN = "<<<DATA id={id}>>>"
BLOCK_CLOSE = "<<<END DATA id={id}>>>"
_NOW_POINTS = 5  # median of the last 5 samples: robust to one outlier at 1 Hz
MAX_KMSG = 20
MAX_PROCS = 8
MAX_LINE = 400
MAX_RELATED = 10  # other open incidents named in the host's context
_TS_PREFIX_RE = linear.compile(r"^\s*\[\s*[0-9.]+\]\s*")  # kernel text: RE2


class MetricSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    baseline: float | None
    now: float
    points: int


class EvidenceBundle(BaseModel):
    """What the prompt carries about one incident; text fields are untrusted."""

    model_config = ConfigDict(frozen=True)

    playbook: str
    scope: str
    severity: str
    count: int
    signals: dict[str, float]
    metrics: tuple[MetricSummary, ...]
    kmsg: tuple[str, ...]
    tunables: dict[str, str]
    processes: tuple[ProcessInfo, ...]
    gpus: tuple[GpuState, ...]
    captures: dict[str, str]
    host: dict[str, str] = Field(default_factory=dict)  # kernel, size, load, GPUs
    related: tuple[str, ...] = ()  # the host's other open incidents, "playbook scope [subject]"


def summarize_series(name: str, points: Sequence[tuple[float, float]],
                     split_ts: float | None = None) -> MetricSummary | None:
    """Baseline median (before ``split_ts``, else the first half) against the recent median."""
    pts = sorted(points)
    if not pts:
        return None
    before = [v for t, v in pts if split_ts is not None and t < split_ts]
    if not before and len(pts) >= 4:
        before = [v for _, v in pts[: len(pts) // 2]]
    now = statistics.median(v for _, v in pts[-_NOW_POINTS:])
    base = statistics.median(before) if before else None
    return MetricSummary(name=name, baseline=base, now=now, points=len(pts))


def _clip(text: str) -> str:
    text = _TS_PREFIX_RE.sub("", text.replace("\x00", ""))
    return text if len(text) <= MAX_LINE else text[:MAX_LINE] + "…"


def build_bundle(incident: Incident, host: Mapping[str, str] | None = None,
                 related: Sequence[str] = ()) -> EvidenceBundle:
    """Compact the incident's evidence: summaries, deduplicated lines, top processes, and
    the host's context."""
    ev = incident.evidence
    split = incident.first_seen.timestamp()
    summaries = [summarize_series(n, pts, split) for n, pts in sorted(ev.metrics.items())]
    kmsg: list[str] = []
    for line in ev.kmsg:
        clipped = _clip(line)
        if clipped not in kmsg:
            kmsg.append(clipped)
    procs = sorted(ev.processes, key=lambda p: (-p.cpu_percent, -p.rss_bytes, p.pid))
    return EvidenceBundle(
        playbook=incident.playbook, scope=incident.scope, severity=incident.severity,
        count=incident.count, signals=dict(ev.signals),
        metrics=tuple(s for s in summaries if s is not None),
        kmsg=tuple(kmsg[-MAX_KMSG:]), tunables=dict(ev.tunables),
        processes=tuple(procs[:MAX_PROCS]), gpus=ev.gpus,
        captures={k: _clip(v) for k, v in ev.captures.items()},
        host={k: _clip(v) for k, v in (host or {}).items()},
        related=tuple(_clip(r) for r in related[:MAX_RELATED]),
    )


def host_context(metrics: Mapping[str, float], gpus: Sequence[GpuState],
                 kernel_release: str | None) -> dict[str, str]:
    """What an LLM needs to know about the host an incident is on (from the latest sample)."""
    out: dict[str, str] = {}
    if kernel_release:
        out["kernel"] = kernel_release.strip()
    for name in ("cpu.count", "load.1m", "mem.total_bytes", "mem.available_bytes"):
        if name in metrics:
            out[name] = f"{metrics[name]:g}"
    if gpus:
        out["gpus"] = ", ".join(f"{g.index}:{g.name or '?'}" for g in gpus[:16])
    return out


def neutralise(text: str) -> str:
    """Break any delimiter look-alike inside untrusted text so a block cannot be closed early."""
    return text.replace("<<<", "< < <").replace(">>>", "> > >")


def data_block(block_id: str, text: str) -> str:
    """Untrusted text inside its delimiters."""
    opening, closing = BLOCK_OPEN.format(id=block_id), BLOCK_CLOSE.format(id=block_id)
    return f"{opening}\n{neutralise(text)}\n{closing}"


def format_processes(procs: Sequence[ProcessInfo]) -> str:
    """One line per process: pid, user, cpu, rss, fds/limit, cgroup, name."""
    lines = ["pid user cpu% rss_mb fds nofile_soft cgroup name"]
    for p in procs:
        lines.append(
            f"{p.pid} {p.username or '-'} {p.cpu_percent:.0f} {p.rss_bytes / 2**20:.0f} "
            f"{p.num_fds if p.num_fds is not None else '-'} "
            f"{p.nofile_soft if p.nofile_soft is not None else '-'} {p.cgroup or '-'} {p.name}"
        )
    return "\n".join(lines)


def format_gpus(gpus: Sequence[GpuState]) -> str:
    """One line per GPU with its metrics, throttle reasons and processes."""
    lines = []
    for g in gpus:
        metrics = " ".join(f"{k}={v:g}" for k, v in sorted(g.metrics.items()))
        procs = ",".join(f"{p.pid}:{p.name}" for p in g.processes[:8])
        lines.append(
            f"gpu {g.index} {g.name} present={g.present} ok={g.ok} {metrics} "
            f"throttle={'|'.join(g.throttle_reasons) or '-'} mode={g.compute_mode or '-'} "
            f"procs={procs or '-'}"
        )
    return "\n".join(lines)
