"""Leases on a real PostgreSQL: one canary whoever asks at once (several "replicas", each
its own engine and pool), renewals, reclaim after the TTL with SKIP LOCKED, the breaker,
the systemic short-circuit and the kill switch, as ``decide`` sees them through the store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from guardrails.fleet import Remedy
from guardrails.policy import FleetPolicy
from healer.store.engine import CONTROL_PLANE, open_engine
from healer.store.fleet_types import LeaseAnswer, Release
from healer.store.repo_hosts import SelectorRefused
from healer.store.repo_leases import LeaseLost, remedy_lock
from healer.store.repository import Repository

from .conftest import FakeClock
from .fleet_helpers import FP, REMEDY, add_fleet, ask, beat

POLICY = FleetPolicy()
WINDOW = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def replicas(pg_head_url: str, clock: FakeClock) -> Iterator[list[Repository]]:
    """Three control-plane repositories on one database, each with its own pool."""
    engines = [open_engine(pg_head_url, pool_size=4, max_overflow=0) for _ in range(3)]
    yield [Repository(e, CONTROL_PLANE, clock=clock) for e in engines]
    for e in engines:
        e.dispose()


def lease(repo: Repository, host: str, remedy: Remedy = REMEDY,
          policy: FleetPolicy = POLICY) -> LeaseAnswer:
    return repo.lease(ask(host, remedy), policy, WINDOW)


def release(repo: Repository, answer: LeaseAnswer, host: str, outcome: str,
            policy: FleetPolicy = POLICY) -> None:
    assert answer.grant is not None
    repo.release(Release.model_validate({"host_id": host, "lease_id": answer.grant.lease_id,
                                         "epoch": answer.grant.epoch, "outcome": outcome}),
                 policy)


def test_hosts_asking_at_once_on_several_replicas_get_exactly_one_canary(
        replicas: list[Repository]) -> None:
    hosts = add_fleet(replicas[0], 12, sick=3)  # 25 % sick: no storm
    barrier = threading.Barrier(len(hosts))

    def one(i: int) -> LeaseAnswer:
        barrier.wait()
        return lease(replicas[i % len(replicas)], hosts[i])

    with ThreadPoolExecutor(len(hosts)) as pool:
        answers = list(pool.map(one, range(len(hosts))))
    granted = [h for h, a in zip(hosts, answers, strict=True) if a.grant is not None]
    assert len(granted) == 1, granted
    # the others wait for it, find the one slot the cap allows taken, or find the grant
    # being decided (busy: asked again shortly)
    assert {a.decision.reason for a in answers if a.grant is None} <= {"canary", "in_flight",
                                                                       "busy"}
    live = replicas[1].live_leases()
    assert [(x.host_id, x.role) for x in live] == [(granted[0], "canary")]


def test_the_canary_verifies_then_a_wave_of_ten_percent_of_the_affected_goes(
        replicas: list[Repository]) -> None:
    repo = replicas[0]
    hosts = add_fleet(repo, 20)
    roomy = POLICY.model_copy(update={"in_flight_percent": 50.0})  # the wave is the limit
    canary = lease(repo, hosts[0], policy=roomy)
    assert canary.decision.rule == "F-canary"
    assert lease(repo, hosts[1], policy=roomy).grant is None
    release(repo, canary, hosts[0], "verified")
    first = lease(replicas[1], hosts[1], policy=roomy)
    second = lease(replicas[2], hosts[2], policy=roomy)
    assert (first.decision.rule, first.decision.wave, first.decision.new_wave_size) == (
        "F-wave", 1, 2)
    assert second.grant is not None and second.decision.new_wave_size is None
    blocked = lease(repo, hosts[3], policy=roomy)
    assert (blocked.decision.reason, blocked.decision.rule) == ("wave", "F-wave")


def _turns(repo: Repository, hosts: list[str]) -> dict[str, int]:
    """How many turn events each of ``hosts`` was sent (for it alone), of ``REMEDY``."""
    return {h: sum(1 for e in repo.events_after(h, 0) if e.type == "turn" and e.host_id == h
                   and e.payload["remedy"] == REMEDY.model_dump()) for h in hosts}


def test_a_lease_that_ends_tells_the_reporting_hosts_longest_affected_it_is_their_turn(
        replicas: list[Repository], clock: FakeClock) -> None:
    repo = replicas[0]
    silent = add_fleet(repo, 1, opened_ago=1200.0, prefix="silent")
    clock.advance(POLICY.reporting_seconds + 1)  # it stopped heartbeating
    old = add_fleet(repo, 3, opened_ago=900.0, prefix="old")
    new = add_fleet(repo, 8, opened_ago=600.0, prefix="new")
    everyone = silent + old + new
    canary = lease(repo, new[0])
    assert sum(_turns(repo, everyone).values()) == 0  # a grant makes no room
    release(repo, canary, new[0], "verified")
    # as many as could be in flight at once: min(in-flight max 5, the breaker's K 3)
    assert {h for h, n in _turns(repo, everyone).items() if n} == set(old)
    member = lease(replicas[1], new[1])
    assert member.decision.rule == "F-wave"
    release(replicas[1], member, new[1], "verified")
    # those told just now are not told again yet; hosts that had a lease are never told
    assert _turns(repo, everyone) == {**dict.fromkeys(everyone, 0), **dict.fromkeys(old, 1),
                                      **dict.fromkeys(new[2:5], 1)}
    clock.advance(3)
    joiner = lease(replicas[2], new[2])
    assert joiner.grant is not None
    release(replicas[2], joiner, new[2], "verified")
    # every host gets a turn before any gets a second: one that no longer asks (its own
    # guard said no) does not keep the others from theirs
    assert _turns(repo, new[5:]) == dict.fromkeys(new[5:], 1)
    assert _turns(repo, old) == dict.fromkeys(old, 1)
    clock.advance(3)
    last = lease(replicas[0], new[3])
    release(replicas[0], last, new[3], "verified")
    assert _turns(repo, old) == dict.fromkeys(old, 2)  # then again, longest told first


def test_asking_again_while_holding_a_lease_gets_the_same_lease(
        replicas: list[Repository]) -> None:
    hosts = add_fleet(replicas[0], 3)
    one, again = lease(replicas[0], hosts[0]), lease(replicas[1], hosts[0])
    assert one.grant is not None and again.grant == one.grant


def test_a_renewal_extends_the_lease_and_one_after_the_ttl_is_lost(
        replicas: list[Repository], clock: FakeClock) -> None:
    repo = replicas[0]
    host = add_fleet(repo, 3)[0]
    grant = lease(repo, host).grant
    assert grant is not None and grant.ttl_seconds == POLICY.lease_ttl_seconds
    for _ in range(5):  # renewed every 5 s, it outlives its first TTL three times over
        clock.advance(5)
        assert repo.renew(host, grant.lease_id, grant.epoch).grant == grant
    with pytest.raises(LeaseLost):
        repo.renew("h1", grant.lease_id, grant.epoch)  # not this host's
    with pytest.raises(LeaseLost):
        repo.renew(host, grant.lease_id, grant.epoch + 1)  # a stale epoch
    clock.advance(POLICY.lease_ttl_seconds + 0.1)
    with pytest.raises(LeaseLost):
        repo.renew(host, grant.lease_id, grant.epoch)


def test_a_dead_canarys_lease_is_reclaimed_after_the_ttl_and_its_outcome_waited_for(
        replicas: list[Repository], clock: FakeClock) -> None:
    repo = replicas[0]
    hosts = add_fleet(repo, 5)
    first = lease(repo, hosts[0])
    clock.advance(POLICY.lease_ttl_seconds - 1)
    assert repo.reclaim_expired(POLICY) == []  # not yet
    clock.advance(1)
    assert [x.host_id for x in replicas[1].reclaim_expired(POLICY)] == [hosts[0]]
    held = lease(replicas[2], hosts[1])  # it may be verifying still, cut off
    assert (held.grant, held.decision.reason) == (None, "canary")
    clock.advance(POLICY.wave_timeout_windows * WINDOW)  # no outcome for a wave's timeout
    for host in hosts:
        beat(repo, host)
    nxt = lease(replicas[2], hosts[1])
    assert nxt.grant is not None and nxt.decision.role == "canary"
    assert nxt.grant.epoch == first.grant.epoch + 1  # type: ignore[union-attr]


def test_a_cut_off_canarys_late_verification_starts_the_first_wave(
        replicas: list[Repository], clock: FakeClock) -> None:
    repo = replicas[0]
    hosts = add_fleet(repo, 20)
    roomy = POLICY.model_copy(update={"in_flight_percent": 50.0})
    canary = lease(repo, hosts[0], policy=roomy)
    clock.advance(roomy.lease_ttl_seconds + 1)
    assert [x.host_id for x in replicas[1].reclaim_expired(POLICY)] == [hosts[0]]
    assert lease(replicas[1], hosts[1], policy=roomy).decision.reason == "canary"
    release(repo, canary, hosts[0], "verified", policy=roomy)  # it finished, and says so
    first = lease(replicas[2], hosts[1], policy=roomy)
    assert (first.decision.rule, first.decision.role, first.decision.wave) == (
        "F-wave", "wave", 1)


def test_reclaim_skips_a_lease_another_transaction_holds(replicas: list[Repository],
                                                         clock: FakeClock) -> None:
    repo = replicas[0]
    host = add_fleet(repo, 3)[0]
    grant = lease(repo, host).grant
    assert grant is not None
    clock.advance(POLICY.lease_ttl_seconds + 1)
    with replicas[1].engine.connect() as holder:  # a renewal in flight holds the row
        holder.execute(sa.text("SELECT id FROM leases WHERE id = :i FOR UPDATE"),
                       {"i": grant.lease_id})
        assert replicas[2].reclaim_expired(POLICY) == []  # skipped, not waited for
        holder.rollback()
    assert [x.id for x in replicas[2].reclaim_expired(POLICY)] == [grant.lease_id]


def test_k_failed_verifications_trip_the_breaker_until_the_remedy_is_resumed(
        replicas: list[Repository]) -> None:
    repo = replicas[0]
    hosts = add_fleet(repo, 20)
    for host in hosts[:3]:  # each is the canary in turn, and each regresses
        answer = lease(repo, host)
        assert answer.decision.role == "canary", answer
        release(repo, answer, host, "rolled_back")
    tripped = lease(replicas[1], hosts[3])
    assert (tripped.decision.reason, tripped.decision.rule) == ("breaker", "F-breaker")
    status = repo.fleet_status(POLICY)
    assert [b.remedy for b in status.breakers] == [REMEDY.key] and status.rollouts == []
    assert repo.fleet_resume(REMEDY, "alice") == [f"breaker of {REMEDY.key} closed"]
    assert repo.evaluate_breakers(POLICY) == []  # the failures before the resume are forgiven
    fresh = lease(replicas[2], hosts[3])
    assert fresh.grant is not None and fresh.decision.role == "canary"  # a new rollout


def test_a_fleet_wide_wait_names_the_hosts_it_does_not_answer_and_no_other_wait_does(
        replicas: list[Repository]) -> None:
    """A replica answers a burst of asks with the fleet-wide wait the first got, but not
    to a host that holds a lease of the remedy (the store hands that one its lease) nor to
    a paused one (told its pause)."""
    repo = replicas[0]
    hosts = add_fleet(repo, 20)
    beat(repo, hosts[7], {"rack": "paused"})
    first = lease(repo, hosts[0])
    behind = lease(replicas[1], hosts[1])
    assert (behind.decision.reason, behind.ask_themselves) == ("canary", None)
    release(repo, first, hosts[0], "rolled_back")
    for host in hosts[1:3]:
        release(repo, lease(repo, host), host, "rolled_back")
    undoing = replicas[1].lease(ask(hosts[5], purpose="rollback"), POLICY, WINDOW)
    assert undoing.grant is not None  # a live lease of the remedy, a rollback's
    assert repo.pause_hosts({"rack": "paused"}, True, "alice") == [hosts[7]]
    tripped = lease(replicas[2], hosts[3])
    assert (tripped.decision.reason, tripped.ask_themselves) == (
        "breaker", frozenset({hosts[5], hosts[7]}))
    assert lease(replicas[1], hosts[7]).decision.reason == "paused"


def test_a_late_failure_after_a_reclaim_still_counts_toward_the_breaker(
        replicas: list[Repository], clock: FakeClock) -> None:
    repo = replicas[0]
    hosts = add_fleet(repo, 10)
    cut_off = lease(repo, hosts[0])
    clock.advance(POLICY.lease_ttl_seconds + 1)
    repo.reclaim_expired(POLICY)
    release(repo, cut_off, hosts[0], "rolled_back")  # it rolled back while cut off
    policy = POLICY.model_copy(update={"breaker_failures": 1})
    assert lease(repo, hosts[1], policy=policy).decision.reason == "breaker"


def test_a_storm_opens_one_systemic_fleet_incident_and_blocks_every_waiting_host(
        replicas: list[Repository]) -> None:
    hosts = add_fleet(replicas[0], 10, opened_ago=40, sick=6)  # 60 %, within the window
    barrier = threading.Barrier(3)

    def evaluate(repo: Repository) -> list[str]:
        barrier.wait()
        return repo.evaluate_systemic(POLICY)

    with ThreadPoolExecutor(3) as pool:
        opened = [fp for found in pool.map(evaluate, replicas) for fp in found]
    assert opened == [FP]
    for host in hosts[:6]:
        answer = lease(replicas[1], host)
        assert (answer.grant, answer.decision.rule) == (None, "F-systemic")
    (incident,) = replicas[2].fleet_status(POLICY).fleet_incidents
    assert (incident.fingerprint, incident.hosts, incident.reporting) == (FP, 6, 10)
    assert [i.id for i in replicas[2].unpaged()[0]] == [incident.id]


def test_the_kill_switch_holds_every_host_and_never_a_rollback(
        replicas: list[Repository]) -> None:
    repo = replicas[0]
    hosts = add_fleet(repo, 5)
    assert repo.fleet_pause(None, "alice", "maintenance")
    paused = lease(replicas[1], hosts[0])
    assert (paused.decision.reason, paused.decision.rule) == ("paused", "F-paused")
    rollback = replicas[1].lease(ask(hosts[0], purpose="rollback"), POLICY, WINDOW)
    assert rollback.grant is not None and rollback.decision.rule == "F-rollback"
    assert repo.fleet_resume(None, "alice") == ["pause lifted"]
    assert lease(replicas[2], hosts[1]).grant is not None
    types = [e.type for e in repo.events_after(hosts[0], 0)]
    assert types == ["pause", "resume"]


def test_a_reclaimed_lease_without_an_outcome_counts_toward_the_breaker_until_it_arrives(
        replicas: list[Repository], clock: FakeClock) -> None:
    repo = replicas[0]
    hosts = add_fleet(repo, 20)
    strict = POLICY.model_copy(update={"in_flight_percent": 50.0, "breaker_failures": 1})
    canary = lease(repo, hosts[0], policy=strict)
    release(repo, canary, hosts[0], "verified", policy=strict)
    cut_off = lease(replicas[1], hosts[1], policy=strict)  # the first wave's first host ...
    assert cut_off.grant is not None
    clock.advance(strict.lease_ttl_seconds + 1)  # ... stops renewing: partitioned, or busy
    assert [x.host_id for x in replicas[2].reclaim_expired(POLICY)] == [hosts[1]]
    held = lease(repo, hosts[2], policy=strict)  # its change may be in place, and failing
    assert (held.decision.reason, held.decision.rule) == ("breaker", "F-breaker")
    assert "1 reclaimed without an outcome" in held.decision.detail
    release(repo, cut_off, hosts[1], "verified", policy=strict)  # it reports, late
    assert lease(replicas[1], hosts[2], policy=strict).grant is not None


def test_a_grant_being_decided_answers_busy_at_once_and_a_rollback_waits_its_turn(
        replicas: list[Repository]) -> None:
    hosts = add_fleet(replicas[0], 5)
    with replicas[1].engine.connect() as holder:  # another replica deciding a grant
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                       {"k": remedy_lock(REMEDY.key)})
        busy = lease(replicas[0], hosts[0])
        assert busy.grant is None
        assert (busy.decision.reason, busy.decision.rule) == ("busy", "F-busy")
        assert busy.decision.retry_after > 0
        with ThreadPoolExecutor(1) as pool:
            rollback = pool.submit(replicas[2].lease, ask(hosts[1], purpose="rollback"),
                                   POLICY, WINDOW)
            with pytest.raises(TimeoutError):
                rollback.result(timeout=1.0)  # it queues for the lock, not told to wait
            holder.rollback()
            assert rollback.result(timeout=10).decision.rule == "F-rollback"
    assert lease(replicas[0], hosts[0]).grant is not None  # asked again: the canary


def test_a_host_selector_that_is_empty_or_matches_every_host_is_refused(
        replicas: list[Repository]) -> None:
    repo = replicas[0]
    hosts = add_fleet(repo, 3)
    for host, rack in zip(hosts, ("r1", "r1", "r2"), strict=True):
        beat(repo, host, {"rack": rack, "zone": "a"})
    for selector in ({}, {"zone": "a"}):
        with pytest.raises(SelectorRefused):
            repo.pause_hosts(selector, True, "alice")
    assert not any(h.paused for h in repo.list_hosts())
    assert repo.pause_hosts({"rack": "r1"}, True, "alice") == hosts[:2]
    assert [h.paused for h in repo.list_hosts()] == [True, True, False]
    assert lease(repo, hosts[0]).decision.reason == "paused"
    assert lease(repo, hosts[2]).grant is not None
    assert [e.type for e in repo.events_after(hosts[0], 0)] == ["pause"]
    assert repo.events_after(hosts[2], 0) == []
