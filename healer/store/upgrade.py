"""``python -m healer.store.upgrade``: apply migrations in a short-lived child process.

The daemon runs for weeks; importing alembic (with mako and pygments) would keep about
11 MB resident for its whole life when one upgrade at first start is all it needs. So
``open_store(..., isolate_migration=True)`` runs the upgrade here instead. The database
URL arrives on stdin, never in argv, so a password does not show in ``ps``.
"""

from __future__ import annotations

import subprocess
import sys

from healer.errors import StoreError

TIMEOUT_S = 300.0  # a long migration on a big PostgreSQL table; SQLite takes < 1 s


def upgrade_in_child(url: str) -> None:
    """Run ``migrate`` on ``url`` in a child interpreter; raise StoreError if it fails."""
    try:
        done = subprocess.run([sys.executable, "-m", "healer.store.upgrade"], input=url,
                              capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise StoreError(f"migration failed: {e}") from e
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        raise StoreError(lines[-1].removeprefix("StoreError: "))


def main() -> int:
    """Read a database URL from stdin, migrate it to head; one line on stderr on failure."""
    from healer.store.engine import migrate, open_engine, scrub

    url = sys.stdin.read().strip()
    try:
        engine = open_engine(url)
        try:
            migrate(engine)
        finally:
            engine.dispose()
    except StoreError as e:
        line = scrub(str(e).splitlines()[0], url)
        print(f"StoreError: {line}", file=sys.stderr)  # one line, never the password
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
