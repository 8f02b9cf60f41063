"""The kernel-log collector: new records each cycle, a cursor that survives restarts.

Sources (``Settings.kmsg_source``): a character device such as ``/dev/kmsg``
(falls back to ``dmesg --raw`` when it cannot be opened), any other path is a file
of recorded kmsg lines followed like ``tail -f``, and ``none`` disables the
collector. The cursor ``<state_dir>/kmsg.cursor`` is JSON, written atomically
(temp file + rename) whenever it moves:

    {"source": "/dev/kmsg", "kind": "device", "boot_id": "...", "seq": 1234}
    {"source": "/tmp/k.txt", "kind": "file", "boot_id": "...", "seq": 9, "inode": 5, "offset": 880}

On start the device source skips records with ``seq <= cursor``; a gap between the
cursor and the first record read counts as lost (the ring overwrote them while we
were down). A cursor from another boot is ignored and the whole ring is read.
With no cursor at all the daemon starts at the end of the ring (history from
before healer ran is not news); a read-only reader (``persist=False``, used by
``healer snapshot``) reads from the cursor, or the whole ring, and never saves.

Metrics: ``kmsg.lines_total``, ``kmsg.lost_total``, ``kmsg.malformed_total``.
``wall_ts`` is btime + ts_us for the device and dmesg, and the read time for files.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from healer.models import KmsgRecord, SamplePart
from healer.monitor.kmsg_sources import Batch, DeviceSource, DmesgSource, FileSource
from healer.telemetry import Telemetry

log = logging.getLogger(__name__)
Source = DeviceSource | FileSource | DmesgSource
MAX_CHUNKS_PER_CYCLE = 4  # of FILE_CHUNK bytes: bounds one cycle's work, drops nothing


def _read_small(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _btime(procfs_root: Path) -> float:
    for line in _read_small(procfs_root / "stat").splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return time.time() - time.monotonic()


class KmsgCollector:
    """Reads every available kernel-log record each cycle (no cap that drops lines)."""

    name = "kmsg"

    def __init__(
        self,
        source: str = "/dev/kmsg",
        state_dir: Path | None = None,
        *,
        persist: bool = True,
        telemetry: Telemetry | None = None,
        procfs_root: Path = Path("/proc"),
        dmesg_cmd: Sequence[str] = ("dmesg", "--raw"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source_spec = source
        self.cursor_path = state_dir / "kmsg.cursor" if state_dir is not None else None
        self.persist = persist
        self._telemetry = telemetry
        self._procfs = procfs_root
        self._dmesg_cmd = dmesg_cmd
        self._clock = clock
        self._source: Source | None = None
        self._boot_id = _read_small(procfs_root / "sys/kernel/random/boot_id")
        self._btime = 0.0
        self.last_seq: int | None = None
        self._overrun = False
        self.lines_total = 0
        self.lost_total = 0
        self.malformed_total = 0

    # -- cursor -----------------------------------------------------------------
    def _load_cursor(self, kind: str) -> dict[str, Any] | None:
        if self.cursor_path is None:
            return None
        try:
            data = json.loads(self.cursor_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("source") != self.source_spec:
            return None
        if data.get("kind") != kind:
            return None
        if kind != "file" and data.get("boot_id") != self._boot_id:
            log.info("kmsg cursor from another boot ignored: reading the whole ring")
            return {}
        return data

    def _save_cursor(self) -> None:
        if not self.persist or self.cursor_path is None or self._source is None:
            return
        data = {"source": self.source_spec, "kind": self._source.kind, "boot_id": self._boot_id,
                "seq": self.last_seq, **self._source.state()}
        self.cursor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cursor_path.with_name(f".kmsg.cursor.{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.cursor_path)

    # -- sources ----------------------------------------------------------------
    def _open(self) -> Source:
        spec = self.source_spec
        try:
            is_dev = stat.S_ISCHR(os.stat(spec).st_mode)
        except OSError:
            is_dev = spec.startswith("/dev/")
        if not is_dev:
            fcur = self._load_cursor("file") or {}
            self.last_seq = fcur.get("seq")
            return FileSource(spec, fcur.get("inode"), int(fcur.get("offset") or 0))
        self._btime = _btime(self._procfs)
        cur = self._load_cursor("device")
        try:
            src: Source = DeviceSource(spec, seek_end=cur is None and self.persist)
        except OSError as exc:
            log.warning("kmsg device unreadable, using dmesg: path=%s error=%s", spec, exc.strerror)
            dcur = self._load_cursor("dmesg") or {}
            return DmesgSource(self._dmesg_cmd, int(dcur.get("ts_us", -1)))
        self.last_seq = (cur or {}).get("seq")
        return src

    def collect(self) -> SamplePart:
        if self._source is None:
            self._source = self._open()
        records: list[KmsgRecord] = []
        for _ in range(MAX_CHUNKS_PER_CYCLE):  # whatever is left waits for the next cycle
            batch = self._source.read()
            records.extend(self._account(batch))
            if not batch.more:
                break
        if records:
            self._save_cursor()
        return SamplePart(metrics=self._metrics(), kmsg=tuple(records))

    def _account(self, batch: Batch) -> list[KmsgRecord]:
        kept: list[KmsgRecord] = []
        lost = 0
        overrun = self._overrun or batch.overruns > 0
        is_file = isinstance(self._source, FileSource)
        wall = self._clock() if is_file else None
        for rec in batch.records:
            last = self.last_seq
            if last is not None and rec.seq <= last and not is_file:
                continue  # already read before a restart
            if last is not None and rec.seq > last + 1:
                lost += rec.seq - last - 1
            elif overrun and last is not None:
                lost += 1
            overrun = False
            self.last_seq = rec.seq
            ts = wall if wall is not None else self._btime + rec.ts_us / 1e6
            kept.append(KmsgRecord.model_construct(**{**rec.__dict__, "wall_ts": ts}))
        self._overrun = overrun  # an EPIPE with no record after it yet
        self._count(len(kept), lost, batch.malformed)
        return kept

    def _count(self, lines: int, lost: int, malformed: int) -> None:
        self.lines_total += lines
        self.lost_total += lost
        self.malformed_total += malformed
        t = self._telemetry
        if t is not None:
            t.kmsg_lines.inc(lines)
            t.kmsg_lost.inc(lost)
            t.kmsg_malformed.inc(malformed)
        if lost:
            log.warning("kmsg records lost: count=%d last_seq=%s", lost, self.last_seq)

    def _metrics(self) -> dict[str, float]:
        return {
            "kmsg.lines_total": float(self.lines_total),
            "kmsg.lost_total": float(self.lost_total),
            "kmsg.malformed_total": float(self.malformed_total),
        }

    def close(self) -> None:
        """Release the device or file descriptor."""
        if self._source is not None:
            self._source.close()
            self._source = None
