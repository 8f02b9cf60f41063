"""Privilege separation: what the unprivileged side gets, and what it can never do.

The root agent execs ``healer serve`` as the ``healer`` user with an allowlisted
environment; the kernel drops groups, gid and uid before exec, and the child sets
no_new_privs before it imports the web stack. A compromised web process therefore cannot
write /proc/sys or cgroups, read the journal key, or rewrite the agent's live file.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from healer.privsep import (
    EXPECT_ENV,
    SETTINGS_ENV,
    Identity,
    Supervisor,
    child_env,
    interpreter,
    service_identity,
    spawn,
    unreachable,
)
from tests.tools import missing

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: drops privileges to `healer`")


@pytest.fixture
def identity() -> Identity:
    try:
        pwd.getpwnam("healer")
    except KeyError:
        missing("needs the `healer` system user (make system-deps creates it)")
    return service_identity("healer")


def test_the_child_environment_is_an_allowlist() -> None:
    parent = {"PATH": "/usr/bin", "LANG": "C.UTF-8", "HEALER_LLM_API_KEY": "sk-secret",
              "HEALER_AGENT_TOKEN": "hlr_x", "AWS_SECRET_ACCESS_KEY": "k",
              "SSH_AUTH_SOCK": "/tmp/ssh", "LD_PRELOAD": "/tmp/evil.so",
              "PYTHONPATH": "/tmp/evil", "PYTHONSTARTUP": "/tmp/evil.py"}
    env = child_env(parent, '{"port": 1}', unprivileged=True)
    assert env == {"PATH": "/usr/bin", "LANG": "C.UTF-8", SETTINGS_ENV: '{"port": 1}',
                   EXPECT_ENV: "1"}


def test_there_is_no_fallback_user() -> None:
    with pytest.raises(Exception, match="no system user 'no-such-healer-user'"):
        service_identity("no-such-healer-user")


class _FakeChild:
    def __init__(self, pid: int) -> None:
        self.pid, self.code = pid, None

    def poll(self) -> int | None:
        return self.code


def test_the_supervisor_restarts_with_growing_backoff_and_resets_once_healthy() -> None:
    now = [0.0]
    started: list[_FakeChild] = []

    def start() -> Any:
        started.append(_FakeChild(len(started) + 1))
        return started[-1]

    sup = Supervisor(start, min_backoff=1, max_backoff=8, healthy_after=60,
                     clock=lambda: now[0])
    sup.start()
    restarts_at = []
    for _ in range(5):  # dies at once, every time
        started[-1].code = 1
        sup.poll()
        before = len(started)
        while len(started) == before:
            now[0] += 0.5
            sup.poll()
        restarts_at.append(now[0])
    gaps = [b - a for a, b in itertools.pairwise(restarts_at)]
    assert gaps == [2.0, 4.0, 8.0, 8.0]  # doubling, capped (each includes the 0.5 s poll)
    now[0] += 61  # this one stays up: the backoff resets
    sup.poll()
    started[-1].code = 1
    sup.poll()
    assert sup.restarts == 5
    now[0] += 1.0
    sup.poll()
    assert len(started) == 7 and sup.restarts == 6


def test_stop_kills_a_child_that_ignores_sigterm() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
           "print('up', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    sup = Supervisor(lambda: proc)
    sup.start()
    started = time.monotonic()
    assert sup.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 5


PROBE = textwrap.dedent("""
    import json, os, sys
    from healer.privsep import enter_unprivileged
    enter_unprivileged(strict=True)
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    out = {"uids": os.getresuid(), "gids": os.getresgid(), "groups": os.getgroups(),
           "no_new_privs": status["NoNewPrivs"].strip(), "cap_eff": status["CapEff"].strip(),
           "env": sorted(os.environ), "fds": sorted(int(f) for f in os.listdir("/proc/self/fd"))}
    for name, path, flags in json.loads(sys.argv[1]):
        try:
            os.close(os.open(path, getattr(os, flags)))
            out[name] = "opened"
        except PermissionError:
            out[name] = "denied"
    print(json.dumps(out))
""")


@needs_root
def test_the_unprivileged_side_cannot_write_the_kernel_or_read_the_journal_key(
        identity: Identity, agent_tmp: Path) -> None:
    key_dir = agent_tmp / "state-agent"
    key_dir.mkdir(mode=0o700)
    (key_dir / "journal.key").write_bytes(os.urandom(32))
    (key_dir / "journal.key").chmod(0o600)
    live = agent_tmp / "live.json"
    live.write_text("{}")
    live.chmod(0o640)
    os.chown(live, 0, identity.gid)
    cgroup = Path("/sys/fs/cgroup/pids") / f"healer-test-{os.getpid()}"
    knob = cgroup / "pids.max"
    if not Path("/sys/fs/cgroup/pids").is_dir():
        cgroup = Path("/sys/fs/cgroup") / f"healer-test-{os.getpid()}"
        knob = cgroup / "cgroup.procs"
    cgroup.mkdir()
    try:
        probes = [("sysctl", "/proc/sys/net/core/somaxconn", "O_WRONLY"),
                  ("cgroup", str(knob), "O_WRONLY"),
                  ("journal_key", str(key_dir / "journal.key"), "O_RDONLY"),
                  ("live_write", str(live), "O_WRONLY"),
                  ("live_read", str(live), "O_RDONLY")]
        env = child_env(os.environ, "{}", unprivileged=True)
        proc = spawn([str(interpreter()), "-c", PROBE, json.dumps(probes)], env, identity,
                     stdout=subprocess.PIPE)
        out, _ = proc.communicate(timeout=30)
    finally:
        cgroup.rmdir()
    assert proc.returncode == 0
    result = json.loads(out or b"{}")
    assert set(result["uids"]) == {identity.uid} and set(result["gids"]) == {identity.gid}
    assert result["groups"] in ([], [identity.gid])
    assert result["no_new_privs"] == "1" and int(result["cap_eff"], 16) == 0
    assert result["env"] == sorted(env)
    assert result["fds"] == [0, 1, 2, 3]  # stdio, and the listing's own descriptor
    assert (result["sysctl"], result["cgroup"], result["journal_key"]) == ("denied",) * 3
    assert (result["live_write"], result["live_read"]) == ("denied", "opened")


@needs_root
def test_healer_serve_refuses_to_run_as_root() -> None:
    out = subprocess.run([sys.executable, "-m", "healer.cli.main", "serve"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "refusing to run with uid or gid 0" in out.stderr


def test_a_closed_directory_on_the_way_is_named(tmp_path: Path) -> None:
    me = Identity("nobody-test", 65534, 65534)
    closed = tmp_path / "closed"
    (closed / "state").mkdir(parents=True)
    closed.chmod(0o700)
    assert unreachable(me, closed / "state") in (closed, tmp_path, tmp_path.parent,
                                                 tmp_path.parent.parent)
    closed.chmod(0o711)
    blocked = unreachable(me, closed / "state")
    assert blocked is None or blocked not in (closed, closed / "state")


AGENT = textwrap.dedent("""
    import json, sys
    from healer.settings import Settings
    from healer.daemon import build_daemon
    s = Settings(state_dir=sys.argv[1], kmsg_source="none", gpu_backend="simulated",
                 llm_base_url="http://127.0.0.1:9/v1", llm_model="m")
    daemon = build_daemon(s)
    for _ in range(3):
        daemon.pipeline.cycle()
    print(json.dumps(sorted(sys.modules)))
""")
WEB_STACK = {"fastapi", "uvicorn", "starlette", "jinja2", "langchain", "langchain_core",
             "langchain_openai", "openai", "httpx", "httpcore", "web"}
NOT_IN_THE_LOOP = {"argon2", "alembic", "mako"}  # password hashing; migrations run apart
# What would cost the agent memory for nothing (bench/overhead.py): the ORM (the store is
# SQLAlchemy Core), and on a single host the fleet's protocol, transport and threads.
NOT_IN_A_SINGLE_HOST_AGENT = {"sqlalchemy.orm", "healer.fleet.link", "healer.fleet.transport",
                              "healer.fleet.sender", "healer.fleet.events",
                              "healer.fleet.leases", "healer.fleet.worker"}


def test_the_root_agent_never_loads_the_web_stack_the_llm_client_or_http_clients(
        tmp_path: Path) -> None:
    # With an LLM configured, too: its client lives in healer serve (import-linter checks
    # the same statically: pyproject's "the root agent never loads ..." contract).
    out = subprocess.run([sys.executable, "-c", AGENT, str(tmp_path / "state")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = {name.split(".")[0] for name in json.loads(out.stdout.splitlines()[-1])}
    assert loaded & WEB_STACK == set()
    assert loaded & NOT_IN_THE_LOOP == set()
    assert set(json.loads(out.stdout.splitlines()[-1])) & NOT_IN_A_SINGLE_HOST_AGENT == set()
