"""``incident_activity`` (re-diagnosis probe) and the ``judged`` flag ``history`` carries."""

from __future__ import annotations

from datetime import timedelta

from healer.models import ActionState, Step, Verification, VerifyResult
from healer.store.repository import Repository
from playbooks.schema import Converge

from .conftest import T0, FakeClock, make_incident, make_record

S = ActionState
OPEN = (S.PROPOSED, S.AWAITING_APPROVAL, S.APPROVED, S.APPLYING, S.VERIFYING)


def applied(repo: Repository, incident_id: int | None, value: str = "4096") -> int:
    """A record walked to verifying (applied_at set); returns its id."""
    rec = repo.add_action(make_record(value=value, incident_id=incident_id,
                                      state=S.APPROVED))
    assert rec.id is not None
    repo.transition(rec.id, S.APPLYING, expect=[S.APPROVED], original="128")
    repo.transition(rec.id, S.VERIFYING, expect=[S.APPLYING], applied=value)
    return rec.id


def test_an_incident_without_records_has_no_activity(repo: Repository) -> None:
    inc = repo.open_incident(make_incident())
    assert inc.id is not None
    got = repo.incident_activity(inc.id, OPEN)
    assert (got.live, got.last_state, got.last_change) == (False, None, None)


def test_live_record_and_the_last_change(repo: Repository, clock: FakeClock) -> None:
    inc, other = repo.open_incident(make_incident()), repo.open_incident(make_incident())
    assert inc.id is not None and other.id is not None
    first = applied(repo, inc.id)
    clock.advance(30)
    got = repo.incident_activity(inc.id, OPEN)
    assert got.live and got.last_state == S.VERIFYING and got.last_change == T0
    clock.advance(30)
    repo.transition(first, S.ROLLED_BACK, expect=[S.VERIFYING])
    got = repo.incident_activity(inc.id, OPEN)
    assert not got.live and got.last_state == S.ROLLED_BACK
    assert got.last_change == T0 + timedelta(seconds=60)
    assert got.last_change.utcoffset() == timedelta(0)
    assert not repo.incident_activity(other.id, OPEN).live  # another incident's record


def test_an_older_live_record_keeps_the_incident_live(repo: Repository,
                                                     clock: FakeClock) -> None:
    inc = repo.open_incident(make_incident())
    assert inc.id is not None
    applied(repo, inc.id, "4096")
    clock.advance(10)
    newer = repo.add_action(make_record(key="net.ipv4.tcp_max_syn_backlog",
                                        incident_id=inc.id))
    assert newer.id is not None
    clock.advance(10)
    repo.transition(newer.id, S.DENIED, expect=[S.PROPOSED])
    got = repo.incident_activity(inc.id, OPEN)
    assert got.live and got.last_state == S.DENIED
    assert got.last_change == T0 + timedelta(seconds=20)


def test_a_live_record_behind_a_hundred_newer_ones_still_counts(repo: Repository,
                                                                 clock: FakeClock) -> None:
    inc = repo.open_incident(make_incident())
    assert inc.id is not None
    applied(repo, inc.id, "4096")  # verifying: live
    for _ in range(150):  # denied proposals of the same incident, all newer
        clock.advance(1)
        rec = repo.add_action(make_record(key="net.ipv4.tcp_max_syn_backlog",
                                          incident_id=inc.id))
        assert rec.id is not None
        repo.transition(rec.id, S.DENIED, expect=[S.PROPOSED])
    got = repo.incident_activity(inc.id, OPEN)
    assert got.live and got.last_state == S.DENIED
    assert got.last_change == T0 + timedelta(seconds=150)


def test_history_marks_crash_recovery_restores_unjudged(repo: Repository) -> None:
    regression, crash = applied(repo, None, "4096"), applied(repo, None, "8192")
    base = Verification(spec=None, in_playbook=True)
    repo.transition(regression, S.ROLLED_BACK, expect=[S.VERIFYING],
                    verification=base.model_copy(update={"rollback_reason": "regression"}))
    repo.transition(crash, S.ROLLED_BACK, expect=[S.VERIFYING],
                    verification=base.model_copy(update={
                        "rollback_reason": "crash recovery: not verified", "judged": False}))
    history = repo.history("sysctl_write:netns:t1:net.core.somaxconn", T0 - timedelta(hours=1))
    assert [(h.value, h.judged) for h in history] == [("4096", True), ("8192", False)]


def test_history_names_the_convergence_only_of_kept_insufficient_steps(
        repo: Repository) -> None:
    plan = Step(number=1, allowed=4, plan=Converge())
    short = VerifyResult(verdict="insufficient")
    kept, fixed, undone = (applied(repo, None, v) for v in ("4096", "8192", "16384"))
    ver = Verification(spec=None, in_playbook=True, step=plan, result=short)
    repo.transition(kept, S.VERIFIED, expect=[S.VERIFYING], verification=ver)
    repo.transition(fixed, S.VERIFIED, expect=[S.VERIFYING], verification=ver.model_copy(
        update={"result": VerifyResult(verdict="fixed")}))
    repo.transition(undone, S.VERIFIED, expect=[S.VERIFYING], verification=ver)
    repo.transition(undone, S.ROLLED_BACK, expect=[S.VERIFIED])
    history = repo.history("sysctl_write:netns:t1:net.core.somaxconn", T0 - timedelta(hours=1))
    assert [(h.value, h.convergence) for h in history] == [
        ("4096", f"convergence:{kept}"), ("8192", None), ("16384", None)]
