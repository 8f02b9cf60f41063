"""The compact evidence bundle an LLM sees, its cache hash, and delimited data blocks.

Raw series never leave the host: each metric becomes a baseline median against the
median of the last few points. Untrusted text (kernel-log lines, process names,
captures, tool output) is only ever placed inside a ``data_block``.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from guardrails import linear
from healer.models import GpuState, Incident, ProcessInfo

BLOCK_OPEN = "<<<DATA id={id}>>>"
BLOCK_CLOSE = "<<<END DATA id={id}>>>"
_NOW_POINTS = 5  # median of the last 5 samples: robust to one outlier at 1 Hz
MAX_KMSG = 20
MAX_PROCS = 8
MAX_LINE = 400
_DIGITS = linear.compile(r"[0-9]+")
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


def build_bundle(incident: Incident) -> EvidenceBundle:
    """Compact the incident's evidence: summaries, deduplicated lines, top processes."""
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
    )


def _round(v: float | None) -> float | None:
    return None if v is None else float(f"{v:.2g}")


def evidence_hash(bundle: EvidenceBundle) -> str:
    """A hash that a repeat of the same problem reproduces (values rounded to 2 digits)."""
    canon = {
        "playbook": bundle.playbook, "scope": bundle.scope,
        "signals": sorted(bundle.signals),
        "metrics": [(m.name, _round(m.baseline), _round(m.now)) for m in bundle.metrics],
        "kmsg": sorted({_DIGITS.sub("#", k) for k in bundle.kmsg}),
        "tunables": sorted(bundle.tunables.items()),
        "procs": sorted({p.name for p in bundle.processes}),
        "gpus": sorted((g.index, g.ok, g.throttle_reasons) for g in bundle.gpus),
    }
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:32]


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
