"""What the root agent publishes each cycle for the unprivileged side: ``LivePublisher``.

The agent listens on no port. Each cycle it replaces one file, ``live.json`` in its
runtime directory, with the latest sample, its own Prometheus metrics (as exposition
text) and a heartbeat; ``healer serve`` reads it to answer ``/metrics``, ``/healthz``,
``/api/v1/snapshot`` and the live charts. The directory is ``root:<service group>`` mode
0750 and the file 0640: the other side can read it and nothing else can, and nobody but
the agent can write it. The file is replaced atomically (rename), so a reader never sees
half a write. The agent writes; it never reads anything back from there.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from healer.logs import logfmt
from healer.models import LiveSnapshot, Sample

log = logging.getLogger("healer.live")

LIVE_FILE = "live.json"
DIR_MODE, FILE_MODE = 0o750, 0o640


def prepare_runtime_dir(path: Path, group: int | None) -> None:
    """Create the runtime directory (``root:group`` 0750); refuse one others may write."""
    path.mkdir(parents=True, exist_ok=True)
    st = path.lstat()
    if not os.path.isdir(path) or os.path.islink(path):
        raise OSError(f"{path} is not a directory")
    if st.st_uid != os.geteuid():
        raise OSError(f"{path} belongs to uid {st.st_uid}, not to this process")
    os.chmod(path, DIR_MODE)
    if group is not None and st.st_gid != group:
        os.chown(path, -1, group)


class LivePublisher:
    """Writes ``live.json`` atomically each cycle; a failed write is logged, never raised."""

    def __init__(self, directory: Path, *, interval_seconds: float, mode: str,
                 group: int | None = None) -> None:
        self.path = directory / LIVE_FILE
        self._dir, self._group = directory, group
        self._interval, self._mode = interval_seconds, mode
        self._failing = False

    def publish(self, sample: Sample, agent_metrics: str, lag_seconds: float) -> None:
        """Replace the file with this cycle's sample, metrics and heartbeat."""
        snapshot = LiveSnapshot(
            written_at=time.time(), interval_seconds=self._interval, mode=self._mode,
            agent_pid=os.getpid(), lag_seconds=lag_seconds, sample=sample,
            agent_metrics=agent_metrics)
        try:
            self._replace(snapshot.model_dump_json().encode())
        except OSError as exc:
            if not self._failing:  # once per outage, not once a second
                log.error(logfmt(msg="cannot publish live data", path=self.path, error=exc))
            self._failing = True
            return
        self._failing = False

    def _replace(self, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".live-", dir=self._dir)
        try:
            os.fchmod(fd, FILE_MODE)
            if self._group is not None:
                os.fchown(fd, -1, self._group)
            with os.fdopen(fd, "wb", closefd=False) as fh:
                fh.write(data)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, self.path)
