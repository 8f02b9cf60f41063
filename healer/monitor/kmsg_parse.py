"""Pure parsing of kernel-log records (Documentation/ABI/testing/dev-kmsg).

A record is ``prio,seq,ts_us,flags[,more...];message`` followed by zero or more
continuation lines that start with one space and hold ``KEY=value`` (the device's
SUBSYSTEM=, DEVICE= dictionary). ``prio`` encodes facility and level as syslog does:
facility = prio >> 3, level = prio & 7. The kernel already escapes unprintable
bytes in the message as ``\\xNN``; healer keeps the text exactly as read (it is
untrusted data and is never interpreted).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from healer.errors import ParseError
from healer.models import KmsgRecord

MAX_MESSAGE = 4096  # the kernel caps records near 1 KiB; recorded files might not


def parse_header(line: str, path: str = "kmsg") -> KmsgRecord:
    """One ``prio,seq,ts,flags;message`` line (no continuation lines) -> KmsgRecord."""
    prefix, sep, message = line.partition(";")
    fields = prefix.split(",")
    if not sep or len(fields) < 3:
        raise ParseError(path, f"not a kmsg record: {line[:80]!r}")
    try:
        prio, seq, ts_us = int(fields[0]), int(fields[1]), int(fields[2])
    except ValueError as exc:
        raise ParseError(path, f"bad kmsg prefix: {prefix[:80]!r}") from exc
    if prio < 0 or seq < 0 or ts_us < 0:
        raise ParseError(path, f"negative kmsg field: {prefix[:80]!r}")
    return KmsgRecord.model_construct(
        seq=seq,
        priority=prio & 7,
        facility=prio >> 3,
        ts_us=ts_us,
        message=message.rstrip("\n")[:MAX_MESSAGE],
        wall_ts=None,
        fields=(),
    )


def _field(line: str) -> tuple[str, str] | None:
    key, sep, value = line[1:].partition("=")
    return (key, value[:MAX_MESSAGE]) if sep and key else None


def parse_record(chunk: str, path: str = "/dev/kmsg") -> KmsgRecord:
    """One read(2) of /dev/kmsg: the header line plus its continuation lines."""
    header, *rest = chunk.rstrip("\n").split("\n")
    rec = parse_header(header, path)
    fields = tuple(f for f in (_field(c) for c in rest if c.startswith(" ")) if f is not None)
    return rec.model_copy(update={"fields": fields}) if fields else rec


class LineParser:
    """Groups a stream of lines into records; counts lines that fit nowhere."""

    def __init__(self, path: str = "kmsg") -> None:
        self.path = path
        self.malformed = 0

    def parse(self, lines: Iterable[str]) -> Iterator[KmsgRecord]:
        """Yield records; a continuation line with no record before it is malformed."""
        pending: KmsgRecord | None = None
        fields: list[tuple[str, str]] = []
        for line in lines:
            if line.startswith(" "):
                field = _field(line) if pending is not None else None
                if field is None:
                    self.malformed += 1
                else:
                    fields.append(field)
                continue
            if pending is not None:
                yield _with_fields(pending, fields)
                pending, fields = None, []
            if not line:
                continue
            try:
                pending = parse_header(line, self.path)
            except ParseError:
                self.malformed += 1
        if pending is not None:
            yield _with_fields(pending, fields)


def _with_fields(rec: KmsgRecord, fields: list[tuple[str, str]]) -> KmsgRecord:
    if not fields:
        return rec
    return KmsgRecord.model_construct(**{**rec.__dict__, "fields": tuple(fields)})


def parse_dmesg_raw(line: str, path: str = "dmesg") -> tuple[int, int, str]:
    """``<prio>[ sec.usec] message`` as ``dmesg --raw`` prints -> (prio, ts_us, message)."""
    try:
        if not line.startswith("<"):
            raise ValueError("no <prio>")
        close = line.index(">")
        prio = int(line[1:close])
        lb, rb = line.index("[", close), line.index("]", close)
        sec, _, usec = line[lb + 1 : rb].strip().partition(".")
        ts_us = int(sec) * 1_000_000 + int((usec or "0").ljust(6, "0")[:6])
    except ValueError as exc:
        raise ParseError(path, f"bad dmesg line: {line[:80]!r}") from exc
    return prio, ts_us, line[rb + 1 :].removeprefix(" ")
