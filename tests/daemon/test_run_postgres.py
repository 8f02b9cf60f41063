"""``healer run`` on PostgreSQL: the daemon migrates an empty database (in its child
process), opens an incident from a kernel-log line, and the CLI reads it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.prom import free_port

HUNG = "3,1,121234567,-;INFO: task kworker/0:1:123 blocked for more than 120 seconds.\n"
TIMEOUT_S = 30.0


def _incidents(env: dict[str, str]) -> list[dict[str, object]]:
    out = subprocess.run([sys.executable, "-m", "healer.cli.main", "incidents", "--json"],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [i for i in json.loads(out.stdout) if i["playbook"] == "hung-task"]


def test_daemon_on_postgresql_opens_incidents_the_cli_reads(pg_url: str, agent_tmp: Path) -> None:
    tmp_path = agent_tmp
    kmsg = tmp_path / "kmsg.txt"
    kmsg.write_text("")
    port = free_port()
    env = {**os.environ, "HEALER_DATABASE_URL": pg_url,
           "HEALER_STATE_DIR": str(tmp_path / "state"),
           "HEALER_PORT": str(port), "HEALER_KMSG_SOURCE": str(kmsg),
           "HEALER_GPU_BACKEND": "none", "HEALER_MODE": "observe",
           "HEALER_INTERVAL_SECONDS": "0.25"}
    with (tmp_path / "healer.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "healer.cli.main", "run"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        health: dict[str, object] = {}
        while health.get("database") != "ok":
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "healer.log").read_text()[-2000:]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.2)
        with kmsg.open("a") as f:
            f.write(HUNG)
        while not (found := _incidents(env)):
            assert time.monotonic() < deadline, (tmp_path / "healer.log").read_text()[-2000:]
            time.sleep(0.3)
        assert found[0]["status"] == "open" and found[0]["scope"] == "host"
        assert not (tmp_path / "state" / "healer.db").exists()  # nothing went to SQLite
    finally:
        proc.terminate()
        proc.wait(timeout=15)
