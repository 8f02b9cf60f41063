"""guardrails.fleet.decide: the fleet's rules, one example each, then their invariants as
properties over arbitrary states and over whole simulated rollouts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from guardrails import load_policy, parse_action
from guardrails.fleet import (
    FAILED,
    FLEET_WIDE_WAITS,
    FleetDecision,
    FleetState,
    InFlight,
    LeaseRequest,
    Outcome,
    Remedy,
    Rollout,
    alert_fingerprint,
    decide,
    fleet_fingerprint,
    granted,
    in_flight_cap,
    lost,
    released,
    remedy_of,
    systemic,
)
from guardrails.policy import FleetPolicy

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
REMEDY = Remedy(playbook="listen-backlog-too-small", kind="sysctl_write",
                target="net.core.somaxconn")
FP = "listen-backlog-too-small|host"
POLICY = FleetPolicy()
PROPS = settings(max_examples=300, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])


def request(host: str = "h1", labels: dict[str, str] | None = None,
            purpose: str = "apply") -> LeaseRequest:
    return LeaseRequest(host_id=host, labels=labels or {}, remedy=REMEDY, fingerprint=FP,
                        purpose=purpose)  # type: ignore[arg-type]


def state(**kw: object) -> FleetState:
    base: dict[str, object] = {"reporting_hosts": 100, "affected_hosts": 20, "recent_hosts": 2,
                               "first_seen": T0 - timedelta(minutes=5)}
    return FleetState.model_validate(base | kw)


# -- names -----------------------------------------------------------------------------------
def test_a_remedy_names_the_target_never_the_value() -> None:
    low = parse_action({"kind": "sysctl_write", "key": "net.core.somaxconn", "value": "4096"})
    high = parse_action({"kind": "sysctl_write", "key": "net.core.somaxconn", "value": "8192",
                         "scope": "netns:a"})
    assert remedy_of("p", low) == remedy_of("p", high) == Remedy(
        playbook="p", kind="sysctl_write", target="net.core.somaxconn")
    knob = parse_action({"kind": "cgroup_limit", "path": "/a", "knob": "pids.max", "value": "9"})
    assert remedy_of("p", knob).target == "pids.max"  # type: ignore[union-attr]
    assert remedy_of("p", parse_action({"kind": "notify", "message": "hi"})) is None
    assert Remedy.parse(REMEDY.key) == REMEDY


def test_fingerprints_group_hosts_by_trouble_not_by_host() -> None:
    assert fleet_fingerprint("listen-backlog-too-small", "netns:a") == \
        fleet_fingerprint("listen-backlog-too-small", "netns:b") == "listen-backlog-too-small|netns"
    assert fleet_fingerprint("unclassified", "host", "xid <N> on <GPU>") == \
        "unclassified|xid <N> on <GPU>"
    one = alert_fingerprint("HostListenOverflows", {"instance": "a:9100", "host": "a",
                                                     "severity": "warning"})
    two = alert_fingerprint("HostListenOverflows", {"severity": "warning", "host": "b",
                                                     "instance": "b:9100"})
    assert one == two == 'HostListenOverflows{severity="warning"}'


# -- the rules, one example each --------------------------------------------------------------
def test_the_first_host_is_the_canary_and_the_others_wait_for_it() -> None:
    first = decide(state(), request("h1"), POLICY, T0)
    assert (first.verdict, first.rule, first.role) == ("grant", "F-canary", "canary")
    rollout = granted(None, first, request("h1"), T0)
    second = decide(state(rollout=rollout, in_flight=(InFlight(host_id="h1"),)),
                    request("h2"), POLICY, T0)
    assert (second.verdict, second.reason, second.rule) == ("wait", "canary", "F-canary")


def test_after_the_canary_verifies_waves_are_ceil_ten_percent_of_hosts_affected() -> None:
    rollout = released(granted(None, decide(state(), request("h1"), POLICY, T0),
                               request("h1"), T0), "h1", "verified")
    start = decide(state(rollout=rollout, affected_hosts=13), request("h2"), POLICY, T0)
    assert (start.rule, start.wave, start.new_wave_size) == ("F-wave", 1, math.ceil(1.3))
    rollout = granted(rollout, start, request("h2"), T0)
    join = decide(state(rollout=rollout), request("h3"), POLICY, T0)
    assert join.granted and join.new_wave_size is None
    rollout = granted(rollout, join, request("h3"), T0)
    full = decide(state(rollout=rollout), request("h4"), POLICY, T0)
    assert (full.verdict, full.reason) == ("wait", "wave")
    for host in ("h2", "h3"):
        rollout = released(rollout, host, "verified")
    nxt = decide(state(rollout=rollout, affected_hosts=40), request("h4"), POLICY, T0)
    assert (nxt.wave, nxt.new_wave_size) == (2, 4)


def test_a_wave_that_never_verifies_times_out_after_two_verify_windows() -> None:
    rollout = Rollout(remedy=REMEDY, fingerprint=FP, started_at=T0, canary="h1",
                      canary_verified=True, wave=1, wave_size=1, wave_started_at=T0,
                      wave_hosts=("h2",))
    assert decide(state(rollout=rollout), request("h3"), POLICY,
                  T0 + timedelta(seconds=59)).reason == "wave"
    late = decide(state(rollout=rollout), request("h3"), POLICY, T0 + timedelta(seconds=60))
    assert (late.verdict, late.wave) == ("grant", 2)


def test_a_failed_canary_hands_the_role_to_the_next_host() -> None:
    rollout = granted(None, decide(state(), request("h1"), POLICY, T0), request("h1"), T0)
    rollout = released(rollout, "h1", "rolled_back")
    nxt = decide(state(rollout=rollout, failed_hosts=frozenset({"h1"})), request("h2"),
                 POLICY, T0)
    assert (nxt.verdict, nxt.role) == ("grant", "canary")


def test_a_canary_lost_without_an_outcome_is_waited_for_as_long_as_a_wave() -> None:
    """Its lease was reclaimed, but a cut-off agent finishes verifying and reports later:
    until then its change is on trial, and nobody else may start as if it had failed."""
    rollout = granted(None, decide(state(), request("h1"), POLICY, T0), request("h1"), T0)
    rollout = lost(rollout, "h1", T0 + timedelta(seconds=20))
    assert lost(rollout, "h1", T0 + timedelta(seconds=40)) == rollout  # lost once, not twice
    for seconds in (20, 79):  # the wave timeout: 2 verify windows of 30 s from the loss
        held = decide(state(rollout=rollout), request("h2"), POLICY, T0 + timedelta(
            seconds=seconds))
        assert (held.verdict, held.reason, held.rule) == ("wait", "canary", "F-canary")
        assert "reclaimed" in held.detail
    again = decide(state(rollout=rollout), request("h1"), POLICY, T0 + timedelta(seconds=30))
    assert (again.verdict, again.role) == ("grant", "canary")  # it came back and asks again
    late = decide(state(rollout=rollout), request("h2"), POLICY, T0 + timedelta(seconds=80))
    assert (late.verdict, late.role) == ("grant", "canary")
    replaced = granted(rollout, late, request("h2"), T0 + timedelta(seconds=80))
    assert (replaced.canary, replaced.canary_lost_at) == ("h2", None)
    # the first canary's outcome, arriving after it was replaced, is not the new one's
    assert released(replaced, "h1", "verified").canary_verified is False


def test_a_lost_canarys_late_outcome_settles_it() -> None:
    rollout = granted(None, decide(state(), request("h1"), POLICY, T0), request("h1"), T0)
    rollout = lost(rollout, "h1", T0)
    good = released(rollout, "h1", "verified")
    assert good.canary_verified and good.canary_lost_at is None
    start = decide(state(rollout=good), request("h2"), POLICY, T0)
    assert (start.verdict, start.rule, start.wave) == ("grant", "F-wave", 1)
    bad = released(rollout, "h1", "rolled_back")
    assert (bad.canary, bad.canary_lost_at) == (None, None)
    nxt = decide(state(rollout=bad, failed_hosts=frozenset({"h1"})), request("h2"), POLICY, T0)
    assert (nxt.verdict, nxt.role) == ("grant", "canary")


def test_no_rollout_starts_within_the_hold_after_the_first_report() -> None:
    fresh = state(first_seen=T0 - timedelta(seconds=10))
    held = decide(fresh, request(), POLICY, T0)
    assert (held.reason, held.rule, held.retry_after) == ("hold", "F-hold", 20.0)
    assert decide(state(first_seen=None), request(), POLICY, T0).reason == "hold"
    assert decide(fresh, request(), POLICY, T0 + timedelta(seconds=20)).granted


@pytest.mark.parametrize(("recent", "reporting", "fires"), [
    (30, 100, True), (29, 100, False), (5, 10, True), (4, 10, False), (5, 0, False)])
def test_the_systemic_rule_needs_the_share_and_the_minimum(recent: int, reporting: int,
                                                           fires: bool) -> None:
    assert systemic(state(recent_hosts=recent, reporting_hosts=reporting), POLICY) is fires


def test_a_systemic_fingerprint_blocks_waiting_hosts_and_asks_for_one_fleet_incident() -> None:
    hot = decide(state(recent_hosts=40), request(), POLICY, T0)
    assert (hot.reason, hot.rule, hot.systemic_fires) == ("systemic", "F-systemic", True)
    already = decide(state(recent_hosts=40, systemic_open=True), request(), POLICY, T0)
    assert already.reason == "systemic" and not already.systemic_fires


def test_the_in_flight_cap_counts_hosts_and_failure_domains() -> None:
    assert in_flight_cap(100, POLICY) == 5 and in_flight_cap(20, POLICY) == 2
    assert in_flight_cap(3, POLICY) == 1
    racked = POLICY.model_copy(update={"in_flight_per_label": {"rack": 1}, "breaker_failures": 9})
    rollout = Rollout(remedy=REMEDY, fingerprint=FP, started_at=T0, canary="h0",
                      canary_verified=True)
    busy = state(rollout=rollout, in_flight=(InFlight(host_id="h0", labels={"rack": "r1"}),))
    same = decide(busy, request("h1", {"rack": "r1"}), racked, T0)
    assert (same.reason, same.rule) == ("in_flight", "F-in-flight")
    assert decide(busy, request("h2", {"rack": "r2"}), racked, T0).granted


def test_the_breaker_trips_at_k_failures_and_stays_open() -> None:
    failed = frozenset({"a", "b", "c"})
    trip = decide(state(failed_hosts=failed), request(), POLICY, T0)
    assert (trip.reason, trip.rule, trip.breaker_trips) == ("breaker", "F-breaker", True)
    stays = decide(state(breaker_open=True), request(), POLICY, T0)
    assert stays.reason == "breaker" and not stays.breaker_trips
    busy = decide(state(failed_hosts=frozenset({"a"}),
                        in_flight=(InFlight(host_id="b"), InFlight(host_id="c"))),
                  request(), POLICY, T0)
    assert busy.reason == "breaker" and not busy.breaker_trips


def test_the_default_policy_file_carries_the_fleet_defaults() -> None:
    fleet = load_policy().fleet
    assert (fleet.systemic_hold_seconds, fleet.systemic_percent, fleet.systemic_min_hosts,
            fleet.wave_percent, fleet.wave_timeout_windows, fleet.breaker_failures,
            fleet.breaker_window_seconds, fleet.lease_ttl_seconds) == (
        30, 30, 5, 10, 2, 3, 3600, 15)


# -- invariants over arbitrary states ---------------------------------------------------------
hosts = st.sampled_from([f"h{i}" for i in range(12)])
labels = st.dictionaries(st.sampled_from(["rack", "zone"]), st.sampled_from(["a", "b"]),
                         max_size=2)
policies = st.builds(
    FleetPolicy, in_flight_max=st.integers(1, 6), in_flight_percent=st.floats(10, 100),
    in_flight_per_label=st.dictionaries(st.sampled_from(["rack", "zone"]), st.integers(1, 3),
                                        max_size=2),
    breaker_failures=st.integers(1, 9), systemic_min_hosts=st.integers(1, 30),
    systemic_percent=st.floats(1, 100), systemic_hold_seconds=st.floats(0, 60))
rollouts = st.none() | st.builds(
    Rollout, remedy=st.just(REMEDY), fingerprint=st.just(FP), started_at=st.just(T0),
    canary=st.none() | hosts, canary_verified=st.booleans(), wave=st.integers(0, 3),
    wave_size=st.integers(0, 4), wave_started_at=st.none() | st.just(T0),
    wave_hosts=st.lists(hosts, max_size=4, unique=True).map(tuple),
    wave_verified=st.lists(hosts, max_size=4, unique=True).map(tuple),
    ended_at=st.none() | st.just(T0))
rarely = st.sampled_from([False, False, False, False, True])  # blocks reach the later rules
states = st.builds(
    FleetState, paused=rarely, remedy_paused=rarely, host_paused=rarely,
    reporting_hosts=st.integers(0, 12) | st.integers(0, 200), affected_hosts=st.integers(0, 200),
    recent_hosts=st.integers(0, 20),
    first_seen=st.none() | st.integers(0, 120).map(lambda s: T0 - timedelta(seconds=s)),
    systemic_open=rarely,
    in_flight=st.lists(st.builds(InFlight, host_id=hosts, labels=labels), max_size=8,
                       unique_by=lambda h: h.host_id).map(tuple),
    failed_hosts=st.frozensets(hosts, max_size=3), breaker_open=rarely,
    rollout=rollouts, verify_window_seconds=st.floats(1, 60))
requests = st.builds(LeaseRequest, host_id=st.sampled_from(["x1", "x2"]), labels=labels,
                     remedy=st.just(REMEDY), fingerprint=st.just(FP),
                     purpose=st.sampled_from(["apply", "rollback"]))
moments = st.integers(0, 600).map(lambda s: T0 + timedelta(seconds=s))


@PROPS
@given(states, requests, policies, moments)
def test_a_grant_never_takes_the_remedy_above_its_in_flight_caps(
        s: FleetState, r: LeaseRequest, p: FleetPolicy, now: datetime) -> None:
    d = decide(s, r, p, now)
    if not d.granted or r.purpose == "rollback":
        return
    assert len(s.in_flight) + 1 <= in_flight_cap(s.reporting_hosts, p)
    for label, most in p.in_flight_per_label.items():
        mine = r.labels.get(label, "")
        assert sum(1 for h in s.in_flight if h.labels.get(label, "") == mine) + 1 <= most
    assert len(s.failed_hosts) + len(s.in_flight) + 1 <= p.breaker_failures


@PROPS
@given(st.lists(st.builds(InFlight, host_id=hosts, labels=labels), max_size=6,
                unique_by=lambda h: h.host_id).map(tuple),
       labels, st.dictionaries(st.sampled_from(["rack", "zone"]), st.integers(1, 3),
                               min_size=1, max_size=2))
def test_a_grant_never_puts_more_of_one_failure_domain_in_flight_than_its_cap(
        flying: tuple[InFlight, ...], mine: dict[str, str], caps: dict[str, int]) -> None:
    p = FleetPolicy(in_flight_per_label=caps, in_flight_max=100, breaker_failures=100)
    d = decide(state(in_flight=flying), request("x", mine), p, T0)
    for label, most in caps.items():
        sharing = sum(1 for h in flying if h.labels.get(label, "") == mine.get(label, ""))
        assert not d.granted or sharing + 1 <= most
        if sharing >= most:
            assert d.reason == "in_flight"


@PROPS
@given(states, requests, policies, moments)
def test_nothing_is_granted_while_paused_systemic_or_the_breaker_is_open(
        s: FleetState, r: LeaseRequest, p: FleetPolicy, now: datetime) -> None:
    d = decide(s, r, p, now)
    blocked = (s.paused or s.remedy_paused or s.host_paused or s.systemic_open
               or systemic(s, p) or s.breaker_open
               or len(s.failed_hosts) >= p.breaker_failures)
    if blocked and r.purpose == "apply":
        assert d.verdict == "wait" and d.rule in ("F-paused", "F-systemic", "F-breaker")


# unpaused, and mostly with the systemic incident or the breaker open (else few states
# reach a fleet-wide wait); the rule and the breaker's count still decide the rest
unpaused = st.tuples(states, st.booleans(), st.booleans()).map(lambda t: t[0].model_copy(
    update={"paused": False, "remedy_paused": False, "host_paused": False,
            "systemic_open": t[1], "breaker_open": t[2]}))


# The waits that are not fleet-wide, for one host each: the canary itself asks again and
# is granted; a host of another rack joins the wave that capped this one's rack.
CANARY_OUT = state(rollout=Rollout(remedy=REMEDY, fingerprint=FP, started_at=T0, canary="h1"))
RACK_CAPPED = state(
    rollout=Rollout(remedy=REMEDY, fingerprint=FP, started_at=T0, canary="h0",
                    canary_verified=True, wave=1, wave_size=3, wave_started_at=T0,
                    wave_hosts=("h2",)),
    in_flight=(InFlight(host_id="h2", labels={"rack": "a"}),))


@PROPS
@given(unpaused, requests.map(lambda r: r.model_copy(update={"purpose": "apply"})), policies,
       moments, st.sampled_from(["x1", "x2", "x3"]) | hosts, labels, st.booleans())
@example(CANARY_OUT, request("x1"), POLICY, T0, "h1", {}, False)
@example(RACK_CAPPED, request("x1", {"rack": "a"}),
         POLICY.model_copy(update={"in_flight_per_label": {"rack": 1}}), T0, "x2",
         {"rack": "b"}, False)
def test_a_fleet_wide_wait_is_the_answer_of_every_host_that_holds_no_lease_and_no_pause(
        s: FleetState, r: LeaseRequest, p: FleetPolicy, now: datetime, other: str,
        other_labels: dict[str, str], other_paused: bool) -> None:
    """What lets a replica answer a burst of asks with the one answer the first of them
    got (web.fleet.Holds): the state another host would be decided on differs only in its
    own pause, since neither holds a lease (the in-flight hosts are the others). A host
    without a pause gets the same wait; a paused one its pause (it asks for itself)."""
    mine = decide(s, r, p, now)
    assume(mine.verdict == "wait" and mine.reason in FLEET_WIDE_WAITS)
    assume(other != r.host_id and other not in {f.host_id for f in s.in_flight})
    theirs = decide(s.model_copy(update={"host_paused": other_paused}),
                    r.model_copy(update={"host_id": other, "labels": other_labels}), p, now)
    if other_paused:
        assert (theirs.reason, theirs.rule) == ("paused", "F-paused"), theirs
    else:
        assert theirs == mine, (mine, theirs)


@PROPS
@given(states, requests.map(lambda r: r.model_copy(update={"purpose": "rollback"})), policies,
       moments)
def test_a_rollback_is_never_blocked(s: FleetState, r: LeaseRequest, p: FleetPolicy,
                                     now: datetime) -> None:
    d = decide(s, r, p, now)
    assert (d.verdict, d.rule) == ("grant", "F-rollback")


@PROPS
@given(states, requests, policies, moments)
def test_every_decision_names_a_rule_and_a_wait_says_when_to_ask_again(
        s: FleetState, r: LeaseRequest, p: FleetPolicy, now: datetime) -> None:
    d = decide(s, r, p, now)
    assert d.rule.startswith("F-") and d.detail
    assert (d.reason is None) == d.granted
    assert d.granted or d.retry_after >= 0.5


# -- invariants over whole rollouts -----------------------------------------------------------
@dataclass
class Fleet:
    """The control plane's bookkeeping in miniature (the store does the same in SQL)."""

    policy: FleetPolicy
    now: datetime = T0
    rollout: Rollout | None = None
    leases: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> labels
    failed: set[str] = field(default_factory=set)
    breaker: bool = False
    touched: list[str] = field(default_factory=list)
    verified: set[str] = field(default_factory=set)

    def ask(self, host: str, labels: dict[str, str], affected: int) -> FleetDecision:
        s = FleetState(reporting_hosts=affected, affected_hosts=affected, recent_hosts=1,
                       first_seen=T0 - timedelta(minutes=1), breaker_open=self.breaker,
                       failed_hosts=frozenset(self.failed), rollout=self.rollout,
                       in_flight=tuple(InFlight(host_id=h, labels=lb)
                                       for h, lb in self.leases.items()),
                       verify_window_seconds=30)
        r = LeaseRequest(host_id=host, labels=labels, remedy=REMEDY, fingerprint=FP)
        d = decide(s, r, self.policy, self.now)
        self.breaker = self.breaker or d.breaker_trips
        if d.granted:
            assert host not in self.leases
            self.rollout = granted(self.rollout, d, r, self.now)
            self.leases[host] = labels
            self.touched.append(host)
        return d

    def release(self, host: str, outcome: Outcome) -> None:
        del self.leases[host]
        if outcome in FAILED:
            self.failed.add(host)
        if outcome == "verified":
            self.verified.add(host)
        assert self.rollout is not None
        self.rollout = released(self.rollout, host, outcome)


steps = st.lists(st.tuples(st.integers(0, 39), st.booleans(), st.integers(0, 40)),
                 min_size=1, max_size=200)


@PROPS
@given(steps, st.integers(1, 5), st.integers(5, 40), st.booleans())
def test_a_bad_fix_touches_at_most_the_canary_plus_k_hosts(
        script: list[tuple[int, bool, int]], k: int, n: int, canary_passes: bool) -> None:
    """Every host but (maybe) the canary regresses: the worst case is a canary that
    verifies, then waves that all fail."""
    fleet = Fleet(FleetPolicy(breaker_failures=k, in_flight_max=10, in_flight_percent=100))
    for who, ask, seconds in script:
        host = f"h{who % n}"
        fleet.now += timedelta(seconds=seconds)
        if ask and host not in fleet.leases and host not in fleet.failed | fleet.verified:
            fleet.ask(host, {}, n)
        elif not ask and fleet.leases:
            leaving = sorted(fleet.leases)[who % len(fleet.leases)]
            good = canary_passes and fleet.rollout is not None and leaving == fleet.rollout.canary
            fleet.release(leaving, "verified" if good else "rolled_back")
        assert len(fleet.failed) + len(fleet.leases) <= k
    assert len(set(fleet.touched)) <= 1 + k


@PROPS
@given(steps, st.integers(5, 40))
def test_a_good_fix_goes_canary_first_then_waves_each_after_the_last_verified(
        script: list[tuple[int, bool, int]], n: int) -> None:
    fleet = Fleet(FleetPolicy(in_flight_max=10, in_flight_percent=100, breaker_failures=5))
    for who, ask, seconds in script:
        host = f"h{who % n}"
        fleet.now += timedelta(seconds=seconds % 5)  # no wave times out here
        if ask and host not in fleet.leases and host not in fleet.verified:
            before = fleet.rollout
            d = fleet.ask(host, {}, n)
            if d.granted and d.role == "wave":
                assert before is not None and before.canary_verified  # the canary came first
                if d.new_wave_size is not None and before.wave > 0:
                    assert set(before.wave_hosts) <= set(before.wave_verified)
                    assert len(before.wave_hosts) >= before.wave_size
        elif not ask and fleet.leases:
            fleet.release(sorted(fleet.leases)[who % len(fleet.leases)], "verified")
    if fleet.touched:
        assert fleet.rollout is not None and fleet.touched[0] == fleet.rollout.canary
