"""The sysctl drop-in file: healer's own lines only, one per key, removed on rollback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from healer.act.persist import DropIn

AT = datetime(2025, 1, 1, tzinfo=UTC)


def test_persist_writes_key_value_lines_and_rollback_removes_only_its_own(tmp_path: Path) -> None:
    path = tmp_path / "sysctl.d" / "90-healer.conf"
    other = tmp_path / "sysctl.d" / "10-admin.conf"
    path.parent.mkdir()
    other.write_text("net.core.somaxconn = 128\n")
    dropin = DropIn(path)
    dropin.add(7, "net.core.somaxconn", "4096", AT)
    dropin.add(8, "fs.file-max", "200000", AT)
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["net.core.somaxconn = 4096", "fs.file-max = 200000"]
    assert dropin.remove(7) is True
    assert dropin.entries() == {8: ("fs.file-max", "200000")}
    assert dropin.remove(7) is False  # idempotent
    assert other.read_text() == "net.core.somaxconn = 128\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["10-admin.conf", "90-healer.conf"]


def test_a_later_persist_of_the_same_key_replaces_the_older_line(tmp_path: Path) -> None:
    dropin = DropIn(tmp_path / "90-healer.conf")
    dropin.add(1, "net.core.somaxconn", "1024", AT)
    dropin.add(2, "net.core.somaxconn", "4096", AT)
    assert dropin.entries() == {2: ("net.core.somaxconn", "4096")}
    assert dropin.remove(1) is False
    assert dropin.entries() == {2: ("net.core.somaxconn", "4096")}


def test_lines_an_admin_added_by_hand_survive(tmp_path: Path) -> None:
    path = tmp_path / "90-healer.conf"
    path.write_text("vm.swappiness = 10\n")
    dropin = DropIn(path)
    dropin.add(3, "net.core.somaxconn", "4096", AT)
    dropin.remove(3)
    assert "vm.swappiness = 10\n" in path.read_text()
    assert "somaxconn" not in path.read_text()
