"""Prometheus textfile collector: ``*.prom`` files in a directory become metrics.

As node_exporter's textfile collector, applications (or cron jobs) write the
exposition format into a directory, atomically (write a temp file, rename).

Naming: each sample becomes ``textfile.<sample_name>`` lowercased; its labels are
folded in, sorted by label name, as ``.<label>_<value>`` with every character of
the value outside ``[a-z0-9]`` replaced by ``_``. Examples::

    app_latency_seconds 0.25                    -> textfile.app_latency_seconds
    app_latency_seconds{quantile="0.99"} 0.8    -> textfile.app_latency_seconds.quantile_0_99
    http_requests_total{code="500",path="/"} 3  -> textfile.http_requests_total.code_500.path__

NaN samples are skipped. A file that does not parse is skipped whole and counted
in ``textfile.errors_total``; the other files still count. Files are re-parsed only
when their mtime or size changes.

healer runs as root and anyone who can write the directory chooses what is in it, so
only regular files are read, opened with ``O_NOFOLLOW`` (a symlink to ``/etc/shadow`` is
refused, not followed), each capped at ``MAX_FILE_BYTES``, and a parse error is logged by
file name and line number only: never the file's content.
"""

from __future__ import annotations

import logging
import math
import os
import re
import stat
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from healer.models import SamplePart

log = logging.getLogger(__name__)
_BAD = re.compile(r"[^a-z0-9]")
MAX_METRICS_PER_FILE = 1000  # keeps a runaway exporter from bloating the window
MAX_FILE_BYTES = 1 << 20  # 1 MiB: far above a real textfile, far below a memory problem


class TextfileRefused(Exception):
    """A file that is not read (not regular, too large, not UTF-8, does not parse); the
    message names the problem and never quotes the file."""


def read_textfile(path: str) -> str:
    """The text of a regular file, without following a symlink, at most MAX_FILE_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TextfileRefused(f"cannot open ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise TextfileRefused("not a regular file")
        data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise TextfileRefused(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TextfileRefused(f"not UTF-8 (byte {exc.start})") from None


def textfile_name(name: str, labels: dict[str, str]) -> str:
    """The dotted metric name for one exposition sample (see the module docstring)."""
    parts = [f"textfile.{name.lower()}"]
    for key in sorted(labels):
        parts.append(f"{key.lower()}_{_BAD.sub('_', labels[key].lower())}")
    return ".".join(parts)


def parse_textfile(text: str) -> dict[str, float]:
    """Exposition text -> dotted metrics; raises TextfileRefused when it does not parse."""
    out: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if math.isnan(s.value):
                    continue
                out[textfile_name(s.name, dict(s.labels))] = float(s.value)
                if len(out) > MAX_METRICS_PER_FILE:
                    raise TextfileRefused(f"more than {MAX_METRICS_PER_FILE} samples")
    except (ValueError, TypeError, IndexError) as exc:
        # The parser's message quotes the offending line; keep only its type.
        raise TextfileRefused(f"not the exposition format ({type(exc).__name__})") from None
    return out


class TextfileCollector:
    """Reads every ``*.prom`` file under ``directory`` each cycle (cached by mtime and size)."""

    name = "textfile"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, tuple[tuple[int, int], dict[str, float] | None]] = {}
        self.errors_total = 0

    def collect(self) -> SamplePart:
        metrics: dict[str, float] = {}
        seen: set[str] = set()
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            entries = []
        files = 0
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.endswith(".prom"):
                continue  # a .prom that is not a regular file is refused (and counted) below
            seen.add(entry.path)
            parsed = self._parse(entry)
            if parsed is not None:
                files += 1
                metrics.update(parsed)
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        metrics["textfile.files"] = float(files)
        metrics["textfile.errors_total"] = float(self.errors_total)
        return SamplePart(metrics=metrics)

    def _parse(self, entry: os.DirEntry[str]) -> dict[str, float] | None:
        stamp = (-1, -1)
        parsed: dict[str, float] | None = None
        try:
            st = entry.stat(follow_symlinks=False)
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(entry.path)
            if cached is not None and cached[0] == stamp:
                return cached[1]  # unchanged: same metrics, or the same bad file counted once
            parsed = parse_textfile(read_textfile(entry.path))
        except (OSError, TextfileRefused) as exc:
            self.errors_total += 1
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            log.warning("textfile skipped: file=%s reason=%s", entry.name, reason)
        self._cache[entry.path] = (stamp, parsed)
        return parsed
