"""Startup reconcile, operator rollback and persist, on a real netns sysctl."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrails import load_policy
from guardrails.actions import SysctlWrite
from healer.act.base import ActuatorRegistry
from healer.act.engine import ChangeEngine
from healer.act.persist import DropIn
from healer.act.sysctl import SysctlActuator
from healer.errors import HealerError
from healer.models import ActionState, Proposal
from healer.store.repository import Repository

from .conftest import Clock, Window, netns_sysctl
from .engine_kit import SPEC, feed, make_engine, somaxconn

S = ActionState


def _applied(engine: ChangeEngine, netns: str, window: Window, clock: Clock, value: str) -> int:
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, value), SPEC)
    engine.step()
    assert record.id is not None
    return record.id


def test_reconcile_restores_an_interrupted_apply_and_is_idempotent(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.id is not None
    # The crash: intent committed, kernel written, no read-back recorded.
    repo.transition(record.id, S.APPLYING, expect=[S.APPROVED], original="128")
    netns_sysctl(netns, "net.core.somaxconn", "512")
    restarted = make_engine(repo, clock, Window(), tmp_path)
    [done] = restarted.reconcile_on_start()
    assert done.state == S.ROLLED_BACK and netns_sysctl(netns, "net.core.somaxconn") == "128"
    assert restarted.reconcile_on_start() == []


def test_reconcile_rolls_back_a_change_left_verifying_even_inside_its_deadline(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    action_id = _applied(engine, netns, window, clock, "512")
    [done] = make_engine(repo, clock, Window(), tmp_path).reconcile_on_start()
    assert done.id == action_id and done.state == S.ROLLED_BACK
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    assert make_engine(repo, clock, Window(), tmp_path).reconcile_on_start() == []


def test_value_found_back_at_original_finishes_as_rolled_back_not_drift(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    _applied(engine, netns, window, clock, "512")
    netns_sysctl(netns, "net.core.somaxconn", "128")  # a restore that crashed before its commit
    [done] = engine.step()
    assert done.state == S.ROLLED_BACK and repo.paused_targets() == set()


def test_operator_rollback_restores_verified_changes_newest_first(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    first = _applied(engine, netns, window, clock, "512")
    feed(window, clock, 8, overflow_rate=0, psi=1.0, start_total=1e6)
    engine.step()
    clock.advance(400)
    second = _applied(engine, netns, window, clock, "1024")
    with pytest.raises(HealerError, match="roll that back first"):
        engine.rollback(first)
    done = engine.rollback_all()
    assert [r.id for r in done] == [second, first]
    assert all(r.state == S.ROLLED_BACK for r in done)
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    with pytest.raises(HealerError, match="nothing to roll back"):
        engine.rollback(first)


def test_rollback_of_a_verified_change_an_admin_since_changed_stands_down(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    action_id = _applied(engine, netns, window, clock, "512")
    feed(window, clock, 8, overflow_rate=0, psi=1.0, start_total=1e6)
    assert engine.step()[0].state == S.VERIFIED
    netns_sysctl(netns, "net.core.somaxconn", "3000")
    assert engine.rollback(action_id).state == S.SUPERSEDED
    assert netns_sysctl(netns, "net.core.somaxconn") == "3000"


def _host_engine(repo: Repository, clock: Clock, proc: Path, dropin: Path) -> ChangeEngine:
    return ChangeEngine(repo, ActuatorRegistry([SysctlActuator(procfs_root=proc)]),
                        load_policy(), window=Window(), clock=clock,
                        root=True, dropin=DropIn(dropin))


def test_persist_writes_one_dropin_line_and_rollback_removes_it(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    proc, dropin = tmp_path / "proc", tmp_path / "sysctl.d" / "90-healer.conf"
    (proc / "sys/net/core").mkdir(parents=True)
    (proc / "sys/net/core/somaxconn").write_text("4096\n")
    engine = _host_engine(repo, clock, proc, dropin)
    proposal = Proposal(action=SysctlWrite(key="net.core.somaxconn", value="8192"),
                        provenance="playbook", in_playbook=True)
    record = engine.propose(None, proposal, None)
    assert record.id is not None
    with pytest.raises(HealerError, match="not verified"):
        engine.persist(record.id)
    engine.step()
    clock.advance(3)
    assert engine.step()[0].state == S.VERIFIED
    engine.persist(record.id, actor="alice")
    assert "net.core.somaxconn = 8192" in dropin.read_text()
    audit = repo.list_audit(subject=f"action:{record.id}")
    assert any(a.event == "action.persisted" and a.actor == "alice" for a in audit)
    engine.rollback(record.id)
    assert "somaxconn" not in dropin.read_text()
    assert (proc / "sys/net/core/somaxconn").read_text().strip() == "4096"


def test_only_host_sysctls_persist(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    engine = make_engine(repo, clock, window, tmp_path)
    action_id = _applied(engine, netns, window, clock, "512")
    with pytest.raises(HealerError, match="host-scope sysctls"):
        engine.persist(action_id)
