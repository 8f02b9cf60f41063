"""Privilege separation: the root agent starts, watches and stops the unprivileged side.

OpenSSH's model: the part that faces the network has no privileges, and the privileged
part is small. ``healer run`` is the agent (the loop, collectors, guard, actuators and
journal, as root); it execs ``healer serve`` for everything that parses what the network
sends (the dashboard, the API, Slack, the LLM client, notification delivery):

- exec'd, never forked from the agent's memory: a fresh interpreter with no copy of the
  agent's keys, threads or database handles (``subprocess`` with ``close_fds``);
- an allowlisted environment: nothing of the agent's own environment leaks except
  locale and PATH, and the settings the other side needs arrive as one JSON value;
- the kernel drops supplementary groups, gid and uid between fork and exec (``Popen``'s
  ``extra_groups``, ``group``, ``user``), and ``enter_unprivileged`` sets ``no_new_privs``
  and checks all of that again in the child before anything network-facing is imported.

Without root there are still two processes; nothing can be dropped, and the agent's mode
is capped at advise anyway (``healer.daemon.effective_settings``).
"""

from __future__ import annotations

import ctypes
import grp
import logging
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from healer.errors import ConfigError
from healer.logs import logfmt
from healer.settings import Settings

log = logging.getLogger("healer.privsep")

SETTINGS_ENV = "HEALER_SERVE_SETTINGS"  # the unprivileged side's settings, as JSON
EXPECT_ENV = "HEALER_SERVE_UNPRIVILEGED"  # "1": the child must find itself without privilege
# What the child may inherit from the agent's environment: locale and search path only.
ENV_ALLOW = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ",
             "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")
PR_SET_NO_NEW_PRIVS = 38  # include/uapi/linux/prctl.h


@dataclass(frozen=True)
class Identity:
    """The unprivileged user the other side runs as."""

    name: str
    uid: int
    gid: int


def service_identity(name: str) -> Identity:
    """The system user ``name``; ConfigError when it does not exist (there is no fallback:
    ``nobody`` owns other daemons' files, and the database must be writable by ours)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError("service_user", f"no system user {name!r}: create it "
                          f"(useradd --system --no-create-home {name}) or run as non-root"
                          ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise ConfigError("service_user", f"user {name!r} has uid or gid 0")
    return Identity(name, entry.pw_uid, entry.pw_gid)


def child_env(environ: Mapping[str, str], settings_json: str, *, unprivileged: bool
              ) -> dict[str, str]:
    """The unprivileged side's whole environment: the allowlist plus its settings."""
    env = {k: environ[k] for k in ENV_ALLOW if k in environ}
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    env[SETTINGS_ENV] = settings_json
    env[EXPECT_ENV] = "1" if unprivileged else "0"
    return env


def spawn(argv: Sequence[str], env: Mapping[str, str], identity: Identity | None,
          cwd: str = "/", stdout: int | None = None) -> subprocess.Popen[bytes]:
    """Exec ``argv`` as ``identity`` (None: as ourselves) with no inherited descriptors
    beyond stdout and stderr (its log lines go where the agent's go)."""
    if identity is None:
        return subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=stdout, close_fds=True)
    return subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=stdout, close_fds=True, user=identity.uid,
                            group=identity.gid, extra_groups=[])


def interpreter() -> Path:
    """This environment's interpreter by its real location: ``.venv`` may be a link from a
    checkout the service user cannot search to the environment it can (see the Makefile)."""
    return Path(os.path.realpath(sys.prefix)) / "bin" / "python3"


def serve_argv() -> list[str]:
    """The command line of the unprivileged side: this environment's ``healer serve``,
    started in ``/``, so it imports the installed code and never a checkout."""
    return [str(interpreter()), "-m", "healer.cli.main", "serve", "--from-agent"]


def enter_unprivileged(*, strict: bool) -> None:
    """First thing in ``healer serve``: set no_new_privs, and refuse to run as root.

    ``no_new_privs`` (prctl(2)) makes execve never grant privileges again: no setuid
    binary, no file capabilities, for this process and everything it starts. ``strict``
    (started by a root agent, which dropped everything for us): no supplementary group
    may be left either.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise SystemExit(f"healer serve: prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
    uids, gids = os.getresuid(), os.getresgid()
    if 0 in uids or 0 in gids:
        raise SystemExit(f"healer serve: refusing to run with uid or gid 0 (uids {uids}, "
                         f"gids {gids}); run `healer run`, which starts it unprivileged")
    if strict and os.getgroups() not in ([], [gids[0]]):
        raise SystemExit(f"healer serve: supplementary groups left: {os.getgroups()}")


class Supervisor:
    """Keeps the unprivileged side running: restarts with exponential backoff, stops it.

    ``poll`` is cheap (one ``waitpid`` with WNOHANG) and runs from the agent's scheduler;
    a child that ran for ``healthy_after`` seconds resets the backoff.
    """

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]], *,
                 min_backoff: float = 1.0, max_backoff: float = 60.0,
                 healthy_after: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._start, self._clock = start, clock
        self._min, self._max, self._healthy = min_backoff, max_backoff, healthy_after
        self._backoff = min_backoff
        self._child: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._restart_at: float | None = None
        self.restarts = 0
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """The running child's pid, if any."""
        return self._child.pid if self._child is not None else None

    def start(self) -> None:
        """Start the child now."""
        self._child = self._start()
        self._started_at = self._clock()
        self._restart_at = None
        log.info(logfmt(msg="unprivileged side started", pid=self._child.pid))

    def poll(self) -> None:
        """Notice an exit and restart after the backoff; call it periodically."""
        if self._stopping:
            return
        now = self._clock()
        if self._child is not None:
            code = self._child.poll()
            if code is None:
                if now - self._started_at >= self._healthy:
                    self._backoff = self._min
                return
            self._restart_at = now + self._backoff
            log.error(logfmt(msg="unprivileged side exited", code=code,
                             restart_in=f"{self._backoff:g}s"))
            self._backoff = min(self._max, self._backoff * 2)
            self._child = None
        if self._restart_at is not None and now >= self._restart_at:
            self.restarts += 1
            self.start()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the child, wait up to ``timeout``, then SIGKILL; its exit code."""
        self._stopping = True
        child, self._child = self._child, None
        if child is None:
            return None
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                return child.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error(logfmt(msg="unprivileged side ignored SIGTERM; killing", pid=child.pid))
                child.kill()
        return child.wait()


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL; None for another backend or an in-memory one."""
    if not url.startswith("sqlite:///"):
        return None
    name = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(name) if name and name != ":memory:" else None


def share_state(settings: Settings, identity: Identity | None) -> None:
    """Give the unprivileged side what it needs and nothing more (root only):

    - the state directory, ``root:<group>`` 0770: the database with its ``-wal``/``-shm``
      (SQLite creates those with the database file's mode and owner) and the web's own
      signing key, which it creates;
    - the database file, 0660 group-writable;
    - the runtime directory, ``root:<group>`` 0750: it reads the live file;
    - the agent directory, ``root:root`` 0700: the journal key, which it must never read.
    """
    key_dir = settings.key_dir
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(key_dir, 0o700)
    if identity is None:
        return
    gid = identity.gid
    state = settings.state_dir
    os.chown(state, 0, gid)
    os.chmod(state, 0o770)
    database = sqlite_path(settings.db_url)
    for path in ([] if database is None else
                 [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))]):
        if path.exists() and not path.is_symlink():
            os.chown(path, -1, gid)
            os.chmod(path, 0o660)
    web_key = state / "web.key"  # made by a release that ran the web as root
    if web_key.exists() and not web_key.is_symlink() and web_key.stat().st_uid == 0:
        os.chown(web_key, identity.uid, identity.gid)


def unreachable(identity: Identity, path: Path) -> Path | None:
    """The first directory on the way to ``path`` that ``identity`` may not search, or
    ``path`` itself when it does not exist; None when the user can reach it. (A root-owned
    checkout under /root, or in a ``mktemp -d`` directory, is out of reach.)"""
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return path
    groups = {identity.gid, *(g.gr_gid for g in grp.getgrall() if identity.name in g.gr_mem)}
    for directory in [*reversed(resolved.parents), resolved]:
        if not directory.is_dir():
            continue
        st = directory.stat()
        if st.st_uid == identity.uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return directory
    return None


def check_reachable(identity: Identity, paths: Mapping[str, Path]) -> None:
    """ConfigError naming the first of ``paths`` (what -> path) the service user cannot reach."""
    for what, path in paths.items():
        blocked = unreachable(identity, path)
        if blocked is not None:
            raise ConfigError("service_user", (
                f"{identity.name} cannot reach the {what} {path} ({blocked} is closed to it): "
                "install healer where that user can read it (as root, `make` builds the "
                "environment under /opt/healer), and keep the state directory on a path it "
                "can search"))
