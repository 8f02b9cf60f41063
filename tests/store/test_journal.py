"""Incidents and the action journal: round trips, compare-and-set transitions, audit."""

from __future__ import annotations

import json
import math
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from guardrails.actions import SysctlWrite
from guardrails.decision import Decision
from healer.detect import DetectEvent, IncidentTracker
from healer.errors import StoreError
from healer.models import (
    ActionState,
    Diagnosis,
    Evidence,
    IncidentStatus,
    Proposal,
    Step,
    Summary,
    Verification,
    VerifyResult,
    VerifySpec,
)
from healer.store.engine import open_engine
from healer.store.errors import IllegalTransition, NotFound, StaleState
from healer.store.repository import Repository
from healer.store.tables import ActionTable
from playbooks.schema import Converge

from .conftest import HOST, T0, FakeClock, make_incident, make_record

S = ActionState


def test_incident_round_trips_evidence_and_timestamps_in_utc(repo: Repository) -> None:
    ev = Evidence(
        signals={"net.tcp.listen_overflows_total": 12.0},
        kmsg=("<x> evil; rm -rf",),
        metrics={"load.1m": [(1.0, 2.0), (2.0, 3.5)]},
    )
    opened = repo.open_incident(make_incident().model_copy(update={"evidence": ev}))
    got = repo.get_incident(opened.id or 0)
    assert got is not None and opened.id is not None
    assert got.evidence == ev
    assert got.first_seen == T0 and got.first_seen.utcoffset() == timedelta(0)


def test_non_finite_evidence_numbers_are_stored_as_standard_json_and_read_back(
        repo: Repository) -> None:
    # A baseline signal fires with an infinite score when its history has no spread.
    ev = Evidence(signals={"baseline": math.inf, "drop": -math.inf},
                  metrics={"m": [(1.0, math.nan), (2.0, 3.0)]})
    opened = repo.open_incident(make_incident().model_copy(update={"evidence": ev}))
    got = repo.get_incident(opened.id or 0)
    assert got is not None
    assert got.evidence.signals == {"baseline": math.inf, "drop": -math.inf}
    (_, missing_value), second = got.evidence.metrics["m"]
    assert math.isnan(missing_value) and second == (2.0, 3.0)
    with repo.engine.connect() as conn:
        text = conn.execute(sa.text("SELECT CAST(evidence AS TEXT) FROM incidents")).scalar_one()

    def reject(token: str) -> None:
        raise AssertionError(f"not standard JSON: {token}")

    json.loads(text, parse_constant=reject)


def test_repeat_updates_the_open_incident_and_find_returns_newest(repo: Repository) -> None:
    inc = repo.open_incident(make_incident())
    later = T0 + timedelta(minutes=3)
    repo.update_incident(inc.model_copy(update={"count": 4, "last_seen": later}))
    found = repo.find_incident(inc.playbook, inc.scope, status=IncidentStatus.OPEN)
    assert found is not None and found.id == inc.id
    assert (found.count, found.last_seen) == (4, later)
    repo.update_incident(found.model_copy(update={"status": IncidentStatus.RESOLVED}))
    assert repo.find_incident(inc.playbook, inc.scope, status=IncidentStatus.OPEN) is None
    newer = repo.open_incident(make_incident())
    assert repo.find_incident(inc.playbook, inc.scope) == newer
    assert [i.id for i in repo.list_incidents()] == [newer.id, inc.id]
    assert [i.id for i in repo.list_incidents(IncidentStatus.RESOLVED)] == [inc.id]


def test_set_diagnosis_stores_proposals_with_typed_actions(repo: Repository) -> None:
    inc = repo.open_incident(make_incident())
    action = SysctlWrite(scope="netns:t1", key="net.core.somaxconn", value="1024")
    diag = Diagnosis(
        root_cause="listen-backlog-too-small",
        confidence=0.9,
        proposals=(Proposal(action=action, provenance="playbook", in_playbook=True),),
    )
    repo.set_diagnosis(inc.id or 0, diag)
    got = repo.get_incident(inc.id or 0)
    assert got is not None and got.diagnosis == diag
    with pytest.raises(NotFound):
        repo.set_diagnosis(9999, diag)


def test_add_action_round_trips_action_and_decision(repo: Repository) -> None:
    inc = repo.open_incident(make_incident())
    rec = repo.add_action(make_record(incident_id=inc.id))
    assert rec.id is not None
    got = repo.get_action(rec.id)
    assert got == rec
    assert isinstance(got.action, SysctlWrite) and got.action.key == "net.core.somaxconn"
    assert got.decision.rules == ("R-somaxconn",)
    assert repo.list_audit(subject=f"action:{rec.id}")[0].event == "action.added"


def test_transition_moves_state_sets_fields_and_writes_audit(
    repo: Repository, clock: FakeClock
) -> None:
    rec = repo.add_action(make_record())
    assert rec.id is not None
    repo.transition(rec.id, S.APPROVED, expect={S.PROPOSED})
    clock.advance(5)
    deadline = clock.now + timedelta(minutes=2)
    moved = repo.transition(
        rec.id,
        S.APPLYING,
        expect={S.APPROVED},
        actor="alice",
        comment="go",
        original="128",
        deadline=deadline,
        decision=Decision(verdict="allow", rules=("R2",)),
    )
    assert (moved.state, moved.original, moved.deadline) == (S.APPLYING, "128", deadline)
    assert moved.updated_at == clock.now and moved.decision.rules == ("R2",)
    top = repo.list_audit(subject=f"action:{rec.id}")[0]
    assert (top.actor, top.detail) == (
        "alice",
        {"from": "approved", "to": "applying", "comment": "go"},
    )


def test_transition_rejects_a_stale_expected_state(repo: Repository) -> None:
    rec = repo.add_action(make_record())
    assert rec.id is not None
    repo.transition(rec.id, S.AWAITING_APPROVAL, expect={S.PROPOSED})
    repo.transition(rec.id, S.REJECTED, expect={S.AWAITING_APPROVAL}, actor="bob")
    # A second approver acting on the old state loses the race, and nothing changes.
    with pytest.raises(StaleState) as err:
        repo.transition(rec.id, S.APPROVED, expect={S.AWAITING_APPROVAL}, actor="carol")
    assert err.value.actual == "rejected"
    assert isinstance(err.value, StoreError)
    assert repo.get_action(rec.id).state == S.REJECTED  # type: ignore[union-attr]
    assert len(repo.list_audit(subject=f"action:{rec.id}")) == 3


def test_transition_rejects_moves_outside_the_state_machine(repo: Repository) -> None:
    rec = repo.add_action(make_record())
    assert rec.id is not None
    with pytest.raises(IllegalTransition):
        repo.transition(rec.id, S.VERIFIED, expect={S.PROPOSED})
    # Legal from one expected state but not from the one the row is in.
    with pytest.raises(IllegalTransition):
        repo.transition(rec.id, S.ROLLED_BACK, expect={S.PROPOSED, S.APPLYING})
    with pytest.raises(TypeError):
        repo.transition(rec.id, S.APPROVED, expect={S.PROPOSED}, state="verified")
    with pytest.raises(NotFound):
        repo.transition(424242, S.APPROVED, expect={S.PROPOSED})
    assert repo.get_action(rec.id).state == S.PROPOSED  # type: ignore[union-attr]


def test_list_actions_filters_states_and_incident_newest_first(repo: Repository) -> None:
    inc = repo.open_incident(make_incident())
    a = repo.add_action(make_record(incident_id=inc.id))
    b = repo.add_action(make_record(state=S.AWAITING_APPROVAL))
    c = repo.add_action(make_record(incident_id=inc.id, state=S.AWAITING_APPROVAL))
    assert [r.id for r in repo.list_actions()] == [c.id, b.id, a.id]
    assert [r.id for r in repo.list_actions(states={S.AWAITING_APPROVAL})] == [c.id, b.id]
    assert [r.id for r in repo.list_actions(incident_id=inc.id)] == [c.id, a.id]
    assert [r.id for r in repo.list_actions(limit=1)] == [c.id]


def test_has_actions_probes_this_hosts_states_only(engine: sa.Engine) -> None:
    repo, other = Repository(engine, HOST), Repository(engine, "node-b")
    assert not repo.has_actions({S.APPROVED, S.VERIFYING})
    other.add_action(make_record(state=S.APPROVED).model_copy(update={"host_id": "node-b"}))
    assert not repo.has_actions({S.APPROVED})  # another host's row
    repo.add_action(make_record(state=S.AWAITING_APPROVAL))
    assert repo.has_actions({S.APPROVED, S.AWAITING_APPROVAL})
    assert not repo.has_actions({S.APPROVED, S.VERIFYING})
    assert repo.has_actions({S.AWAITING_APPROVAL}, created_before=T0)  # created at T0
    assert not repo.has_actions({S.AWAITING_APPROVAL}, created_before=T0 - timedelta(seconds=1))


def test_in_states_lists_this_hosts_records_in_those_states_by_id(engine: sa.Engine) -> None:
    repo, other = Repository(engine, HOST), Repository(engine, "node-b")
    assert repo.in_states({S.APPROVED, S.VERIFYING}) == []
    other.add_action(make_record(state=S.APPROVED).model_copy(update={"host_id": "node-b"}))
    later = {"created_at": T0 + timedelta(seconds=30)}
    a = repo.add_action(make_record(state=S.AWAITING_APPROVAL).model_copy(update=later))
    b = repo.add_action(make_record(state=S.AWAITING_APPROVAL))  # created at T0
    c = repo.add_action(make_record(state=S.VERIFYING).model_copy(update=later))
    repo.add_action(make_record(state=S.DENIED))
    assert repo.in_states({S.APPROVED, S.AWAITING_APPROVAL, S.VERIFYING}) == [
        (a.id, S.AWAITING_APPROVAL, T0 + timedelta(seconds=30)),
        (b.id, S.AWAITING_APPROVAL, T0), (c.id, S.VERIFYING, T0 + timedelta(seconds=30))]


def test_history_and_changes_since_count_applied_changes(
    repo: Repository, clock: FakeClock
) -> None:
    rec = repo.add_action(make_record())
    other = repo.add_action(make_record(key="net.ipv4.tcp_max_syn_backlog"))
    assert rec.id is not None and other.id is not None
    repo.transition(rec.id, S.APPROVED, expect={S.PROPOSED})
    assert repo.changes_since(T0) == 0  # approved is not applied yet
    clock.advance(60)
    repo.transition(rec.id, S.APPLYING, expect={S.APPROVED})
    repo.transition(rec.id, S.VERIFYING, expect={S.APPLYING}, applied="4096")
    hist = repo.history(rec.action.target, T0)
    assert [(h.ts, h.state, h.value, h.action_id) for h in hist] == [
        (T0 + timedelta(seconds=60), S.VERIFYING, "4096", rec.id)
    ]
    assert repo.history(rec.action.target, T0 + timedelta(seconds=61)) == []
    assert repo.history(other.action.target, T0) == []
    assert repo.changes_since(T0) == 1


def test_two_repositories_on_one_file_see_each_others_writes(db_url: str, repo: Repository) -> None:
    cli = Repository(open_engine(db_url), HOST)  # like `healer approve` next to the daemon
    rec = repo.add_action(make_record(state=S.AWAITING_APPROVAL))
    assert rec.id is not None
    assert cli.get_action(rec.id) == rec
    repo.add_user("alice", "h", "approver")
    cli.add_approval(rec.id, "alice", True)
    cli.transition(rec.id, S.APPROVED, expect={S.AWAITING_APPROVAL}, actor="alice")
    assert repo.get_action(rec.id).state == S.APPROVED  # type: ignore[union-attr]
    assert [v.user for v in repo.list_approvals(rec.id)] == ["alice"]
    cli.engine.dispose()


def test_rows_of_other_hosts_stay_out_of_this_hosts_lists(engine: sa.Engine) -> None:
    a, b = Repository(engine, HOST), Repository(engine, "node-b")
    a.open_incident(make_incident())
    b.open_incident(make_incident().model_copy(update={"host_id": "node-b"}))
    assert [i.host_id for i in a.list_incidents()] == [HOST]
    assert [i.host_id for i in b.list_incidents()] == ["node-b"]


def test_concurrent_deciders_on_two_engines_produce_exactly_one_winner(
    db_url: str, engine: sa.Engine
) -> None:
    daemon = Repository(open_engine(db_url), HOST)
    cli = Repository(open_engine(db_url), HOST)
    rec = daemon.add_action(make_record(state=S.AWAITING_APPROVAL))
    assert rec.id is not None
    action_id = rec.id
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def decide(repo: Repository, to: ActionState) -> None:
        barrier.wait()
        try:
            repo.transition(action_id, to, expect={S.AWAITING_APPROVAL})
            outcomes.append(to.value)
        except StaleState:
            outcomes.append("stale")

    threads = [
        threading.Thread(target=decide, args=(daemon, S.EXPIRED)),
        threading.Thread(target=decide, args=(cli, S.APPROVED)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(outcomes)[-1] == "stale" and len(outcomes) == 2
    winner = next(o for o in outcomes if o != "stale")
    assert daemon.get_action(action_id).state == winner  # type: ignore[union-attr]
    daemon.engine.dispose()
    cli.engine.dispose()


def test_verification_round_trips_as_its_typed_model(repo: Repository) -> None:
    rec = repo.add_action(make_record(state=S.APPROVED))
    assert rec.id is not None
    repo.transition(rec.id, S.APPLYING, expect={S.APPROVED}, original="128", applied="4096")
    spec = VerifySpec(metric="net.tcp.listen_overflows_total", direction="to_zero")
    ver = Verification(
        spec=spec, in_playbook=True, applied_at=T0.timestamp(),
        baseline={spec.metric or "": Summary(n=5, median=12.0, mad=1.0, min=10.0, max=14.0)},
        result=VerifyResult(verdict="insufficient", reasons=("symptom continues",),
                            numbers={"target.after_max": 3.0}),
        step=Step(number=2, first=7, previous=7, allowed=4, plan=Converge(), ceiling=65535))
    got = repo.transition(rec.id, S.VERIFYING, expect={S.APPLYING}, verification=ver)
    assert got.verification == ver
    assert repo.get_action(rec.id) == got
    assert got.convergence == "convergence:7" and got.verdict == "insufficient"


def test_a_verification_row_in_the_old_untyped_format_still_parses(repo: Repository) -> None:
    rec = repo.add_action(make_record(state=S.APPROVED))
    assert rec.id is not None
    spec = {"metric": "vmstat.oom_kill_total", "direction": "to_zero", "rate": True,
            "window_seconds": 30.0, "settle_seconds": 2.0}
    old = {"spec": spec, "applied_at": 1772366400.5,
           "baseline": {"vmstat.oom_kill_total": {"n": 30.0, "median": 0.5, "mad": 0.1,
                                                  "min": 0.0, "max": 1.0}},
           "result": {"passed": False, "reasons": ["1 new kernel-log line(s)"],
                      "numbers": {"kmsg.new_matches": 1.0}},
           "rollback_reason": "crash recovery: not verified", "rollback_judged": False}
    with repo._tx() as s:  # written as the journal wrote it before the typed model
        s.execute(sa.update(ActionTable).where(ActionTable.c.id == rec.id)
                  .values(verification=old))
    got = repo.get_action(rec.id)
    assert got is not None and got.verification is not None
    ver = got.verification
    assert ver.in_playbook is False  # missing: the safe side, outside the playbook
    assert ver.spec is not None and ver.spec.rate and ver.spec.metric == "vmstat.oom_kill_total"
    assert ver.baseline["vmstat.oom_kill_total"].median == 0.5
    assert ver.result is not None and ver.result.verdict == "regressed"
    assert ver.result.numbers == {"kmsg.new_matches": 1.0}
    assert (ver.judged, ver.applied_at, ver.step) == (False, 1772366400.5, None)
    with repo._tx() as s:  # and a row as written by propose(): in_playbook given
        s.execute(sa.update(ActionTable).where(ActionTable.c.id == rec.id)
                  .values(verification={"spec": None, "in_playbook": True}))
    again = repo.get_action(rec.id)
    assert again is not None and again.verification == Verification(spec=None, in_playbook=True)


def test_on_report_is_called_once_after_a_commit_never_after_a_rollback(
        repo: Repository) -> None:
    calls: list[int] = []
    repo.set_fleet_reporting(True)
    repo.on_report = lambda: calls.append(repo.report_totals()[0])
    repo.open_incident(make_incident())
    assert calls == [1]  # called once the report was committed: the sender sees it
    with repo._tx() as s:  # two reports in one transaction: one call
        repo._report(s, "sample", "sample", {"n": 1})
        repo._report(s, "sample", "sample", {"n": 2})
        assert calls == [1]  # not before the commit
    assert calls == [1, 3]
    with pytest.raises(RuntimeError), repo._tx() as s:
        repo._report(s, "sample", "sample", {"n": 3})
        raise RuntimeError("rolled back")
    with repo._tx() as s:  # the same pooled connection: nothing of the rolled-back one
        s.execute(sa.select(1))
    assert calls == [1, 3] and repo.report_totals()[0] == 3
    repo.on_report = None
    repo.add_report("sample", "sample", {"n": 4})
    assert calls == [1, 3]


def test_a_restarted_agent_resolves_the_incidents_its_last_run_left_open(
        engine: sa.Engine) -> None:
    """The daemon's start (healer.daemon.build_daemon) hands the tracker what is open: an
    incident that never fires again resolves, one that does stays the same incident."""
    def fire(scope: str, ts: float) -> DetectEvent:
        return DetectEvent("fire", "soft-lockup", scope, "critical", Evidence(), 1, ts)

    before = Repository(engine, HOST)
    first = IncidentTracker(HOST, clock=lambda: 1.0, sink=before)
    first.apply([fire("host", 1.0), fire("gpu:0", 1.0)])  # then the agent stops

    now = [100.0]
    tracker = IncidentTracker(HOST, clock=lambda: now[0], clear_seconds=60,
                              sink=Repository(engine, HOST))
    tracker.resume(Repository(engine, HOST).iter_incidents(IncidentStatus.OPEN))
    [kept] = tracker.apply([fire("gpu:0", 100.0)])  # the first cycle: still there
    assert kept.kind == "updated" and kept.incident.scope == "gpu:0"
    now[0] = 159.0
    assert [c.kind for c in tracker.apply([fire("gpu:0", 159.0)])] == ["updated"]
    now[0] = 160.0
    [resolved] = tracker.apply([])
    assert resolved.kind == "resolved" and resolved.incident.scope == "host"
    assert {i.scope: i.status for i in before.list_incidents()} == {
        "host": IncidentStatus.RESOLVED, "gpu:0": IncidentStatus.OPEN}
