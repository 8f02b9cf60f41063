from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from healer.cli.main import main


def _snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    assert main(["snapshot", "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HEALER_GPU_BACKEND", "none")
    monkeypatch.setenv("HEALER_KMSG_SOURCE", "none")


def test_snapshot_json_agrees_with_proc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = _snapshot(tmp_path, capsys)
    memtotal_kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                           if ln.startswith("MemTotal:")).split()[1])
    assert snap["metrics"]["mem.total_bytes"] == memtotal_kb * 1024
    assert snap["metrics"]["pids.max"] == int(Path("/proc/sys/kernel/pid_max").read_text())
    assert "cpu.busy_percent" in snap["metrics"]  # two readings were taken
    assert snap["gpus"] == [] and snap["kmsg"]["source"] == "none"


def test_snapshot_counters_are_monotonic_across_two_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _snapshot(tmp_path, capsys)["metrics"]
    b = _snapshot(tmp_path, capsys)["metrics"]
    counters = [k for k in a if k.endswith("_total") and k in b]
    assert len(counters) > 100
    assert [k for k in counters if b[k] < a[k]] == []


def test_snapshot_does_not_move_the_daemon_kmsg_cursor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "k.txt"
    src.write_text("6,1,1,-;hello\n")
    monkeypatch.setenv("HEALER_KMSG_SOURCE", str(src))
    assert _snapshot(tmp_path, capsys)["kmsg"]["lines"] == 1
    assert _snapshot(tmp_path, capsys)["kmsg"]["lines"] == 1
    assert not (tmp_path / "state" / "kmsg.cursor").exists()


def test_snapshot_table_runs_as_a_command(tmp_path: Path) -> None:
    env = {**os.environ, "HEALER_STATE_DIR": str(tmp_path), "HEALER_GPU_BACKEND": "none",
           "HEALER_KMSG_SOURCE": "none"}
    out = subprocess.run([sys.executable, "-m", "healer.cli.main", "snapshot"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "mem.total_bytes" in out.stdout and "kmsg (none)" in out.stdout
