"""A journal row someone forged in the database is never written to the kernel.

Rollback, crash recovery and ``healer rollback`` write ``record.original`` back, and
``healer persist`` writes ``record.applied`` into /etc/sysctl.d. Both come from the
database, so both pass the value grammar and the protected rules first (issue: hardening,
finding 2); a refused row ends ``rollback_failed`` with an escalation, and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from guardrails.actions import SysctlWrite
from healer.act.persist import DropIn
from healer.errors import HealerError
from healer.models import ActionState, Proposal
from healer.store.repository import Repository
from healer.store.tables import ActionTable

from .conftest import Clock, Window, netns_sysctl
from .engine_kit import SPEC, Notes, feed, make_engine, somaxconn

S = ActionState
PIPE = "128\nkernel.core_pattern = |/tmp/pwn %p"


def _forge(repo: Repository, action_id: int, **values: object) -> None:
    with repo.engine.begin() as conn:  # what anyone with write access to the file could do
        conn.execute(sa.update(ActionTable).where(ActionTable.id == action_id).values(**values))


def test_rollback_refuses_a_forged_original_and_reports_it(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes)
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    engine.step()
    assert record.id is not None
    _forge(repo, record.id, original=PIPE)
    assert engine.rollback(record.id).state == S.ROLLBACK_FAILED  # `healer rollback` exits 1
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"  # nothing was written
    assert any(e == "escalation" and "restore refused" in m for e, _, m in notes.events)


def test_crash_recovery_refuses_a_forged_original(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    engine.step()
    assert record.id is not None
    _forge(repo, record.id, original="|/bin/sh")
    [done] = make_engine(repo, clock, Window(), tmp_path).reconcile_on_start()
    assert done.state == S.ROLLBACK_FAILED
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"


def test_a_forged_protected_key_is_never_restored(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    engine.step()
    assert record.id is not None
    # A protected key in the test's own namespace: should the guard ever regress, the write
    # lands in the scratch namespace, never on the host.
    forged = {"kind": "sysctl_write", "scope": f"netns:{netns}", "key": "net.ipv4.ip_forward",
              "value": "1"}
    before = netns_sysctl(netns, "net.ipv4.ip_forward")
    _forge(repo, record.id, action=forged, original="0" if before == "1" else "1")
    assert engine.rollback(record.id).state == S.ROLLBACK_FAILED
    assert netns_sysctl(netns, "net.ipv4.ip_forward") == before


def test_persist_refuses_a_forged_applied_value(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    proc, dropin = tmp_path / "proc", tmp_path / "sysctl.d" / "90-healer.conf"
    (proc / "sys/net/core").mkdir(parents=True)
    (proc / "sys/net/core/somaxconn").write_text("4096\n")
    from .test_recovery import _host_engine

    engine = _host_engine(repo, clock, proc, dropin)
    record = engine.propose(None, Proposal(action=SysctlWrite(key="net.core.somaxconn",
                                                              value="8192"),
                                           provenance="playbook", in_playbook=True), None)
    engine.step()
    clock.advance(3)
    assert engine.step()[0].state == S.VERIFIED
    assert record.id is not None
    _forge(repo, record.id, applied=PIPE)
    with pytest.raises(HealerError, match="refused"):
        engine.persist(record.id)
    assert not dropin.exists()


def test_the_dropin_file_never_takes_a_second_line_from_one_value(tmp_path: Path) -> None:
    dropin = DropIn(tmp_path / "90-healer.conf")
    from datetime import UTC, datetime

    with pytest.raises(ValueError):
        dropin.add(1, "net.core.somaxconn", PIPE, datetime.now(UTC))
    with pytest.raises(ValueError):
        dropin.add(1, "net.core.somaxconn\nkernel.core_pattern", "1", datetime.now(UTC))
    assert not (tmp_path / "90-healer.conf").exists()
