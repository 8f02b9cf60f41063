"""The tests' throwaway PostgreSQL: healer.store.pgserver (``healer fleet sim`` uses it too)."""

from healer.store.pgserver import PgServer, find_bindir, url_database

__all__ = ["PgServer", "find_bindir", "url_database"]
