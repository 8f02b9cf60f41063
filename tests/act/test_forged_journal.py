"""Write access to the database is not root on the host: forged journal rows are never acted on.

Anyone who can write the database (a compromised web side, a stolen backup restored) could
insert an approved change, edit a row's ``original``, replay an older version of a row or
delete a write. The journal seal (healer.store.seal, healer.act.seal) catches each of them:
the row is reported and skipped. Behind the seal, every value written back still passes
the value grammar and the protected rules, even for a row a person adopted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from guardrails.actions import SysctlWrite
from healer.act.engine import ChangeEngine
from healer.act.persist import DropIn
from healer.act.seal import JournalSeal
from healer.errors import HealerError
from healer.models import ActionState, Proposal
from healer.store.repository import Repository
from healer.store.tables import ActionTable, JournalLogTable

from .conftest import Clock, Window, netns_sysctl
from .engine_kit import SPEC, Notes, feed, make_engine, somaxconn

S = ActionState
PIPE = "128\nkernel.core_pattern = |/tmp/pwn %p"


def _sql(repo: Repository, stmt: Any) -> None:
    with repo.engine.begin() as conn:  # what anyone with write access to the file could do
        conn.execute(stmt)


def _forge(repo: Repository, action_id: int, **values: object) -> None:
    _sql(repo, sa.update(ActionTable).where(ActionTable.c.id == action_id).values(**values))


def _row(repo: Repository, action_id: int) -> dict[str, Any]:
    with repo.engine.connect() as conn:
        return dict(conn.execute(sa.select(ActionTable).where(ActionTable.c.id == action_id))
                    .mappings().one())


def _applied(engine: ChangeEngine, netns: str, window: Window, clock: Clock) -> int:
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    engine.step()
    assert record.id is not None
    return record.id


def _escalations(notes: Notes) -> list[str]:
    return [m for e, _, m in notes.events if e == "escalation"]


def test_a_row_edited_in_the_database_is_never_acted_on(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    notes = Notes()
    engine = make_engine(repo, clock, window, tmp_path, notes)
    action_id = _applied(engine, netns, window, clock)
    _forge(repo, action_id, original=PIPE)
    with pytest.raises(HealerError, match="seal check"):
        engine.rollback(action_id)
    feed(window, clock, 40, overflow_rate=0, psi=1.0, start_total=1e6)
    engine.step()  # verifying, but not trusted: neither verified nor restored
    assert repo.get_action(action_id).state == S.VERIFYING  # type: ignore[union-attr]
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"
    assert len([m for m in _escalations(notes) if "seal check" in m]) == 1  # reported once
    assert any(a.event == "journal.untrusted" for a in repo.list_audit())


def test_a_row_inserted_in_the_database_is_never_applied(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    now = datetime.now(UTC)
    action = {"kind": "sysctl_write", "scope": f"netns:{netns}", "key": "net.core.somaxconn",
              "value": "1024"}
    _sql(repo, sa.insert(ActionTable).values(
        host_id=repo.host_id, kind="sysctl_write", target=f"sysctl_write:netns:{netns}:"
        "net.core.somaxconn", action=action, decision={"verdict": "allow"},
        provenance="playbook", state="approved", created_at=now, updated_at=now,
        verification={"in_playbook": True}, approvals_needed=0, rationale="forged"))
    engine.step()
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    [row] = repo.list_actions()
    assert row.state == S.APPROVED  # left as it was, reported


def test_an_older_version_of_a_row_replayed_is_refused(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    feed(window, clock, 10, overflow_rate=20, psi=1.0)
    record = engine.propose(None, somaxconn(netns, "512"), SPEC)
    assert record.id is not None
    approved = _row(repo, record.id)  # a sealed version, saved by whoever has the file
    engine.step()
    feed(window, clock, 40, overflow_rate=0, psi=1.0, start_total=1e6)
    engine.step()
    engine.rollback(record.id)
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    _forge(repo, record.id, **{k: v for k, v in approved.items() if k != "id"})
    engine.step()  # the replayed "approved" version would apply 512 again
    assert netns_sysctl(netns, "net.core.somaxconn") == "128"
    assert "older version" in (engine.seal.problem(repo.get_action(record.id))  # type: ignore[arg-type]
                               or "")


def test_a_deleted_journal_write_stops_the_engine_acting(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    action_id = _applied(engine, netns, window, clock)
    _sql(repo, sa.delete(JournalLogTable).where(JournalLogTable.c.seq == 1))
    assert "missing write" in (engine.seal.intact() or "")
    with pytest.raises(HealerError, match="seal check"):
        engine.rollback(action_id)
    _sql(repo, sa.delete(JournalLogTable))  # every write deleted: below the high-water mark
    assert "below the high-water mark" in (engine.seal.intact() or "")


def test_crash_recovery_never_restores_a_forged_row(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    action_id = _applied(engine, netns, window, clock)
    _forge(repo, action_id, original="|/bin/sh")
    assert make_engine(repo, clock, Window(), tmp_path).reconcile_on_start() == []
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"


def test_even_an_adopted_forged_original_fails_the_value_grammar(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    # A person ran `healer journal adopt` over a journal someone had tampered with: the seal
    # now holds, but the value to write back is still checked (defence in depth).
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path, Notes())
    action_id = _applied(engine, netns, window, clock)
    _forge(repo, action_id, original=PIPE)
    engine.seal.adopt("alice")
    assert engine.rollback(action_id).state == S.ROLLBACK_FAILED  # `healer rollback` exits 1
    assert netns_sysctl(netns, "net.core.somaxconn") == "512"  # nothing was written


def test_an_adopted_row_naming_a_protected_key_is_never_restored(
        netns: str, repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    netns_sysctl(netns, "net.core.somaxconn", "128")
    engine = make_engine(repo, clock, window, tmp_path)
    action_id = _applied(engine, netns, window, clock)
    # A protected key in the test's own namespace: should the guard ever regress, the write
    # lands in the scratch namespace, never on the host.
    forged = {"kind": "sysctl_write", "scope": f"netns:{netns}", "key": "net.ipv4.ip_forward",
              "value": "1"}
    before = netns_sysctl(netns, "net.ipv4.ip_forward")
    _forge(repo, action_id, action=forged, original="0" if before == "1" else "1")
    engine.seal.adopt("alice")
    assert engine.rollback(action_id).state == S.ROLLBACK_FAILED
    assert netns_sysctl(netns, "net.ipv4.ip_forward") == before


def test_persist_refuses_a_forged_applied_value(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    from .test_recovery import _host_engine

    proc, dropin = tmp_path / "proc", tmp_path / "sysctl.d" / "90-healer.conf"
    (proc / "sys/net/core").mkdir(parents=True)
    (proc / "sys/net/core/somaxconn").write_text("4096\n")
    engine = _host_engine(repo, clock, proc, dropin)
    record = engine.propose(None, Proposal(action=SysctlWrite(key="net.core.somaxconn",
                                                              value="8192"),
                                           provenance="playbook", in_playbook=True), None)
    engine.step()
    clock.advance(3)
    assert engine.step()[0].state == S.VERIFIED
    assert record.id is not None
    _forge(repo, record.id, applied=PIPE)
    with pytest.raises(HealerError, match="seal check"):
        engine.persist(record.id)
    engine.seal.adopt("alice")
    with pytest.raises(HealerError, match="refused"):
        engine.persist(record.id)
    assert not dropin.exists()


def test_rows_from_before_the_seal_are_sealed_once_at_the_first_start(
        repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    old = make_engine(repo, clock, window, tmp_path / "before", seal=None)  # a pre-seal journal
    old.repo.sealer = None
    record = old.propose(None, somaxconn("n1", "512"), SPEC)
    assert record.id is not None and _row(repo, record.id)["mac"] is None
    seal = JournalSeal.open(repo, tmp_path / "agent")  # the first start with a key
    assert seal.problem(repo.get_action(record.id)) is None  # type: ignore[arg-type]
    assert [a.detail for a in repo.list_audit() if a.event == "journal.sealed"] == [{"rows": 1}]
    JournalSeal.open(repo, tmp_path / "agent")  # and only once
    assert len([a for a in repo.list_audit() if a.event == "journal.sealed"]) == 1


def test_a_lost_key_leaves_rows_untrusted_until_a_person_adopts_them(
        repo: Repository, clock: Clock, window: Window, tmp_path: Path) -> None:
    engine = make_engine(repo, clock, window, tmp_path)
    record = engine.propose(None, somaxconn("n1", "512"), SPEC)
    (tmp_path / "agent" / "journal.key").unlink()  # a restored backup without the key
    seal = JournalSeal.open(repo, tmp_path / "agent")
    assert "does not match" in (seal.problem(repo.get_action(record.id or 0))  # type: ignore[arg-type]
                                or "")
    assert any(a.event == "journal.key_lost" for a in repo.list_audit())
    assert seal.adopt("alice") == 1
    assert seal.problem(repo.get_action(record.id or 0)) is None  # type: ignore[arg-type]


def test_the_dropin_file_never_takes_a_second_line_from_one_value(tmp_path: Path) -> None:
    dropin = DropIn(tmp_path / "90-healer.conf")
    with pytest.raises(ValueError):
        dropin.add(1, "net.core.somaxconn", PIPE, datetime.now(UTC))
    with pytest.raises(ValueError):
        dropin.add(1, "net.core.somaxconn\nkernel.core_pattern", "1", datetime.now(UTC))
    assert not (tmp_path / "90-healer.conf").exists()
