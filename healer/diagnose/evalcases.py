"""Labelled evaluation cases: a YAML file describes samples; the real detector classifies them.

A case gives keypoints per metric (``[[t, value], ...]``, linearly interpolated at each
sampled second), kernel-log lines with the second they appear, processes and GPU state
(any numeric field may itself be a keypoint list), current sysctls and cgroup knobs, and
the expected root cause. Replaying it through ``healer.detect.Detector`` yields the
incident the daemon would have opened, with its evidence.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healer.errors import ConfigError
from healer.models import GpuState, Incident, KmsgRecord, ProcessInfo, Sample

DEFAULT_CASES = Path(__file__).parent / "cases"
START = 1_714_560_000.0  # 2024-05-01T10:40:00Z: fixed, so runs are reproducible


class KmsgLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    t: float
    line: str = Field(max_length=2000)
    priority: int = 3


class Case(BaseModel):
    """One labelled case (unknown keys are errors, as in playbooks).

    ``expected`` is the playbooks' answer (``unknown`` when none applies). A case with
    ``llm_expected`` belongs to the unknown group: no playbook knows it, the playbook
    diagnoser must answer ``unknown``, and the LLM is scored on naming one of these root
    causes (known ids or slugs). Every other case is covered: the playbooks' answer is
    the right one, and the LLM must not make it worse.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    expected: str
    llm_expected: tuple[str, ...] = ()
    description: str = ""
    duration: int = Field(default=60, ge=2, le=900)
    net_scope: str = "host"
    metrics: dict[str, list[tuple[float, float]]] = Field(default_factory=dict)
    kmsg: list[KmsgLine] = Field(default_factory=list)
    processes: list[dict[str, Any]] = Field(default_factory=list)
    gpus: list[dict[str, Any]] = Field(default_factory=list)
    sysctls: dict[str, str] = Field(default_factory=dict)
    cgroup: dict[str, str] = Field(default_factory=dict)  # "<path>:<knob>" -> value
    facts: dict[str, float] = Field(default_factory=dict)
    current: dict[str, str] = Field(default_factory=dict)  # action key_name -> live value

    @property
    def group(self) -> str:
        """``unknown`` (the LLM is scored) or ``covered`` (the playbooks are)."""
        return "unknown" if self.llm_expected else "covered"


def load_cases(directory: Path | None = None) -> list[Case]:
    """Every ``*.yaml`` case, sorted by file name; ``ConfigError`` names a bad file."""
    root = directory or DEFAULT_CASES
    if not root.is_dir():
        raise ConfigError("cases", f"not a directory: {root}")
    cases = []
    for path in sorted(root.glob("*.y*ml")):
        try:
            cases.append(Case.model_validate(yaml.safe_load(path.read_text())))
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError("cases", f"{path}: {str(exc).splitlines()[0]}") from None
    if not cases:
        raise ConfigError("cases", f"no cases in {root}")
    return cases


def interpolate(points: list[tuple[float, float]], t: float) -> float:
    """Piecewise-linear value at ``t``; constant before the first and after the last point."""
    pts = sorted(points)
    if t <= pts[0][0]:
        return pts[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(pts):
        if t <= t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
    return pts[-1][1]


def _is_keypoints(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(p, list | tuple) and len(p) == 2
        and all(isinstance(x, int | float) for x in p) for p in v)


def at(obj: Any, t: float) -> Any:
    """``obj`` with every keypoint list replaced by its value at ``t``."""
    if _is_keypoints(obj):
        return interpolate([(float(a), float(b)) for a, b in obj], t)
    if isinstance(obj, dict):
        return {k: at(v, t) for k, v in obj.items()}
    if isinstance(obj, list):
        return [at(v, t) for v in obj]
    return obj


def samples(case: Case) -> list[Sample]:
    """The case as one sample per second."""
    out = []
    seq = 0
    for t in range(case.duration):
        records = []
        for k in case.kmsg:
            if t <= k.t < t + 1:
                seq += 1
                records.append(KmsgRecord(seq=seq, priority=k.priority, ts_us=int(k.t * 1e6),
                                          message=k.line, wall_ts=START + k.t))
        metrics = {n: interpolate(pts, t) for n, pts in case.metrics.items()}
        procs = tuple(ProcessInfo.model_validate(at(p, t)) for p in case.processes)
        gpus = tuple(GpuState.model_validate(at(g, t)) for g in case.gpus)
        out.append(Sample(ts=START + t, metrics=metrics, kmsg=tuple(records), gpus=gpus,
                          processes=procs if case.processes else None))
    return out


def sysctl_reader(case: Case) -> Any:
    """(scope, key) -> value from the case's sysctls."""
    return lambda scope, key: case.sysctls.get(key)


def cgroup_reader(case: Case) -> Any:
    """(path, knob) -> value from the case's cgroup knobs."""
    return lambda path, knob: case.cgroup.get(f"{path}:{knob}")


def incident_from(playbook: str, scope: str, subject: str, severity: str, count: int,
                  evidence: Any, ts: float) -> Incident:
    """The incident the daemon would open from a detector event."""
    when = datetime.fromtimestamp(ts, UTC)
    return Incident(id=None, host_id="eval-host", playbook=playbook, scope=scope,
                    subject=subject, severity=severity, count=count, first_seen=when,
                    last_seen=when, evidence=evidence)


def facts_for(case: Case, evidence_tunables: Mapping[str, str]) -> dict[str, Any]:
    """Facts a remedy is computed from: the case's facts, sysctls and cgroup knobs."""
    facts: dict[str, Any] = dict(case.sysctls)
    facts.update(evidence_tunables)
    for key, value in case.cgroup.items():
        facts[f"cgroup.{key.rsplit(':', 1)[-1]}"] = value
    facts.update(case.facts)
    return facts
