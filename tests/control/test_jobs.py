"""The fleet's periodic jobs on a real PostgreSQL: one replica at a time, a storm gives one
fleet incident and one page, a tripped breaker one page, a dead agent's lease is
reclaimed, a rollout whose incident went quiet ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from guardrails.policy import FleetPolicy
from healer.control.jobs import FleetJobs
from healer.notify.notifier import Notifier
from healer.settings import Settings
from healer.store.engine import CONTROL_PLANE, open_engine
from healer.store.fleet_types import Release, ReportBatch
from healer.store.repository import Repository
from tests.store.conftest import FakeClock
from tests.store.fleet_helpers import FP, REMEDY, add_fleet, ask, incident_report

POLICY = FleetPolicy()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repos(pg_head_url: str, clock: FakeClock) -> Iterator[list[Repository]]:
    engines = [open_engine(pg_head_url, pool_size=3, max_overflow=0) for _ in range(2)]
    yield [Repository(e, CONTROL_PLANE, clock=clock) for e in engines]
    for e in engines:
        e.dispose()


def jobs(repo: Repository, tmp_path: Path) -> FleetJobs:
    settings = Settings(host_id=CONTROL_PLANE, state_dir=tmp_path)
    return FleetJobs(repo, POLICY, Notifier(settings, repo, clock=repo.now))


def pages(repo: Repository) -> list[str]:
    return sorted(row.event for row in repo.due_notifications(repo.now() + timedelta(days=1)))


def test_only_one_replica_runs_the_jobs_at_a_time(repos: list[Repository],
                                                  tmp_path: Path) -> None:
    with repos[0].one_replica("fleet-tick") as mine:
        assert mine
        assert jobs(repos[1], tmp_path).tick().ran is False
    assert jobs(repos[1], tmp_path).tick().ran is True


def test_a_storm_gives_one_fleet_incident_and_one_page(repos: list[Repository],
                                                       tmp_path: Path) -> None:
    add_fleet(repos[0], 10, opened_ago=30, sick=7)
    first = jobs(repos[0], tmp_path).tick()
    assert first.systemic == [FP] and first.paged == 1
    again = jobs(repos[1], tmp_path).tick()
    assert (again.systemic, again.paged) == ([], 0)
    assert pages(repos[0]) == ["fleet_incident"]  # the log channel: one row, one page


def test_the_jobs_reclaim_trip_and_page_and_end_a_quiet_rollout(
        repos: list[Repository], clock: FakeClock, tmp_path: Path) -> None:
    repo = repos[0]
    hosts = add_fleet(repo, 10)
    held = repo.lease(ask(hosts[0]), POLICY, 30.0).grant
    assert held is not None
    clock.advance(POLICY.lease_ttl_seconds + 0.5)
    assert jobs(repo, tmp_path).tick().reclaimed == 1
    # cut off, it finished verifying and rolled back on a regression: a failure, reported
    # late (until then the breaker counted it as unsettled)
    repo.release(Release(host_id=hosts[0], lease_id=held.lease_id, epoch=held.epoch,
                         outcome="rolled_back"), POLICY)
    for host in hosts[1:3]:  # two more canaries in turn, each regressing
        grant = repo.lease(ask(host), POLICY, 30.0).grant
        assert grant is not None
        repo.release(Release(host_id=host, lease_id=grant.lease_id, epoch=grant.epoch,
                             outcome="rolled_back"), POLICY)
    tick = jobs(repos[1], tmp_path).tick()
    assert tick.paged == 1 and pages(repo) == ["breaker_tripped"]
    repo.fleet_resume(REMEDY, "alice")
    survivor = repo.lease(ask(hosts[5]), POLICY, 30.0).grant
    assert survivor is not None and repo.fleet_status(POLICY).rollouts
    for host in hosts:  # every host's incident resolves, and an hour passes
        repo.store_reports(_resolved(host, repo))
    clock.advance(POLICY.rollout_quiet_seconds + 1)
    assert jobs(repo, tmp_path).tick().ended == [REMEDY.key]
    assert repo.fleet_status(POLICY).rollouts == []


def _resolved(host: str, repo: Repository) -> ReportBatch:
    return ReportBatch(host_id=host, reports=[incident_report(
        2, 1, repo.now() - timedelta(minutes=10), status="resolved")])
