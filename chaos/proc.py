"""Spawning confined processes and killing them again.

Every process chaos starts dies with its owner: ``PR_SET_PDEATHSIG`` (prctl(2)) makes the
kernel send SIGKILL to the child when the thread that forked it exits, so a SIGKILLed runner
leaves no workload behind. The child enters its network namespace with setns(2) and its
cgroups by writing its own pid to ``cgroup.procs`` *before* exec, so it never runs unconfined.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h
CLONE_NEWNET = 0x40000000  # include/uapi/linux/sched.h
NETNS_RUN_DIR = Path("/run/netns")  # where `ip netns add` bind-mounts namespaces
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once in the parent (never inside a forked child)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _child_setup(
    netns: str | None, procs_files: Sequence[str], rlimits: Mapping[int, tuple[int, int]]
) -> None:
    lib = libc()
    lib.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    for f in procs_files:
        with open(f, "w") as fh:
            fh.write(str(os.getpid()))
    if netns:
        fd = os.open(NETNS_RUN_DIR / netns, os.O_RDONLY)
        if lib.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
        os.close(fd)
    for res, (soft, hard) in rlimits.items():
        resource.setrlimit(res, (soft, hard))


def spawn(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    procs_files: Sequence[str] = (),
    rlimits: Mapping[int, tuple[int, int]] | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv in its own session, confined, dying with this process."""
    libc()  # load before fork: the child must not dlopen
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=lambda: _child_setup(netns, procs_files, rlimits or {}),
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


def python_module(module: str, *args: str) -> list[str]:
    """argv that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def create_time(pid: int) -> float | None:
    """When the process started, in seconds since boot (``starttime`` in /proc/PID/stat,
    proc(5) field 22), or None when it is gone. Not psutil's ``create_time``: that adds
    the boot time, a whole second that moves when the clock is stepped, so a watchdog
    comparing two readings minutes apart could take a live owner for a dead one and tear
    its sandbox down mid-run. (healer.act.process.start_time reads the same field for the
    agent; chaos imports nothing of healer.)"""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[19]) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def same_process(pid: int, ctime: float | None) -> bool:
    """True when pid still names the process started at ctime (guards against pid reuse)."""
    now = create_time(pid)
    return now is not None and (ctime is None or abs(now - ctime) < 0.05)


def kill_group(pid: int, ctime: float | None, timeout: float = 3.0) -> None:
    """SIGKILL the session/process group led by pid (idempotent)."""
    if not same_process(pid, ctime):
        # The leader is gone; its group may live on (a supervisor's children). Kill only
        # members born after the leader, so a reused pid never takes a stranger with it.
        for p in _group_members(pid, ctime):
            with contextlib.suppress(psutil.Error):
                p.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and same_process(pid, ctime):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.02)


def _group_members(pgid: int, ctime: float | None) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            born = create_time(p.pid)
            if os.getpgid(p.pid) == pgid and born is not None \
                    and (ctime is None or born >= ctime):
                found.append(p)
        except (OSError, psutil.Error):
            continue
    return found


def terminate(proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
    """SIGTERM, wait grace seconds, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.wait(5)
    return proc.returncode
