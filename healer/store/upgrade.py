"""``python -m healer.store.upgrade``: apply migrations in a short-lived child process.

The daemon runs for weeks; importing alembic (with mako and pygments) would keep about
11 MB resident for its whole life when one upgrade at first start is all it needs. So
``open_store(..., isolate_migration=True)`` runs the upgrade here instead, through
``healer.store.engine.upgrade_in_child``. The database URL arrives on stdin, never in
argv, so a password does not show in ``ps``.
"""

from __future__ import annotations

import sys

from healer.errors import StoreError
from healer.store.engine import migrate, open_engine, scrub


def main() -> int:
    """Read a database URL from stdin, migrate it to head; one line on stderr on failure."""
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
