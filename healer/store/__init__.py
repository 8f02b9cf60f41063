"""Persistence: SQLite (WAL) or PostgreSQL via SQLAlchemy; all SQL lives in repository.py."""
