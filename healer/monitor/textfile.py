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
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from healer.models import SamplePart

log = logging.getLogger(__name__)
_BAD = re.compile(r"[^a-z0-9]")
MAX_METRICS_PER_FILE = 1000  # keeps a runaway exporter from bloating the window


def textfile_name(name: str, labels: dict[str, str]) -> str:
    """The dotted metric name for one exposition sample (see the module docstring)."""
    parts = [f"textfile.{name.lower()}"]
    for key in sorted(labels):
        parts.append(f"{key.lower()}_{_BAD.sub('_', labels[key].lower())}")
    return ".".join(parts)


def parse_textfile(text: str) -> dict[str, float]:
    """Exposition text -> dotted metrics; raises ValueError when the text does not parse."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if math.isnan(s.value):
                continue
            out[textfile_name(s.name, dict(s.labels))] = float(s.value)
            if len(out) > MAX_METRICS_PER_FILE:
                raise ValueError(f"more than {MAX_METRICS_PER_FILE} samples")
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
            if not entry.name.endswith(".prom") or not entry.is_file():
                continue
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
            st = entry.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(entry.path)
            if cached is not None and cached[0] == stamp:
                return cached[1]  # unchanged: same metrics, or the same bad file counted once
            with open(entry.path, encoding="utf-8") as fh:
                parsed = parse_textfile(fh.read())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            self.errors_total += 1
            log.warning("textfile skipped: file=%s error=%s", entry.path, str(exc)[:200])
        self._cache[entry.path] = (stamp, parsed)
        return parsed
