"""Helpers the workloads share: textfiles, process names, dying with the parent."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import time
from pathlib import Path

PR_SET_NAME = 15  # prctl(2)
PR_SET_PDEATHSIG = 1


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def set_comm(name: str) -> None:
    """Set /proc/self/comm (the kernel keeps 15 bytes; it is what OOM reports print)."""
    _libc().prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def die_with_parent() -> None:
    """SIGKILL this process when its parent exits (prctl PR_SET_PDEATHSIG)."""
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def write_prom(directory: Path, name: str, metrics: dict[str, float]) -> None:
    """Write ``<name>.prom`` atomically, as node_exporter's textfile collector expects."""
    body = "".join(f"# TYPE {k.split('{')[0]} gauge\n{k} {v:.6g}\n" for k, v in metrics.items())
    tmp = directory / f".{name}.prom.tmp"
    tmp.write_text(body)
    os.replace(tmp, directory / f"{name}.prom")


def read_prom(path: Path) -> dict[str, float]:
    """Parse a textfile back into ``{name: value}`` (the runner's own probe)."""
    out: dict[str, float] = {}
    try:
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                out[k] = float(v)
    except (OSError, ValueError):
        pass
    return out


def append_event(path: Path, **fields: object) -> None:
    """Append one JSON line with a wall-clock timestamp."""
    with open(path, "a") as fh:
        fh.write(json.dumps({"ts": time.time(), **fields}) + "\n")
