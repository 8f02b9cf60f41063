"""Build an incident's evidence bundle from what its playbook asks for, and flatten it into
what the playbook's remedies may read (``remedy_inputs``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from guardrails import linear
from healer.detect.signals import Hit, MetricIndex
from healer.detect.view import WindowView
from healer.models import Evidence, GpuState, ProcessInfo
from playbooks.render import RemedyInputs, scope_labels
from playbooks.schema import Baseline, Playbook, Rate, Signal, Threshold, Trend, describe_signal

log = logging.getLogger("healer.detect")
ReadSysctl = Callable[[str, str], "str | None"]  # (scope, key) -> value
ReadCgroup = Callable[[str, str], "str | None"]  # (cgroup path, knob) -> value
MAX_SERIES = 20
MAX_CAPTURE_CHARS = 256
TOP_PROCESSES = 5
_PROCESS_FACTS = ("pid", "num_fds", "nofile_soft", "nofile_hard", "cpu_percent", "rss_bytes")
# Tunables are kernel text (a sysctl's value, a cgroup knob): RE2.
_NUMBER_RE = linear.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,12})?")


def _metric_names(pb: Playbook) -> list[str]:
    names = list(pb.evidence.metrics)
    for sig in pb.detect.signals:
        if isinstance(sig, Threshold | Rate | Baseline | Trend) and sig.metric not in names:
            names.append(sig.metric)
    return names


def _series(pb: Playbook, labels: dict[str, str], window: WindowView,
            index: MetricIndex) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for pattern in _metric_names(pb):
        for name, found in index.expand(pattern):
            if any(labels.get(k, v) != v for k, v in found.items()):
                continue  # another scope's series
            if len(out) < MAX_SERIES:
                out[name] = list(window.series(name, pb.evidence.window_seconds))
    return out


def _processes(scope: str, processes: Sequence[ProcessInfo]) -> tuple[ProcessInfo, ...]:
    """The processes in scope, then the top few by CPU and by memory."""
    labels = scope_labels(scope)
    chosen = [p for p in processes
              if str(p.pid) == labels.get("pid") or (p.cgroup and p.cgroup == labels.get("cgroup"))]
    chosen += sorted(processes, key=lambda p: -p.cpu_percent)[:TOP_PROCESSES]
    chosen += sorted(processes, key=lambda p: -p.rss_bytes)[:TOP_PROCESSES]
    seen: set[int] = set()
    out = []
    for p in chosen:
        if p.pid not in seen:
            seen.add(p.pid)
            out.append(p)
    return tuple(out)


def _read(reader: ReadSysctl | None, where: str, key: str) -> str | None:
    if reader is None:
        return None
    try:
        value = reader(where, key)
    except Exception as exc:  # an evidence read must never stop detection
        log.warning("tunable read failed: key=%s where=%s error=%r", key, where, str(exc))
        return None
    return value.strip()[:256] if value is not None else None


def _tunables(pb: Playbook, scope: str, read_sysctl: ReadSysctl | None,
              read_cgroup: ReadCgroup | None) -> dict[str, str]:
    """Sysctls by key, and cgroup knobs of the scoped cgroup as ``cgroup.<knob>``."""
    out: dict[str, str] = {}
    for key in pb.evidence.sysctls:
        value = _read(read_sysctl, scope, key)
        if value is not None:
            out[key] = value
    path = scope_labels(scope).get("cgroup")
    for knob in pb.evidence.cgroup_knobs if path else ():
        value = _read(read_cgroup, path or "", knob)
        if value is not None:
            out[f"cgroup.{knob}"] = value
    return out


def gather(
    pb: Playbook,
    scope: str,
    hits: Sequence[tuple[Signal, Hit]],
    window: WindowView,
    index: MetricIndex,
    gpus: Sequence[GpuState],
    processes: Sequence[ProcessInfo],
    read_sysctl: ReadSysctl | None,
    read_cgroup: ReadCgroup | None = None,
) -> Evidence:
    """The evidence bundle for one firing of ``pb`` in ``scope``."""
    captures: dict[str, str] = {}
    lines: list[str] = []
    for _, hit in hits:
        captures.update({k: v[:MAX_CAPTURE_CHARS] for k, v in hit.captures.items()})
        lines.extend(hit.lines)
    labels = {**captures, **scope_labels(scope)}
    gpu_label = scope_labels(scope).get("gpu")
    return Evidence(
        signals={describe_signal(sig): hit.value for sig, hit in hits},
        metrics=_series(pb, labels, window, index),
        kmsg=tuple(lines[-20:]) if pb.evidence.kmsg else (),
        tunables=_tunables(pb, scope, read_sysctl, read_cgroup),
        processes=_processes(scope, processes) if pb.evidence.processes else (),
        gpus=tuple(g for g in gpus if gpu_label is None or str(g.index) == gpu_label)
        if pb.evidence.gpu else (),
        captures=captures,
    )


def remedy_inputs(evidence: Evidence, facts: Mapping[str, str | float],
                  scope: str = "host") -> RemedyInputs:
    """What ``playbooks.render`` may read for this incident: the numbers (``numeric_facts``),
    the evidence's metric series, and the labels (the caller's facts, then the captures)."""
    labels = {**{k: str(v) for k, v in facts.items()}, **evidence.captures}
    return RemedyInputs(numbers=numeric_facts(evidence, facts, scope), series=evidence.metrics,
                        labels=labels)


def numeric_facts(evidence: Evidence, facts: Mapping[str, str | float],
                  scope: str = "host") -> dict[str, float]:
    """Every number a remedy may read: metrics' latest values, tunables, GPU state, the
    scoped process (``process.num_fds`` ...), then the caller's facts."""
    out: dict[str, float] = {}
    pid = scope_labels(scope).get("pid")
    for proc in evidence.processes:
        if str(proc.pid) == pid:
            for name in _PROCESS_FACTS:
                value = getattr(proc, name)
                if value is not None:
                    out[f"process.{name}"] = float(value)
    for name, points in evidence.metrics.items():
        if points:
            out[name] = points[-1][1]
    for gpu in evidence.gpus:
        for name, value in gpu.metrics.items():
            out[f"gpu.{gpu.index}.{name}"] = value
    out.update(evidence.signals)
    for source in (evidence.tunables, facts):
        for key, raw in source.items():
            value = _number(raw)
            if value is not None:
                out[key] = value
    return out


def _number(raw: str | float) -> float | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        text = raw.strip().split()[0] if raw.strip() else ""
        if _NUMBER_RE.fullmatch(text):
            return float(text)
    return None
