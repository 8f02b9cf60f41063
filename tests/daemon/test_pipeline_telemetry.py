"""``healer_open_incidents`` follows the store: up when an incident opens, down when it
resolves, and right after a restart before anything fires again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from healer.detect.detector import DetectEvent
from healer.models import Evidence, Sample
from healer.pipeline import Pipeline
from healer.store.repository import Repository
from tests.act.conftest import Clock
from tests.act.test_rediagnose import PLAYBOOK, SCOPE, Doctor, World, run, start


class Clearing(World):
    """Fires while ``firing``, and says so when it stops (as detection does)."""

    def observe(self, _window: Any, sample: Sample) -> list[DetectEvent]:
        kind = "fire" if self.firing else "clear"
        return [DetectEvent(kind, PLAYBOOK, SCOPE, "warning", Evidence(), 1, sample.ts)]


def open_incidents(p: Pipeline) -> float | None:
    return p.telemetry.agent_registry.get_sample_value("healer_open_incidents")


def test_open_incidents_gauge_counts_the_stores_open_incidents(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    world, doctor = Clearing(clock), Doctor()
    p = start(repo, clock, world, doctor, tmp_path)
    run(p, clock, 5)
    assert open_incidents(p) == 0
    world.firing = True
    run(p, clock, 1)
    assert open_incidents(p) == 1
    restarted = start(repo, clock, world, doctor, tmp_path)  # a new process, a new registry
    assert open_incidents(restarted) == 1
    run(restarted, clock, 1)  # it fires again: the tracker takes the open incident up
    world.firing = False
    run(restarted, clock, 70)  # clear for longer than the tracker's clear_seconds (60)
    assert open_incidents(restarted) == 0
