"""Re-diagnosis of a still-firing incident after its change was rolled back.

The pipeline runs real cycles over a real journal (SQLite under tmp_path), the real change
engine, guard and verifier; only the world is faked: a scripted monitor/detector and an
in-memory sysctl. "A crash" is a second engine and pipeline on the same journal, started
the way the daemon starts (``reconcile_on_start``).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from guardrails import load_policy
from guardrails.actions import Action, SysctlWrite
from guardrails.decision import Decision
from healer.act.base import ActuatorRegistry, require_allow, require_original
from healer.act.engine import ChangeEngine
from healer.act.persist import DropIn
from healer.act.seal import JournalSeal
from healer.detect import IncidentTracker
from healer.detect.detector import DetectEvent
from healer.diagnose.schedule import rediagnosis_due
from healer.models import ActionRecord, ActionState, Diagnosis, Evidence, Incident, Proposal, Sample
from healer.pipeline import Pipeline
from healer.store.repository import Repository
from healer.store.rows import IncidentActivity
from healer.telemetry import Telemetry
from healer.window import MetricWindow

from .conftest import Clock
from .engine_kit import OVERFLOWS, PSI, SPEC

S = ActionState
PLAYBOOK, SCOPE = "listen-backlog-too-small", "netns:t1"
TARGET = "sysctl_write:netns:t1:net.core.somaxconn"
INTERVAL = 300.0


class World:
    """The host: a listen queue that keeps overflowing, a PSI guard, one sysctl."""

    kinds: tuple[str, ...] = ("sysctl_write",)

    def __init__(self, clock: Clock) -> None:
        self.clock, self.somaxconn = clock, "128"
        self.overflows, self.rate, self.psi, self.firing = 0.0, 5.0, 10.0, False

    # monitor + detector
    def sample(self) -> Sample:
        self.overflows += self.rate  # the fault persists until a test says otherwise
        return Sample(ts=self.clock.now.timestamp(), metrics={OVERFLOWS: self.overflows,
                                                              PSI: self.psi})

    def observe(self, _window: Any, sample: Sample) -> list[DetectEvent]:
        if not self.firing:
            return []
        return [DetectEvent("fire", PLAYBOOK, SCOPE, "warning", Evidence(), 1, sample.ts)]

    # the sysctl actuator
    def read(self, action: Action) -> str | None:
        return self.somaxconn

    def in_action_units(self, action: Action, value: str) -> str:
        return value

    def facts(self, action: Action) -> dict[str, float]:
        return {}

    def apply(self, action: Action, decision: Decision) -> str:
        require_allow(action, decision)
        assert isinstance(action, SysctlWrite)
        self.somaxconn = action.value
        return self.somaxconn

    def restore(self, record: ActionRecord) -> str:
        self.somaxconn = require_original(record)
        return self.somaxconn


class Doctor:
    """Always the playbook's answer: somaxconn to 4096. Counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def diagnose(self, incident: Incident, ctx: Any) -> Diagnosis:
        self.calls += 1
        action = SysctlWrite(scope=SCOPE, key="net.core.somaxconn", value="4096")
        return Diagnosis(root_cause=PLAYBOOK, source="playbook", confidence=0.9,
                         proposals=(Proposal(action=action, provenance="playbook", in_playbook=True,
                                             rationale="listen overflows"),))


class Quiet:
    def incident(self, kind: str, incident: Incident) -> int:
        return 0

    def action(self, event: str, record: ActionRecord, *, detail: str = "",
               severity: str | None = None) -> int:
        return 0

    def escalation(self, subject: str, message: str, *, incident_id: int | None = None,
                   action_id: int | None = None) -> int:
        return 0


class Library:
    def get(self, playbook: str) -> Any:
        return SPEC  # the engine accepts a VerifySpec where a playbook goes


class InlinePool(ThreadPoolExecutor):
    """Diagnoses on the cycle thread, so a test sees the result in the same cycle."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def start(repo: Repository, clock: Clock, world: World, doctor: Doctor,
          tmp: Path) -> Pipeline:
    """What ``build_daemon`` + ``Daemon.start`` do, with the fakes."""
    window = MetricWindow(3600, 1.0)
    engine = ChangeEngine(repo, ActuatorRegistry([world]), load_policy(), window=window,
                          clock=clock, notifier=Quiet(), dropin=DropIn(tmp / "90-healer.conf"),
                          root=True, seal=JournalSeal.open(repo, tmp / "agent"))
    engine.reconcile_on_start()
    tracker = IncidentTracker(repo.host_id, clock=lambda: clock.now.timestamp(), sink=repo)
    return Pipeline(monitor=world, window=window, detector=world,  # type: ignore[arg-type]
                    tracker=tracker, diagnoser=doctor, context_for=lambda _i: None,  # type: ignore[arg-type,return-value]
                    engine=engine, notifier=Quiet(), repo=repo,  # type: ignore[arg-type]
                    library=Library(), telemetry=Telemetry(),  # type: ignore[arg-type]
                    pool=InlinePool(), rediagnose_seconds=INTERVAL)


def run(p: Pipeline, clock: Clock, seconds: int, step: int = 1) -> None:
    for _ in range(0, seconds, step):
        clock.advance(step)
        p.cycle()


def records(repo: Repository) -> list[ActionRecord]:
    return list(reversed(repo.list_actions(limit=100)))  # oldest first


def first_change(repo: Repository, clock: Clock, world: World, doctor: Doctor,
                 tmp: Path) -> Pipeline:
    """A baseline, then the fault: one diagnosis, somaxconn 4096 applied and verifying."""
    p = start(repo, clock, world, doctor, tmp)
    run(p, clock, 30)
    world.firing = True
    run(p, clock, 1)
    assert doctor.calls == 1
    assert [r.state for r in records(repo)] == [S.VERIFYING]
    assert world.somaxconn == "4096"
    return p


def test_after_a_crash_recovery_restore_the_same_change_is_proposed_again(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    world, doctor = World(clock), Doctor()
    first_change(repo, clock, world, doctor, tmp_path)

    # SIGKILL while verifying; the restarted daemon restores the unconfirmed change.
    p = start(repo, clock, world, doctor, tmp_path)
    assert world.somaxconn == "128"
    restored = records(repo)[0]
    assert restored.state == S.ROLLED_BACK
    assert restored.verification is not None and restored.verification.judged is False

    run(p, clock, 290, step=10)  # the fault persists: updated every cycle, within the interval
    assert doctor.calls == 1 and len(records(repo)) == 1
    run(p, clock, 20, step=10)  # past the interval: diagnosed again, proposed again, applied
    assert doctor.calls == 2
    again = records(repo)[1]
    assert again.action.target == TARGET and again.decision.verdict == "allow"
    assert again.state == S.VERIFYING and world.somaxconn == "4096"
    world.rate = 0.0  # this time the change helps: the queue stops overflowing
    run(p, clock, 30)
    assert records(repo)[1].state == S.VERIFIED
    run(p, clock, 600, step=10)  # kept, the incident still updating: no more diagnoses
    assert doctor.calls == 2


def test_after_a_regression_rollback_the_same_value_is_denied(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    world, doctor = World(clock), Doctor()
    p = first_change(repo, clock, world, doctor, tmp_path)

    world.psi = 50.0  # the guard metric regresses after the change
    run(p, clock, 5)
    rolled = records(repo)[0]
    assert rolled.state == S.ROLLED_BACK and world.somaxconn == "128"
    assert rolled.verification is not None
    assert "regression" in str(rolled.verification.rollback_reason)

    run(p, clock, 300, step=10)  # the fault persists; the interval passes after the rollback
    assert doctor.calls == 2
    denied = records(repo)[1]
    assert denied.state == S.DENIED and "R-repeat-rollback" in denied.decision.rules
    assert "R-cooldown" not in denied.decision.rules  # the interval outlasted the cooldown
    assert world.somaxconn == "128"
    run(p, clock, 1200, step=10)  # the guard answered: not asked again every interval
    assert doctor.calls == 2 and len(records(repo)) == 2


def test_a_storm_of_updates_costs_one_diagnosis(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    world, doctor = World(clock), Doctor()
    p = first_change(repo, clock, world, doctor, tmp_path)
    world.rate = 0.0  # the change works; the kernel-log storm goes on
    run(p, clock, 600)  # 600 updates while the change verifies, then is kept
    assert doctor.calls == 1
    assert records(repo)[0].state == S.VERIFIED


# -- the decision itself ----------------------------------------------------------------------
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NONE = IncidentActivity(live=False, last_state=None, last_change=None)


def act(state: S | None, ago: float | None, live: bool = False) -> IncidentActivity:
    when = None if ago is None else T0 - timedelta(seconds=ago)
    return IncidentActivity(live=live, last_state=state, last_change=when)


def due(last_diag_ago: float | None, activity: IncidentActivity, diagnosed: bool = True) -> bool:
    last = None if last_diag_ago is None else T0 - timedelta(seconds=last_diag_ago)
    return rediagnosis_due(T0, INTERVAL, diagnosed=diagnosed, last_diagnosis=last,
                           activity=activity)


def test_rolled_back_long_enough_ago_is_due() -> None:
    assert due(900, act(S.ROLLED_BACK, 300))
    assert due(None, act(S.ROLLED_BACK, 301))  # diagnosed before this process started


def test_not_due_within_the_interval_of_the_diagnosis_or_the_rollback() -> None:
    assert not due(299, act(S.ROLLED_BACK, 900))
    assert not due(900, act(S.ROLLED_BACK, 299))


def test_not_due_while_a_change_is_live() -> None:
    assert not due(900, act(S.ROLLED_BACK, 900, live=True))
    assert not due(None, act(None, None, live=True), diagnosed=False)


def test_answered_outcomes_are_not_asked_again() -> None:
    for state in (S.DENIED, S.REJECTED, S.EXPIRED, S.SUPERSEDED, S.ROLLBACK_FAILED,
                  S.VERIFIED):
        assert not due(900, act(state, 900)), state
    assert not due(900, NONE)  # diagnosed, nothing proposed: the answer stands


def test_an_incident_without_a_diagnosis_is_due_after_the_interval() -> None:
    assert due(None, NONE, diagnosed=False)  # never diagnosed (lost in a restart)
    assert due(300, NONE, diagnosed=False)  # the last attempt failed
    assert not due(10, NONE, diagnosed=False)
