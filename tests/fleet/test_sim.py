"""``healer fleet sim``: a small run of every scenario at once against its own throwaway
PostgreSQL and two real replicas, judged on its report; the judges themselves on made-up
ground truth; and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from healer.sim.run import (
    canary_violations,
    double_executions,
    histogram_quantile,
    max_overlap,
)
from healer.store.pgserver import find_bindir
from tests.tools import missing

AGENTS = 30  # a fifth is 6 hosts: more than canary + K (4), so a breaker that never
# tripped would show; 35 % is 10 hosts, above the systemic minimum of 5
NICE = 3  # not the default (0): the report shows the workers' own nice value


def _healer(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HEALER_DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "healer.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if find_bindir() is None:
        missing("needs PostgreSQL: install Debian's postgresql (make system-deps)")
    if os.geteuid() != 0:
        pytest.skip("needs root: PostgreSQL and the replicas run as their own users")
    # the shipped 30 s systemic hold comes first: rollouts start 36 s in
    done = _healer("fleet", "sim", "--agents", str(AGENTS), "--json", "--seconds", "100",
                   "--agent-nice", str(NICE), timeout=200)
    assert done.stdout, done.stderr[-3000:]
    found: dict[str, Any] = json.loads(done.stdout)
    found["exit"] = done.returncode
    return found


SAFETY = ("no_double_executions", "in_flight_within_cap", "bad_fix_within_canary_plus_k",
          "systemic_no_auto_actions", "systemic_one_fleet_incident", "reclaim_within_2ttl",
          "llm_calls_within_fingerprints", "db_connections_under_60", "storm_healed",
          "webhooks_one_incident_each", "kill_healed")


def test_every_safety_goal_holds_and_the_exit_status_follows_the_goals(
        report: dict[str, Any]) -> None:
    goals = report["goals"]
    assert [g for g in SAFETY if not goals[g]] == [], json.dumps(report, indent=1)
    assert report["exit"] == (0 if all(goals.values()) else 1)
    assert report["agents"] == AGENTS and report["workers"] == 10
    assert report["agent_nice"] == [NICE]  # as the running workers have it
    # Latencies are measured (HTTP and the agents' own processes included) and judged in
    # the report; the test does not hold this shared two-core machine to their targets,
    # which depend on what else it runs (docs/fleet-sim.md).
    assert goals["claim_p99_under_100ms"] == (report["claim_p99_ms"] < 100)
    assert goals["approval_propagation_p99_under_1s"] == (
        report["approval_propagation_p99_ms"] < 1000)
    assert 0 < report["claim_p99_ms"] < 10000
    assert 0 < report["approval_propagation_p99_ms"] < 10000


def test_storm_canary_then_waves_within_the_cap_and_no_double_execution(
        report: dict[str, Any]) -> None:
    # Every storm host healed, but one whose change the kill interrupted (rolled back by
    # its crash recovery, then held by the guard's cooldown).
    assert report["storm_hosts_unhealed"] == [] and report["storm_hosts"] == AGENTS // 5
    assert report["storm_hosts_healed"] >= report["storm_hosts"] - 1
    assert report["double_executions"] == 0 and report["canary_violations"] == 0
    # Held back by the rollout: behind the canary, for a wave or for room in flight. With
    # 2 s verify windows the canary is often done before the others ask again.
    assert report["storm_hosts_waited_rollout"] >= report["storm_hosts"] // 2
    assert report["storm_hosts_waited_rollout"] >= report["storm_hosts_waited_canary"]
    assert 1 <= report["max_in_flight"] <= report["in_flight_cap"] == 3


def test_a_bad_fix_trips_the_breaker_before_it_spreads(report: dict[str, Any]) -> None:
    # K failed hosts trip it: at least K were touched, and no more than canary + K.
    assert 3 <= report["bad_fix_hosts_touched"] <= report["canary_plus_k"] == 4
    assert report["bad_fix_hosts"] > report["canary_plus_k"]


def test_a_systemic_failure_gets_no_automatic_action_and_one_fleet_incident(
        report: dict[str, Any]) -> None:
    assert report["systemic_hosts"] >= 5
    assert report["systemic_auto_actions"] == 0
    assert report["systemic_fleet_incidents"] == 1


def test_a_killed_workers_leases_are_reclaimed_within_two_ttls(report: dict[str, Any]) -> None:
    assert report["killed_agents"] == AGENTS // 10 and report["leases_live_at_kill"] >= 1
    assert 0 < report["reclaim_seconds_max"] <= 2 * report["lease_ttl_seconds"]


def test_duplicate_webhooks_make_one_incident_per_host_and_the_rest_is_measured(
        report: dict[str, Any]) -> None:
    assert report["webhook_incidents"] and set(report["webhook_incidents"].values()) == {1}
    assert report["approval_propagation_missed"] == 0
    assert 0 < report["db_connections_peak"] < 60 and report["db_connection_samples"] > 10
    assert report["llm_calls"] <= report["distinct_fingerprints"]


# -- the judges, on ground truth made up to catch them out ---------------------------------
def _w(op: str, remedy: str = "k") -> dict[str, Any]:
    return {"op": op, "remedy": remedy}


def test_double_executions_count_an_apply_with_no_rollback_since_the_last() -> None:
    assert double_executions({"a": [_w("apply"), _w("rollback"), _w("apply")]}) == 0
    assert double_executions({"a": [_w("apply"), _w("apply")], "b": [_w("apply")]}) == 1
    assert double_executions({"a": [_w("apply", "x"), _w("apply", "y")]}) == 0


def test_in_flight_is_the_most_changes_open_at_once_and_the_canary_goes_first() -> None:
    spans = [(0.0, 3.0, "a"), (3.0, 5.0, "b"), (3.5, 6.0, "c"), (4.0, 4.5, "d")]
    assert max_overlap(spans) == 3
    assert canary_violations(spans) == 0
    assert canary_violations([(0.0, 3.0, "a"), (2.0, 4.0, "b")]) == 1


def test_quantiles_interpolate_within_buckets_as_prometheus_does() -> None:
    buckets = {"0.01": 0.0, "0.05": 50.0, "0.1": 100.0, "+Inf": 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.099)
    assert histogram_quantile(0.99, {"0.1": 0.0, "+Inf": 0.0}) is None


@pytest.mark.parametrize("args", [("--agents", "0"), ("--agents", "10", "--scenario", "nope"),
                                  ("--agents", "10", "--agent-nice", "20"),
                                  ("--agents", "10", "--agent-nice", "-1")])
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    done = _healer("fleet", "sim", *args, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
