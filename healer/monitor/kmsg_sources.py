"""Where kernel-log records come from: the /dev/kmsg device, a followed file, or dmesg.

Each source returns what became available since its last read, never blocking,
and exposes ``state()``: the position the cursor file stores.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from healer.errors import CollectorError, ParseError
from healer.models import KmsgRecord
from healer.monitor.kmsg_parse import LineParser, parse_dmesg_raw, parse_record

READ_SIZE = 16384  # /dev/kmsg: read(2) fails with EINVAL if one record does not fit
FILE_CHUNK = 8 << 20  # bytes per cycle from a followed file; the rest waits a cycle


@dataclass
class Batch:
    """What one read produced."""

    records: list[KmsgRecord] = field(default_factory=list)
    malformed: int = 0
    overruns: int = 0  # EPIPE: the ring overwrote records before we read them
    more: bool = False  # a followed file has more bytes than one chunk


class DeviceSource:
    """/dev/kmsg read non-blocking: one record per read(2), EAGAIN at the end, EPIPE on overrun."""

    kind = "device"

    def __init__(self, path: str, seek_end: bool) -> None:
        self.path = path
        # Opening positions us at the oldest record still in the ring; SEEK_END skips
        # the backlog (Documentation/ABI/testing/dev-kmsg).
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if seek_end:
            os.lseek(self._fd, 0, os.SEEK_END)

    def read(self) -> Batch:
        batch = Batch()
        while True:
            try:
                chunk = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                return batch
            except BrokenPipeError:
                batch.overruns += 1  # the fd now points at the oldest record left
                continue
            except OSError as exc:
                raise CollectorError("kmsg", f"{self.path}: {exc.strerror or exc}") from exc
            if not chunk:
                return batch
            try:
                batch.records.append(parse_record(chunk.decode("utf-8", "replace"), self.path))
            except ParseError:
                batch.malformed += 1

    def state(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        os.close(self._fd)


class FileSource:
    """A file of recorded kmsg lines, followed like ``tail -f`` (handles truncation, rotation)."""

    kind = "file"

    def __init__(self, path: str, inode: int | None = None, offset: int = 0) -> None:
        self.path = path
        self.inode = inode
        self.offset = offset
        self._fd: int | None = None
        self._parser = LineParser(path)

    def read(self) -> Batch:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return Batch()  # not written yet
        if self._fd is None or st.st_ino != self.inode:
            self._reopen(st.st_ino)
        if st.st_size < self.offset:
            self.offset = 0  # truncated: start over, as tail -F does
        if st.st_size <= self.offset:
            return Batch()
        assert self._fd is not None
        data = os.pread(self._fd, FILE_CHUNK, self.offset)
        end = data.rfind(b"\n") + 1
        malformed = 0
        if end == 0 and len(data) == FILE_CHUNK:  # one absurd line: skip it whole
            end, malformed = len(data), 1
        self.offset += end
        before = self._parser.malformed
        text = data[:end].decode("utf-8", "replace")
        records = list(self._parser.parse(text.split("\n")))
        more = self.offset < st.st_size and len(data) == FILE_CHUNK
        return Batch(records, self._parser.malformed - before + malformed, 0, more)

    def _reopen(self, inode: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        if self.inode != inode:
            self.offset = 0  # rotated (or the cursor named another file)
        self.inode = inode

    def state(self) -> dict[str, Any]:
        return {"inode": self.inode, "offset": self.offset}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class DmesgSource:
    """``dmesg --raw`` when /dev/kmsg cannot be read; records newer than the last timestamp."""

    kind = "dmesg"

    def __init__(self, cmd: Sequence[str] = ("dmesg", "--raw"), last_ts_us: int = -1) -> None:
        self.cmd = list(cmd)
        self.last_ts_us = last_ts_us
        self._seq = 0  # dmesg prints no sequence numbers; healer numbers what it reads

    def read(self) -> Batch:
        try:
            out = subprocess.run(
                self.cmd, capture_output=True, text=True, errors="replace", timeout=5, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise CollectorError("kmsg", f"{' '.join(self.cmd)} failed: {exc}") from exc
        batch = Batch()
        for line in out.splitlines():
            try:
                prio, ts_us, message = parse_dmesg_raw(line)
            except ParseError:
                batch.malformed += 1
                continue
            if ts_us <= self.last_ts_us:
                continue
            self.last_ts_us = ts_us
            self._seq += 1
            batch.records.append(
                KmsgRecord.model_construct(
                    seq=self._seq, priority=prio & 7, facility=prio >> 3, ts_us=ts_us,
                    message=message, wall_ts=None, fields=(),
                )
            )
        return batch

    def state(self) -> dict[str, Any]:
        return {"ts_us": self.last_ts_us}

    def close(self) -> None:
        pass
