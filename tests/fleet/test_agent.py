"""``healer run --control-plane``: the host token stays in the root agent, bad transport
settings are one line and exit 2, and the agent in a fleet still loads no HTTP library."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from healer.cli.run import serve_settings
from healer.privsep import child_env
from healer.settings import Settings
from tests.fleet_server import ControlPlane

from .conftest import HOST, TOKEN, until

ROOT = os.geteuid() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "healer.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_token_reaches_neither_the_childs_environment_nor_its_settings(
        tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, control_plane_url="https://cp.example:8443",
                        host_labels={"rack": "r1"})
    parent = {"PATH": "/usr/bin", "HEALER_AGENT_TOKEN": TOKEN}
    env = child_env(parent, serve_settings(settings), unprivileged=True)
    assert all(TOKEN not in value for value in env.values())
    assert json.loads(serve_settings(settings))["control_plane_url"] == "https://cp.example:8443"


@pytest.mark.parametrize(("url", "says"), [
    ("http://10.1.2.3:8000", "only to a loopback address"),
    ("ftp://127.0.0.1/", "not an http:// or https:// URL"),
    ("https://user:pw@cp.example/", "no query, fragment or credentials"),
])
def test_a_control_plane_url_that_would_leak_the_token_is_one_line_and_exit_2(
        tmp_path: Path, url: str, says: str) -> None:
    env = {**os.environ, "HEALER_STATE_DIR": str(tmp_path / "state"),
           "HEALER_AGENT_TOKEN": TOKEN}
    out = _healer("run", "--control-plane", url, "--host-id", HOST, env=env)
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("healer: config error: control_plane_url") and says in line


def test_a_control_plane_without_a_host_token_is_one_line_and_exit_2(
        agent_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HEALER_AGENT_TOKEN"}
    env.update(HEALER_STATE_DIR=str(agent_tmp / "state"), HEALER_KMSG_SOURCE="none",
               HEALER_GPU_BACKEND="simulated", HEALER_PORT=str(_free_port()))
    out = _healer("run", "--control-plane", "http://127.0.0.1:9", env=env)
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert "HEALER_AGENT_TOKEN" in line and "healer host add" in line


@pytest.mark.skipif(not ROOT, reason="needs root: the agent starts healer serve as `healer`")
def test_a_real_agent_authenticates_with_the_token_and_its_unprivileged_side_never_has_it(
        agent_tmp: Path, cp: ControlPlane) -> None:
    cp.heartbeat_seconds = 1.0
    kmsg = agent_tmp / "kmsg.txt"
    kmsg.write_text("")
    env = {**os.environ, "HEALER_STATE_DIR": str(agent_tmp / "state"),
           "HEALER_PORT": str(_free_port()), "HEALER_KMSG_SOURCE": str(kmsg),
           "HEALER_GPU_BACKEND": "simulated", "HEALER_MODE": "observe",
           "HEALER_AGENT_TOKEN": TOKEN, "HEALER_HOST_LABELS": "rack=r12,zone=a"}
    log = (agent_tmp / "healer.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "healer.cli.main", "run",
                             "--control-plane", cp.url, "--host-id", HOST], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        beat = until(lambda: cp.requests("heartbeat"), timeout=30)[0]
        assert beat.headers["Authorization"] == f"Bearer {TOKEN}"
        assert beat.body["labels"] == {"rack": "r12", "zone": "a"}
        assert beat.body["mode"] == "observe"
        children = until(lambda: _children(proc.pid), timeout=30)
        for pid in children:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            assert environ and TOKEN.encode() not in environ + cmdline
        until(lambda: cp.reports, timeout=30)  # reporting from the real agent too
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True)
    return [int(p) for p in out.stdout.split()]


AGENT = textwrap.dedent("""
    import json, sys
    from healer.settings import Settings
    from healer.daemon import build_daemon
    s = Settings(state_dir=sys.argv[1], kmsg_source="none", gpu_backend="simulated",
                 control_plane_url=sys.argv[2], host_id=sys.argv[3])
    from healer.fleet.config import FleetConfig
    daemon = build_daemon(s, publish=False, fleet=FleetConfig.of(s, sys.argv[4]))
    daemon.fleet.start()
    for _ in range(3):
        daemon.fleet.drain()
        daemon.pipeline.cycle()
    daemon.fleet.stop()
    print(json.dumps(sorted(sys.modules)))
""")
WEB_STACK = {"fastapi", "uvicorn", "starlette", "jinja2", "langchain", "langchain_core",
             "langchain_openai", "openai", "httpx", "httpcore", "requests", "urllib3", "web"}


def test_the_agent_in_a_fleet_still_loads_no_http_library_or_web_stack(
        tmp_path: Path, cp: ControlPlane) -> None:
    out = subprocess.run([sys.executable, "-c", AGENT, str(tmp_path / "state"), cp.url, HOST,
                          TOKEN], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = {name.split(".")[0] for name in json.loads(out.stdout.splitlines()[-1])}
    assert loaded & WEB_STACK == set()
    assert {"http", "ssl"} <= loaded and cp.requests("heartbeat")
