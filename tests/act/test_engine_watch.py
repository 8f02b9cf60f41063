"""ChangeEngine.watched_pids: the pids the process scan must keep for verification."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from guardrails.actions import Action, CgroupLimit, Notify, ProcessNice, ProcessRlimit
from guardrails.decision import Decision
from healer.models import ActionRecord, ActionState, Incident, IncidentStatus
from healer.store.repository import Repository

from .conftest import Clock, Window
from .engine_kit import make_engine

S = ActionState


def _record(action: Action, state: ActionState) -> ActionRecord:
    now = datetime.now(UTC)
    return ActionRecord(host_id="test-host", action=action, state=state,
                        decision=Decision(verdict="allow"), created_at=now, updated_at=now)


def _incident(scope: str, status: IncidentStatus = IncidentStatus.OPEN) -> Incident:
    now = datetime.now(UTC)
    return Incident(host_id="test-host", playbook="fd-limit-too-low", scope=scope,
                    first_seen=now, last_seen=now, status=status)


def test_open_incident_pids_and_in_flight_action_pids_are_watched(
        repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    engine = make_engine(repo, clock, window, tmp_path)
    assert engine.watched_pids() == set()
    repo.open_incident(_incident("pid:4242"))
    repo.open_incident(_incident("pid:77", IncidentStatus.RESOLVED))  # over: not watched
    repo.open_incident(_incident("cgroup:/healer-chaos-1/fork"))  # not a process
    repo.add_action(_record(ProcessRlimit(scope="pid:5001", pid=5001, resource="nofile",
                                          soft=1024), S.VERIFYING))
    repo.add_action(_record(ProcessNice(scope="pid:5002", pid=5002, nice=5), S.APPROVED))
    repo.add_action(_record(Notify(scope="pid:5003", message="fd limit"), S.PROPOSED))
    repo.add_action(_record(ProcessRlimit(scope="pid:6001", pid=6001, resource="nofile",
                                          soft=1024), S.VERIFIED))  # judged: no longer needed
    repo.add_action(_record(CgroupLimit(scope="cgroup:/a", path="/a", knob="pids.max",
                                        value="64"), S.VERIFYING))
    assert engine.watched_pids() == {4242, 5001, 5002, 5003}
