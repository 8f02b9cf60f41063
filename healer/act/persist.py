"""One sysctl drop-in file that healer owns (default /etc/sysctl.d/90-healer.conf).

sysctl.d(5): lines are ``key = value``; lines starting with ``#`` are comments. Each
persisted change is a comment naming its action, followed by its line, so a rollback
removes exactly its own line. No other file is ever opened for writing; the file is
replaced atomically (write a temporary file in the same directory, fsync, rename).
"""

from __future__ import annotations

import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from guardrails.actions import SYSCTL_KEY_RE, check_sysctl_value

HEADER = "# Managed by healer (`healer persist ID`, `healer rollback ID`); edits may be lost.\n"
_MARK = re.compile(r"^# healer action (\d+)\b")


def _blocks(text: str) -> list[tuple[int | None, list[str]]]:
    """Split the file into (action id or None, lines) blocks; a mark owns the next line."""
    out: list[tuple[int | None, list[str]]] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = _MARK.match(lines[i])
        if m and i + 1 < len(lines):
            out.append((int(m.group(1)), lines[i : i + 2]))
            i += 2
        else:
            if lines[i] != HEADER:
                out.append((None, [lines[i]]))
            i += 1
    return out


def _key_of(line: str) -> str:
    return line.split("=", 1)[0].strip()


class DropIn:
    """Adds and removes healer's persisted ``key = value`` lines in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def entries(self) -> dict[int, tuple[str, str]]:
        """Persisted lines by action id: (key, value)."""
        out: dict[int, tuple[str, str]] = {}
        for action_id, lines in _blocks(self._read()):
            if action_id is not None:
                key, _, value = lines[1].partition("=")
                out[action_id] = (key.strip(), value.strip())
        return out

    def add(self, action_id: int, key: str, value: str, at: datetime) -> None:
        """Persist ``key = value`` for this action, replacing any older line for the key.

        The key and value pass the catalog's grammar here too (ValueError otherwise): one
        stray newline in a value would be a second line of the file, i.e. another sysctl.
        """
        if not SYSCTL_KEY_RE.match(key):
            raise ValueError(f"malformed sysctl key {key[:80]!r}")
        value = check_sysctl_value(value)
        kept = [
            (aid, lines) for aid, lines in _blocks(self._read())
            if aid != action_id and not (aid is not None and _key_of(lines[1]) == key)
        ]
        kept.append((action_id, [f"# healer action {action_id} {at.isoformat()}\n",
                                 f"{key} = {value}\n"]))
        self._write(kept)

    def remove(self, action_id: int) -> bool:
        """Drop this action's line; False when it had none (nothing is written then)."""
        blocks = _blocks(self._read())
        kept = [(aid, lines) for aid, lines in blocks if aid != action_id]
        if len(kept) == len(blocks):
            return False
        self._write(kept)
        return True

    def _write(self, blocks: list[tuple[int | None, list[str]]]) -> None:
        text = HEADER + "".join(line for _, lines in blocks for line in lines)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".healer-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a crash
        finally:
            os.close(dir_fd)
