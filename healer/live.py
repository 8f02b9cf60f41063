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
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from healer.logs import logfmt
from healer.models import LiveSnapshot, Sample
from healer.window import MetricWindow

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


class LiveReader:
    """The unprivileged side's view of the agent: its last snapshot, and an hour of samples.

    ``poll`` (every half interval, from a thread of ``healer serve``) re-reads the file only
    when its mtime moved, parses it, and appends the sample to a window of its own, which
    the live charts read: they never come from per-minute rollups. It satisfies
    ``web.live.LiveState``.
    """

    separate_agent = True

    def __init__(self, path: Path, *, window_seconds: float, interval_seconds: float,
                 on_sample: Callable[[Sample], None] | None = None,
                 llm: Callable[[], Mapping[str, Any]] | None = None) -> None:
        self.path = path
        self._window = MetricWindow(window_seconds, interval_seconds)
        self._snapshot: LiveSnapshot | None = None
        self._mtime_ns = 0
        self._on_sample, self._llm = on_sample, llm
        self._lock = threading.Lock()

    def poll(self) -> bool:
        """Take a new snapshot if the agent wrote one; True when it did."""
        try:
            st = os.stat(self.path)
            if st.st_mtime_ns == self._mtime_ns:
                return False
            raw = self.path.read_bytes()
        except OSError:
            return False  # not written yet, or being replaced: the next poll sees it
        try:
            snapshot = LiveSnapshot.model_validate_json(raw)
        except ValueError as exc:
            log.error(logfmt(msg="unreadable live file", path=self.path, error=str(exc)[:200]))
            return False
        with self._lock:
            self._mtime_ns = st.st_mtime_ns
            fresh = self._snapshot is None or snapshot.sample.ts > self._snapshot.sample.ts
            self._snapshot = snapshot
        if fresh:
            self._window.append(snapshot.sample)
            if self._on_sample is not None:
                self._on_sample(snapshot.sample)
        return fresh

    @property
    def window(self) -> MetricWindow:
        """The samples read since this process started (the LLM's tools read them)."""
        return self._window

    def agent(self) -> LiveSnapshot | None:
        """The agent's last published snapshot (heartbeat, lag, its own metrics)."""
        with self._lock:
            return self._snapshot

    def latest(self) -> Sample | None:
        """The newest sample the agent published."""
        snapshot = self.agent()
        return snapshot.sample if snapshot is not None else None

    def series(self, name: str, seconds: float) -> Sequence[tuple[float, float]]:
        """Points of ``name`` from the samples read since this process started."""
        return self._window.series(name, seconds)

    def llm_status(self) -> Mapping[str, Any] | None:
        """The LLM circuit state of this process's LLM client, or None when it is off."""
        return self._llm() if self._llm is not None else None
