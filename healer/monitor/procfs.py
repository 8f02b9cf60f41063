"""Cheap, repeatable reads of /proc files for the 1 Hz hot path.

procfs files are seq_files: ``pread(fd, n, 0)`` regenerates the content, so a
descriptor opened once can be re-read every cycle without another open(2)/close(2)
(fs/seq_file.c: a read at offset 0 restarts the iterator). Regular files in the
fake trees used by tests behave the same way.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

_CHUNK = 65536


class ProcReader:
    """Keeps one read-only descriptor per path and re-reads it from offset 0."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def read(self, path: Path | str) -> str:
        """Return the whole file as text; raises OSError like open() would."""
        key = str(path)
        fd = self._fds.get(key)
        if fd is None:
            fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
            with self._lock:
                self._fds[key] = fd
        try:
            return _read_all(fd)
        except OSError:
            self._forget(key)
            raise

    def _forget(self, key: str) -> None:
        with self._lock:
            fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Close every cached descriptor."""
        with self._lock:
            fds, self._fds = list(self._fds.values()), {}
        for fd in fds:
            os.close(fd)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing to do
            self.close()


def _read_all(fd: int) -> str:
    data = os.pread(fd, _CHUNK, 0)
    if len(data) < _CHUNK:
        return data.decode("utf-8", "replace")
    parts = [data]
    offset = len(data)
    while True:
        more = os.pread(fd, _CHUNK, offset)
        if not more:
            break
        parts.append(more)
        offset += len(more)
    return b"".join(parts).decode("utf-8", "replace")
