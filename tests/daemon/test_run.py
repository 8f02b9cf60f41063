"""``healer run`` end to end: a real process, real /proc, a file kernel-log source.

It serves /healthz and /metrics with values from this host, opens an incident from a
kernel-log line through the whole loop, lists it through the CLI, and stops cleanly on
SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HUNG = "3,{seq},121234567,-;INFO: task kworker/0:1:123 blocked for more than 120 seconds.\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _until(check: object, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()  # type: ignore[operator]
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


@pytest.fixture
def daemon(agent_tmp: Path) -> Iterator[tuple[str, dict[str, str], Path, subprocess.Popen[str]]]:
    tmp_path = agent_tmp
    kmsg = tmp_path / "kmsg.txt"
    kmsg.write_text("")
    env = {**os.environ, "HEALER_STATE_DIR": str(tmp_path / "state"),
           "HEALER_PORT": str(_free_port()), "HEALER_INTERVAL_SECONDS": "0.25",
           "HEALER_KMSG_SOURCE": str(kmsg), "HEALER_GPU_BACKEND": "simulated",
           "HEALER_MODE": "observe"}
    log = (tmp_path / "healer.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "healer.cli.main", "run"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{env['HEALER_PORT']}"
    try:
        yield url, env, kmsg, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def test_run_serves_host_metrics_opens_incidents_and_stops_on_sigterm(
        daemon: tuple[str, dict[str, str], Path, subprocess.Popen[str]], agent_tmp: Path) -> None:
    tmp_path = agent_tmp
    url, env, kmsg, proc = daemon
    _until(lambda: httpx.get(f"{url}/healthz", timeout=2).json()["status"] == "ok")

    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    mem_total_kb = next(int(line.split()[1])
                        for line in Path("/proc/meminfo").read_text().splitlines()
                        if line.startswith("MemTotal:"))
    assert _metric(metrics, "healer_host_mem_total_bytes") == mem_total_kb * 1024
    assert _metric(metrics, 'healer_gpu_temperature_celsius{gpu="0"}') is not None
    cycles = _metric(metrics, "healer_cycle_seconds_count")
    _until(lambda: (_metric(httpx.get(f"{url}/metrics", timeout=5).text,
                            "healer_cycle_seconds_count") or 0) > (cycles or 0))

    with kmsg.open("a") as f:
        f.write(HUNG.format(seq=1))

    def listed() -> list[dict[str, object]]:
        out = subprocess.run([sys.executable, "-m", "healer.cli.main", "incidents", "--json"],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [i for i in json.loads(out.stdout) if i["playbook"] == "hung-task"]

    [incident] = _until(listed)  # type: ignore[misc]
    assert incident["status"] == "open" and incident["scope"] == "host"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert "healer stopped" in (tmp_path / "healer.log").read_text()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True)
    return [int(p) for p in out.stdout.split()]


def _listener_uid(port: int) -> int | None:
    """The uid owning the TCP socket listening on ``port`` (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, uid = fields[1], fields[3], fields[7]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            return int(uid)
    return None


def test_the_agent_listens_on_no_port_and_restarts_its_web_side(
        daemon: tuple[str, dict[str, str], Path, subprocess.Popen[str]], agent_tmp: Path) -> None:
    url, env, _, proc = daemon
    _until(lambda: httpx.get(f"{url}/healthz", timeout=2).json()["agent"] == "alive")
    [serve] = _children(proc.pid)
    port = int(env["HEALER_PORT"])
    listener = _listener_uid(port)
    assert listener is not None
    if os.geteuid() == 0:  # the dashboard's socket belongs to the `healer` user, not root
        import pwd

        assert listener == pwd.getpwnam("healer").pw_uid
        assert Path(f"/proc/{serve}/status").read_text().count("NoNewPrivs:\t1") == 1
    os.kill(serve, signal.SIGKILL)  # the web side dies: the agent starts another
    restarted = _until(lambda: [p for p in _children(proc.pid) if p != serve])
    _until(lambda: httpx.get(f"{url}/healthz", timeout=2).json()["status"] == "ok")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert all(not Path(f"/proc/{p}").exists() for p in restarted)  # type: ignore[union-attr]
    assert "unprivileged side exited" in (agent_tmp / "healer.log").read_text()
