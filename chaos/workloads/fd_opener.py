"""Open files until it holds --want descriptors, retrying on EMFILE (fd exhaustion)."""

from __future__ import annotations

import argparse
import errno
import os
import time
from pathlib import Path

from chaos.workloads.common import write_prom


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--want", type=int, default=90)
    ap.add_argument("--textfile-dir", default=None)
    a = ap.parse_args()
    fds: list[int] = []
    failures = 0
    while True:
        while len(fds) < a.want:
            try:
                fds.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as exc:
                if exc.errno != errno.EMFILE:
                    raise
                failures += 1
                break
        if a.textfile_dir:
            write_prom(
                Path(a.textfile_dir),
                "chaos_fd_opener",
                {"chaos_fd_open": len(fds), "chaos_fd_emfile_total": failures},
            )
        time.sleep(0.2)


if __name__ == "__main__":
    main()
