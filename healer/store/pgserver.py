"""A throwaway PostgreSQL server, from Debian's ``postgresql`` package: for the tests and for
``healer fleet sim`` when no ``HEALER_DATABASE_URL`` is given.

``initdb`` into a fresh temp dir, then ``postgres`` listening only on a Unix socket in
that dir (no TCP port to collide on), durability off (``fsync=off``: the data dies with
the session anyway). PostgreSQL refuses to run as root, so under root the server
runs as ``nobody`` through ``setpriv``, with the temp dir handed to that user.

The server is a child of the process that started it, with a parent-death signal, so even
a run killed outright takes it down; ``stop`` removes the dir, and the next start removes
dirs whose server is gone (left by a run that was killed). Each test (or simulation) gets
its own database, copied from a template (``CREATE DATABASE ... TEMPLATE`` copies files:
far cheaper than running the migrations again).

    server = PgServer.start(find_bindir())
    url = server.create_database()          # empty
    url = server.create_database(template)  # a copy of ``template``
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_ROOT = Path("/usr/lib/postgresql")  # Debian: /usr/lib/postgresql/<major>/bin
RUN_AS = "nobody"  # exists on every Debian system; needs no account of our own
START_TIMEOUT_S = 30.0
SUPERUSER = "postgres"
PREFIX = "healer-pg-"
OWNER_FILE = "owner.pid"  # the pid of the process that started the server


def dies_with_parent(argv: list[str], signal_name: str = "SIGTERM") -> list[str]:
    """``argv`` run through ``setpriv --pdeathsig``: a throwaway server gets ``signal_name``
    when the process that started it dies, even by SIGKILL, so none outlives it."""
    return ["setpriv", "--pdeathsig", signal_name, *argv]


def url_database(url: str) -> str:
    """The database a URL of ``PgServer.url`` names (its socket path holds slashes too)."""
    return url.split("?")[0].rsplit("/", 1)[-1]


def find_bindir(root: Path = PG_ROOT) -> Path | None:
    """The newest installed major version's bin dir with initdb and postgres, if any."""
    found = [d / "bin" for d in root.glob("*") if (d / "bin" / "initdb").exists()
             and (d / "bin" / "postgres").exists() and d.name.isdigit()]
    return max(found, key=lambda p: int(p.parent.name), default=None)


def _demote(argv: list[str]) -> list[str]:
    """``argv`` run unprivileged (under root: as RUN_AS), dying with its parent."""
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        argv = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *argv]
    return dies_with_parent(argv, "SIGQUIT")  # SIGQUIT: postgres' immediate shutdown


def _sweep_stale(tmp: Path) -> None:
    """Remove the dirs of processes that died without cleanup (each dir names its
    owner's pid; one not named yet, or owned by a live process, is left alone)."""
    for root in tmp.glob(f"{PREFIX}*"):
        try:
            os.kill(int((root / OWNER_FILE).read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(root, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _hand_over(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(RUN_AS)
        os.chown(path, user.pw_uid, user.pw_gid)


@dataclass
class PgServer:
    """One running server; ``url(db)`` names a database on it."""

    root: Path
    proc: subprocess.Popen[bytes]
    prefix: str = "test"  # of the databases create_database names
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def start(cls, bindir: Path, settings: dict[str, str] | None = None) -> PgServer:
        """initdb and start a server; ``settings`` add ``-c name=value`` options."""
        _sweep_stale(Path(tempfile.gettempdir()))
        root = Path(tempfile.mkdtemp(prefix=PREFIX))
        try:
            (root / OWNER_FILE).write_text(str(os.getpid()))
            root.chmod(0o755)  # the socket lives here; the data dir below stays 0700
            _hand_over(root)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
            subprocess.run(_demote([str(bindir / "initdb"), "-D", str(root / "data"),
                                    "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                                    "--locale=C", "--no-sync"]),
                           cwd=root, env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
            options = {"listen_addresses": "", "unix_socket_directories": str(root),
                       "fsync": "off", "synchronous_commit": "off",
                       "full_page_writes": "off", **(settings or {})}
            argv = [str(bindir / "postgres"), "-D", str(root / "data")]
            for name, value in options.items():
                argv += ["-c", f"{name}={value}"]
            log = (root / "postgres.log").open("wb")
            proc = subprocess.Popen(_demote(argv), cwd=root, env=env, stdout=log, stderr=log)
            log.close()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        server = cls(root, proc)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def url(self, dbname: str) -> str:
        """A SQLAlchemy URL (psycopg 3) for ``dbname`` over the server's Unix socket."""
        return f"postgresql+psycopg://{SUPERUSER}@/{dbname}?host={self.root}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A plain autocommit psycopg connection (for DDL such as CREATE DATABASE)."""
        return psycopg.connect(host=str(self.root), user=SUPERUSER, dbname=dbname,
                               autocommit=True, connect_timeout=5)

    def create_database(self, template: str | None = None) -> str:
        """A new database (empty, or a copy of ``template``); returns its URL."""
        name = f"{self.prefix}_{next(self._names)}"
        source = template or "template1"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database ``url`` names, closing whatever still holds it open."""
        name = url_database(url)
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server log, for failure messages."""
        text = (self.root / "postgres.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove the data dir."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with self.connect():
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not ready:\n{self.log_tail()}") from None
                time.sleep(0.05)
