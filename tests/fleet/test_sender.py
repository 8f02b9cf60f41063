"""Heartbeats and reports against a control plane over real HTTP (tests/fleet_server.py)."""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path

import pytest

from guardrails.actions import Notify
from healer.fleet.sender import REPORT_IDLE
from healer.models import ActionState, Incident, Proposal, Sample
from healer.store.engine import open_engine
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from tests.act.conftest import Clock, Window
from tests.act.engine_kit import make_engine
from tests.fleet_server import ControlPlane, Throttle

from .conftest import HOST, TOKEN, LinkFactory, until

S = ActionState


def _incident(clock: Clock) -> Incident:
    return Incident(host_id=HOST, playbook="listen-backlog-too-small", scope="netns:n1",
                    first_seen=clock.now, last_seen=clock.now)


def _notify_through(repo: Repository, clock: Clock, window: Window, tmp_path: Path,
                    incident: Incident | None = None) -> int:
    """A notification journaled and carried to verified: five journal writes."""
    engine = make_engine(repo, clock, window, tmp_path)
    record = engine.propose(incident, Proposal(action=Notify(message="hello"),
                                               provenance="playbook", in_playbook=True))
    engine.step()
    clock.advance(5)
    engine.step()
    final = repo.get_action(record.id or 0)
    assert final is not None and final.state == S.VERIFIED
    return record.id or 0


def test_a_heartbeat_carries_the_protocol_fields_and_the_next_comes_in_5s_give_or_take_20pct(
        cp: ControlPlane, repo: Repository, make_link: LinkFactory) -> None:
    link = make_link(cp.url, repo, start=False, labels={"rack": "r12", "zone": "a"})
    delays = [link.sender.heartbeat() for _ in range(30)]
    assert all(4.0 <= d <= 6.0 for d in delays), delays
    assert max(delays) - min(delays) > 0.2  # jittered, not a fixed period
    seen = cp.requests("heartbeat")[0]
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen.headers["X-Healer-Agent-Version"].count(".") == 2
    body = seen.body
    assert body["host_id"] == HOST and body["labels"] == {"rack": "r12", "zone": "a"}
    assert body["mode"] == "auto" and body["open_incidents"] == 0
    assert body["last_report_seq"] == 0 and body["agent_version"]
    assert body["sent_at"].endswith("+00:00")


def test_the_clock_skew_the_control_plane_shows_is_kept(
        cp: ControlPlane, repo: Repository, make_link: LinkFactory) -> None:
    cp.clock_offset = 90.0
    telemetry = Telemetry()
    link = make_link(cp.url, repo, start=False, telemetry=telemetry)
    link.sender.heartbeat()
    assert link.state.skew_seconds is not None
    assert abs(link.state.skew_seconds - 90.0) < 1.0
    assert abs(telemetry.fleet_clock_skew_seconds._value.get() - 90.0) < 1.0


@pytest.mark.parametrize(("status", "retry_after"), [(429, 7.0), (503, 3.0)])
def test_back_pressure_holds_the_next_heartbeat_for_its_retry_after(
        cp: ControlPlane, repo: Repository, make_link: LinkFactory, status: int,
        retry_after: float) -> None:
    cp.throttles["heartbeat"] = Throttle(status, 1, f"{retry_after:g}")
    link = make_link(cp.url, repo, start=False)
    delay = link.sender.heartbeat()
    assert retry_after * 0.8 <= delay <= retry_after * 1.2
    assert link.state.unreachable_for() == 0.0  # it answered: busy, not gone
    assert 4.0 <= link.sender.heartbeat() <= 6.0  # served again: back to the period


def test_a_control_plane_refusing_this_version_is_logged_once_and_asked_again_slowly(
        cp: ControlPlane, repo: Repository, make_link: LinkFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    cp.version = "0.3.0"  # two minors ahead of this agent's 0.1.x: 426
    link = make_link(cp.url, repo, start=False)
    with caplog.at_level(logging.ERROR, logger="healer.fleet"):
        delays = [link.sender.heartbeat(), link.sender.heartbeat()]
    assert all(d >= 48.0 for d in delays)
    refusals = [r for r in caplog.records if "426" in r.getMessage()]
    assert len(refusals) == 1 and "upgrade" in refusals[0].getMessage()
    assert link.state.outdated and "0.3.0" in link.state.outdated
    cp.version = "0.2.0"  # one minor of skew is accepted
    assert link.sender.heartbeat() <= 6.0 and link.state.outdated is None


def test_heartbeats_run_on_their_own_thread_at_the_period_the_control_plane_answers(
        cp: ControlPlane, repo: Repository, make_link: LinkFactory) -> None:
    cp.heartbeat_seconds, cp.paused = 1.0, True
    link = make_link(cp.url, repo)
    until(lambda: len(cp.requests("heartbeat")) >= 4, timeout=8)
    at = [s.at for s in cp.requests("heartbeat")]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert all(0.75 <= g <= 2.0 for g in gaps), gaps  # 1 s ± 20 %, not the default 5 s
    assert link.state.paused  # the heartbeat's answer carries the kill switch


def test_every_incident_change_and_journal_write_is_reported_in_order_and_acked(
        cp: ControlPlane, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        make_link: LinkFactory) -> None:
    repo.set_fleet_reporting(True)
    incident = repo.open_incident(_incident(clock))
    action_id = _notify_through(repo, clock, window, tmp_path, incident)
    repo.update_incident(incident.model_copy(update={"count": 7}))
    link = make_link(cp.url, repo, start=False)
    assert link.sender.report() == 0.0  # all acked: more may be waiting
    sent = [cp.reports[s] for s in sorted(cp.reports)]
    assert sorted(cp.reports) == list(range(1, len(sent) + 1))
    assert [r["kind"] for r in sent] == ["incident"] + ["transition"] * 5
    assert sent[0]["incident"]["fleet_fingerprint"] == "listen-backlog-too-small|netns"
    assert sent[0]["incident"]["count"] == 7  # the update joined its unsent report
    states = [r["action"]["state"] for r in sent[1:]]
    assert states == ["proposed", "approved", "applying", "verifying", "verified"]
    assert all(r["action"]["id"] == action_id for r in sent[1:])
    assert [t["state"] for t in sent[-1]["action"]["transitions"]] == states
    assert repo.report_totals() == (0, 0) and repo.last_report_seq() == 6
    assert link.sender.report() == REPORT_IDLE  # nothing left: a new report wakes it


def test_a_queued_report_goes_out_at_once_but_never_through_a_back_off(
        cp: ControlPlane, repo: Repository, make_link: LinkFactory) -> None:
    make_link(cp.url, repo)
    until(lambda: cp.requests("heartbeat"))
    time.sleep(0.3)  # the sender found the outbox empty: its next look is REPORT_IDLE away
    queued = time.monotonic()
    for n in (1, 2, 3):  # three transactions, as a cycle's transitions would be
        repo.add_report("sample", "sample", {"n": n})
    until(lambda: len(cp.reports) == 3, timeout=REPORT_IDLE / 2)
    assert time.monotonic() - queued < 2.0, "sent when queued, not at the next look"
    assert len(cp.requests("report")) == 1, "queued together, sent together"
    cp.throttles["report"] = Throttle(429, 1, "3")
    repo.add_report("sample", "sample", {"n": 4})
    until(lambda: len(cp.requests("report")) == 2)  # answered 429, Retry-After 3 s
    refused = time.monotonic()
    repo.add_report("sample", "sample", {"n": 5})  # wakes the sender, which holds off
    until(lambda: len(cp.reports) == 5, timeout=8)
    assert time.monotonic() - refused >= 3 * 0.8 - 0.1  # Retry-After, less its jitter


def test_unsent_reports_survive_a_restart_and_go_again_with_their_seqs(
        cp: ControlPlane, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        make_link: LinkFactory) -> None:
    repo.set_fleet_reporting(True)
    _notify_through(repo, clock, window, tmp_path)
    cp.ack_mode = "none"  # received, never acked (lost answers)
    make_link(cp.url, repo, start=False).sender.report()
    first = [(s.body["reports"][0]["seq"], len(s.body["reports"])) for s in cp.requests("report")]
    assert first == [(1, 5)]
    cp.stop()  # and then the control plane is gone
    restarted = Repository(open_engine(str(repo.engine.url)), HOST, clock=clock)
    restarted.follow_fleet_reporting()
    down = make_link(cp.url, restarted, start=False).sender.report()
    assert down >= 0.8 and restarted.report_totals()[0] == 5  # kept, backing off
    cp.ack_mode = "contiguous"
    cp.start(cp.port)
    assert make_link(cp.url, restarted, start=False).sender.report() == 0.0
    again = cp.requests("report")[-1].body["reports"]
    assert [r["seq"] for r in again] == [1, 2, 3, 4, 5]  # the same numbers: a replay
    assert restarted.report_totals() == (0, 0)


def test_a_sample_summary_is_queued_once_per_sample_period(
        cp: ControlPlane, repo: Repository, make_link: LinkFactory) -> None:
    repo.set_fleet_reporting(True)
    link = make_link(cp.url, repo, start=False)  # sample_seconds=1
    sample = Sample(ts=time.time(), metrics={"load.1m": 2.5, "mem.available_bytes": 1e9,
                                             "net.tcp.listen_overflows_total": 3.0})
    link.sampled(sample)
    link.sampled(sample)
    [report] = repo.report_batch(10, 10**9)
    assert report.kind == "sample"
    assert report.body["metrics"] == {"load.1m": 2.5, "mem.available_bytes": 1e9}
    time.sleep(1.05)
    link.sampled(sample)
    assert repo.report_totals()[0] == 2


def test_only_unsent_samples_are_dropped_and_the_seqs_stay_without_gaps(
        cp: ControlPlane, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        make_link: LinkFactory) -> None:
    repo.set_fleet_reporting(True)
    link = make_link(cp.url, repo, start=False)
    for i in range(40):
        repo.add_report("sample", "sample", {"i": 10 + i, "pad": "x" * 200})
        if i == 19:
            _notify_through(repo, clock, window, tmp_path)
    count, size = repo.report_totals()
    assert count == 45
    per_sample = len(json.dumps({"i": 10, "pad": "x" * 200}, separators=(",", ":")))
    dropped = repo.cap_reports(size - 20 * per_sample)  # room for 20 samples fewer
    assert dropped == 20
    left = repo.report_batch(100, 10**9)
    kinds = [r.kind for r in left]
    assert kinds.count("transition") == 5 and kinds.count("sample") == 20
    assert [r.body["i"] for r in left if r.kind == "sample"] == list(range(30, 50))
    assert [r.seq for r in left] == list(range(1, 26))  # numbered as sent: no gap
    assert repo.cap_reports(1) == 0  # over the cap, but only transitions and sent ones left
    cp.ack_mode = "contiguous"
    link.sender.report()
    assert repo.report_totals() == (0, 0)


def test_a_control_plane_that_acks_past_this_host_numbers_the_reports_in_flight_again(
        cp: ControlPlane, repo: Repository, clock: Clock, window: Window, tmp_path: Path,
        make_link: LinkFactory) -> None:
    repo.set_fleet_reporting(True)
    _notify_through(repo, clock, window, tmp_path)
    cp.ack_mode = "jump"  # it holds seqs up to 1000 from a former life of this host
    link = make_link(cp.url, repo, start=False)
    assert link.sender.report() == 0.0
    link.sender.report()
    seqs = [r["seq"] for r in cp.requests("report")[1].body["reports"]]
    assert seqs == [1001, 1002, 1003, 1004, 1005]
