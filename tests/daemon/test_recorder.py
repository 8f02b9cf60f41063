"""Full-resolution samples around incidents: from the window before an incident opens until
a margin past its resolution, only the incident's own metrics, written in batches.

A real SQLite journal and metric window and the shipped playbook library; the samples are
made up, one per second, with many metrics the incident does not name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from healer.models import Evidence, Incident, Sample
from healer.recorder import AFTER_SECONDS, BEFORE_SECONDS, FLUSH_SECONDS, RawRecorder
from healer.store.repository import Repository
from healer.window import MetricWindow
from playbooks.loader import load_library
from tests.act.conftest import Clock
from tests.act.engine_kit import OVERFLOWS, PSI
from tests.act.test_rediagnose import Doctor, World, run, start

LIBRARY = load_library()
T0 = 1_750_000_000.0
DROPS, MEM = "net.tcp.listen_drops_total", "mem.available_bytes"
OTHERS = tuple(f"cgroup./app{i}.cpu.usage_seconds_total" for i in range(200))


class CountingRepo:
    """The repository, counting how often raw samples are written."""

    def __init__(self, repo: Repository) -> None:
        self.repo, self.writes = repo, 0

    def add_raw_samples(self, samples: Sequence[Sample]) -> None:
        self.writes += 1
        self.repo.add_raw_samples(samples)


def sample(t: float) -> Sample:
    metrics = {OVERFLOWS: t * 5, DROPS: t * 5, MEM: 4e9, PSI: 1.0}
    metrics.update({name: t for name in OTHERS})
    return Sample(ts=T0 + t, metrics=metrics)


def incident(t: float) -> Incident:
    at = datetime.fromtimestamp(T0 + t, UTC)
    return Incident(id=7, host_id="test-host", playbook="listen-backlog-too-small",
                    scope="netns:t1", first_seen=at, last_seen=at,
                    evidence=Evidence(metrics={OVERFLOWS: [], DROPS: []}))


def stored(repo: Repository, name: str) -> list[float]:
    since, until = datetime.fromtimestamp(T0 - 3600, UTC), datetime.fromtimestamp(T0 + 7200, UTC)
    return [ts - T0 for ts, _ in repo.metric_series(name, since, until)]


def test_an_incident_is_recorded_from_the_window_before_it_to_a_margin_after_it(
        repo: Repository) -> None:
    sink, window = CountingRepo(repo), MetricWindow(3600, 1.0)
    recorder = RawRecorder(sink, window, LIBRARY)
    opened, resolved, end = 1000, 1600, 2500
    for t in range(end):
        s = sample(t)
        window.append(s)
        if t == opened:
            recorder.incident("opened", incident(t), s.ts)
        elif opened < t < resolved:
            recorder.incident("updated", incident(t), s.ts)
        elif t == resolved:
            recorder.incident("resolved", incident(t), s.ts)
        recorder.add(s)
    recorder.flush()

    # The evidence series and the verify target and guard: one point a second, from the
    # window before the opening to the margin after the resolution, and none outside it.
    first, last = opened - int(BEFORE_SECONDS), resolved + int(AFTER_SECONDS)
    for name in (OVERFLOWS, DROPS, MEM):
        assert stored(repo, name) == [float(t) for t in range(first, last + 1)], name
    assert stored(repo, PSI) == [] and stored(repo, OTHERS[0]) == []
    assert recorder.recording == frozenset()
    # Batched: one insert per FLUSH_SECONDS of samples, not one per cycle.
    assert sink.writes <= end / FLUSH_SECONDS + 2


def test_a_playbook_without_a_verify_block_records_its_evidence_series(
        repo: Repository) -> None:
    window = MetricWindow(3600, 1.0)
    recorder = RawRecorder(repo, window, LIBRARY)
    unknown = incident(0).model_copy(update={"playbook": "unclassified",
                                             "evidence": Evidence(metrics={DROPS: []})})
    assert recorder.metrics_of(unknown) == {DROPS}
    assert recorder.metrics_of(incident(0)) == {OVERFLOWS, DROPS, MEM}


def test_the_pipeline_records_an_incidents_metrics_while_it_is_open(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    world, doctor = World(clock), Doctor()
    p = start(repo, clock, world, doctor, tmp_path)
    run(p, clock, 30)
    world.firing = True
    run(p, clock, 60)
    p.close()  # writes what is buffered
    since, until = clock.now.timestamp() - 600, clock.now.timestamp()
    points = repo.metric_series(OVERFLOWS, datetime.fromtimestamp(since, UTC),
                                datetime.fromtimestamp(until, UTC))
    # 30 s of window before the opening and 60 s open, one point a second.
    assert len(points) == 90
    assert [b[0] - a[0] for a, b in pairwise(points)] == [1.0] * 89
