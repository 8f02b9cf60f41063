"""Structured ``key=value`` logging. Logs record decisions, not steps; never secrets."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def logfmt(**fields: Any) -> str:
    """Render fields as ``k=v`` pairs; values with spaces or quotes are quoted."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c.isspace() or c in "\"=" for c in text):
            text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        parts.append(f"{key}={text}")
    return " ".join(parts)


class _Formatter(logging.Formatter):
    """``<UTC time>Z level=… logger=… <message>``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)sZ level=%(levelname)s logger=%(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))


def setup_logging(level: str = "info") -> None:
    """Send healer's logs to stderr, one structured line per decision."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "httpx", "httpcore", "uvicorn.access", "openai", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
