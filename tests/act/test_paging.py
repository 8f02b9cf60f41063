"""The change path reads the whole journal, never the newest thousand: crash recovery,
``rollback --all``, expiry, drift checks, the open-target check and the process scan's
pids each handle more than 1,000 records.

A real SQLite journal and the real engine, guard and executor; the host is a dict of
sysctl values, one per network namespace, so 1,050 changes cost no kernel writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from guardrails import load_policy
from guardrails.actions import Action, ProcessNice, SysctlWrite
from guardrails.decision import Decision
from healer.act.base import ActuatorRegistry, require_allow, require_original
from healer.act.engine import ChangeEngine
from healer.act.persist import DropIn
from healer.act.seal import JournalSeal
from healer.models import ActionRecord, ActionState, Incident, Proposal
from healer.store.repository import Repository

from .conftest import Clock, Window

S = ActionState
MANY = 1050  # past the old limit=1000


class Sysctls:
    """``net.core.somaxconn`` in many namespaces, in memory."""

    kinds: tuple[str, ...] = ("sysctl_write",)

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def read(self, action: Action) -> str | None:
        return self.values.get(action.scope, "128")

    def in_action_units(self, action: Action, value: str) -> str:
        return value

    def facts(self, action: Action) -> dict[str, float]:
        return {}

    def apply(self, action: Action, decision: Decision) -> str:
        require_allow(action, decision)
        assert isinstance(action, SysctlWrite)
        self.values[action.scope] = action.value
        return action.value

    def restore(self, record: ActionRecord) -> str:
        self.values[record.action.scope] = require_original(record)
        return self.values[record.action.scope]


def _engine(repo: Repository, clock: Clock, host: Sysctls, tmp: Path) -> ChangeEngine:
    # The journal the test wrote is the agent's own: its first start with a key seals it.
    return ChangeEngine(repo, ActuatorRegistry([host]), load_policy(), window=Window(),
                        clock=clock, dropin=DropIn(tmp / "90-healer.conf"), root=True,
                        seal=JournalSeal.open(repo, tmp / "agent"))


def _fill(repo: Repository, clock: Clock, state: ActionState, n: int = MANY,
          created: datetime | None = None, first: int = 0) -> list[int]:
    """``n`` records in ``state``, one per namespace, as the journal would hold them."""
    ids = []
    at = created or clock()
    for i in range(first, first + n):
        action = SysctlWrite(scope=f"netns:t{i}", key="net.core.somaxconn", value="4096")
        record = repo.add_action(ActionRecord(
            host_id=repo.host_id, action=action, decision=Decision(verdict="allow"),
            provenance="playbook", state=state, original="128", applied="4096",
            created_at=at, updated_at=at))
        assert record.id is not None
        ids.append(record.id)
    return ids


def _states(repo: Repository) -> set[ActionState]:
    return {r.state for r in repo.iter_actions()}


def test_crash_recovery_restores_every_unverified_change(repo: Repository, clock: Clock,
                                                          tmp_path: Path) -> None:
    host = Sysctls()
    ids = _fill(repo, clock, S.VERIFYING)
    host.values = {f"netns:t{i}": "4096" for i in range(MANY)}
    restored = _engine(repo, clock, host, tmp_path).reconcile_on_start()
    assert sorted(r.id for r in restored if r.state == S.ROLLED_BACK) == ids
    assert set(host.values.values()) == {"128"} and _states(repo) == {S.ROLLED_BACK}


def test_rollback_all_rolls_back_every_change_in_place(repo: Repository, clock: Clock,
                                                       tmp_path: Path) -> None:
    host = Sysctls()
    _fill(repo, clock, S.VERIFIED)
    host.values = {f"netns:t{i}": "4096" for i in range(MANY)}
    done = _engine(repo, clock, host, tmp_path).rollback_all()
    assert len(done) == MANY and _states(repo) == {S.ROLLED_BACK}
    assert set(host.values.values()) == {"128"}


def test_every_stale_request_expires(repo: Repository, clock: Clock, tmp_path: Path) -> None:
    engine = _engine(repo, clock, Sysctls(), tmp_path)
    _fill(repo, clock, S.AWAITING_APPROVAL, created=clock() - timedelta(days=2))
    fresh = _fill(repo, clock, S.AWAITING_APPROVAL, n=3)
    expired = engine.step()
    assert len(expired) == MANY and {r.state for r in expired} == {S.EXPIRED}
    assert [r.id for r in repo.iter_actions(states=(S.AWAITING_APPROVAL,))] == fresh[::-1]


def test_the_drift_check_reads_every_kept_change(repo: Repository, clock: Clock,
                                                 tmp_path: Path) -> None:
    host = Sysctls()
    _fill(repo, clock, S.VERIFIED)
    host.values = {f"netns:t{i}": "4096" for i in range(MANY)}
    host.values["netns:t0"] = "9000"  # the oldest record: past the newest thousand
    [superseded] = _engine(repo, clock, host, tmp_path).check_drift()
    assert superseded.action.scope == "netns:t0" and superseded.state == S.SUPERSEDED
    assert repo.paused_targets() == {superseded.action.target}


def test_an_open_change_past_the_newest_thousand_still_blocks_a_second_one(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    [oldest] = _fill(repo, clock, S.VERIFYING, n=1, first=MANY)
    _fill(repo, clock, S.AWAITING_APPROVAL)  # open too: other targets, all newer
    action = SysctlWrite(scope=f"netns:t{MANY}", key="net.core.somaxconn", value="8192")
    engine = _engine(repo, clock, Sysctls(), tmp_path)
    got = engine.propose(None, Proposal(action=action, provenance="playbook", in_playbook=True))
    assert got.id == oldest


def test_watched_pids_holds_every_open_incident_and_action(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    now = clock()
    for pid in range(2, 2 + MANY):
        repo.open_incident(Incident(host_id=repo.host_id, playbook="fd-limit-too-low",
                                    scope=f"pid:{pid}", first_seen=now, last_seen=now))
    for pid in range(5000, 5000 + MANY):
        repo.add_action(ActionRecord(
            host_id=repo.host_id, action=ProcessNice(scope=f"pid:{pid}", pid=pid, nice=5),
            decision=Decision(verdict="allow"), provenance="playbook", state=S.APPROVED,
            created_at=now, updated_at=now))
    pids = _engine(repo, clock, Sysctls(), tmp_path).watched_pids()
    assert pids == set(range(2, 2 + MANY)) | set(range(5000, 5000 + MANY))
