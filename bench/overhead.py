"""How much does healer cost the host it watches? Prints one table.

``healer run`` is two processes: the root agent (the loop) and the unprivileged side it
starts (``healer serve``: dashboard, API, LLM client, notifications). Both are measured
side by side with Debian's prometheus-node-exporter, in the same run, over the same
seconds; node_exporter is scraped once a second, as Prometheus would at 1 Hz. No client
talks to healer's dashboard during the run.

Rows:
  1. the median cost of one full sample without the process scan (target <= 1 ms);
  2. the agent's CPU % of one core and RSS (targets: CPU <= node_exporter's, RSS <= 60 MB);
  3. the unprivileged side's CPU % and RSS (target: CPU <= 0.3 % with no client);
  4. node_exporter's CPU % and RSS, and the agent/node_exporter CPU ratio (target <= 1.0).

CPU % is the median over 10 s windows of utime+stime deltas from /proc/PID/stat; RSS is
the median of /proc/PID/status VmRSS readings, once a second. Each figure is the median
over ``--runs`` runs (default 3). Default settings, 1 Hz, a scratch state directory.
Run as root on the machine being measured: ``.venv/bin/python bench/overhead.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
WINDOW_SECONDS = 10.0
WARMUP_SECONDS = 5.0  # past start-up: migrations, the first process scan, serve's imports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_cost(n: int) -> float:
    """Median seconds of Monitor.sample() with every collector except the process scan."""
    sys.path.insert(0, str(ROOT))
    from healer.monitor.registry import Monitor, build_collectors
    from healer.settings import load_settings

    with tempfile.TemporaryDirectory() as d:
        settings = load_settings(state_dir=Path(d), agent_dir=Path(d) / "agent")
        monitor = Monitor(build_collectors(settings, processes=False))
        monitor.sample()
        costs = []
        for _ in range(n):
            t0 = time.perf_counter()
            monitor.sample()
            costs.append(time.perf_counter() - t0)
        monitor.close()
    return statistics.median(costs)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def uid_of(pid: int) -> int:
    return Path(f"/proc/{pid}").stat().st_uid


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        kids.extend(int(k) for k in text)
    return kids


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return True
        except OSError:
            time.sleep(0.5)
    return False


def node_exporter_binary() -> str | None:
    exe = shutil.which("prometheus-node-exporter")
    if exe is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "prometheus-node-exporter"],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       capture_output=True)
        exe = shutil.which("prometheus-node-exporter")
    return exe


class Skipped(Exception):
    """A run could not measure; the message says why."""


@contextmanager
def node_exporter() -> Iterator[tuple[int, str]]:
    exe = node_exporter_binary()
    if exe is None:
        raise Skipped("prometheus-node-exporter missing (apt-get install prometheus-node-exporter)")
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        if not wait_http(url, proc=proc):
            raise Skipped("node_exporter did not answer")
        yield proc.pid, url
    finally:
        proc.terminate()
        proc.wait(20)


@contextmanager
def healer_run() -> Iterator[tuple[int, int]]:
    """Start ``healer run`` on a scratch state directory; yield (agent pid, serve pid)."""
    exe = shutil.which("healer", path=str(ROOT / ".venv/bin")) or shutil.which("healer")
    if exe is None:
        raise Skipped("healer not installed (make install)")
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        os.chmod(scratch, 0o711)  # the service user must reach its state directory
        state = Path(scratch) / "state"
        env = {**os.environ, "HEALER_STATE_DIR": str(state),
               "HEALER_AGENT_DIR": str(Path(scratch) / "agent"), "HEALER_MODE": "observe"}
        log = Path(scratch) / "run.log"
        with log.open("w") as out:
            proc = subprocess.Popen([exe, "run", "--port", str(port)], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            if not wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc):
                last = (log.read_text().strip().splitlines() or ["no output"])[-1]
                raise Skipped(f"`healer run` did not answer /healthz: {last[:120]}")
            kids = children(proc.pid)
            if len(kids) != 1:
                raise Skipped(f"expected one unprivileged child of the agent, found {kids}")
            yield proc.pid, kids[0]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


Figures = dict[str, tuple[float, float]]  # name -> (CPU % of one core, RSS bytes)


def measure(pids: dict[str, int], seconds: float, scrape_url: str) -> Figures:
    """Per name: (median CPU % of one core over 10 s windows, median RSS bytes)."""
    cpu: dict[str, list[float]] = {name: [] for name in pids}
    rss: dict[str, list[int]] = {name: [] for name in pids}
    end = time.monotonic() + seconds
    t0 = time.monotonic()
    c0 = {name: cpu_ticks(pid) for name, pid in pids.items()}
    while time.monotonic() < end:
        urllib.request.urlopen(scrape_url, timeout=5).read()
        time.sleep(1.0)
        for name, pid in pids.items():
            rss[name].append(rss_bytes(pid))
        if time.monotonic() - t0 >= WINDOW_SECONDS:
            t1 = time.monotonic()
            c1 = {name: cpu_ticks(pid) for name, pid in pids.items()}
            for name in pids:
                cpu[name].append(100.0 * (c1[name] - c0[name]) / TICK / (t1 - t0))
            t0, c0 = t1, c1
    return {name: (statistics.median(cpu[name] or [0.0]), statistics.median(rss[name] or [0]))
            for name in pids}


def one_run(seconds: float) -> tuple[Figures, int]:
    with node_exporter() as (node_pid, url), healer_run() as (agent, serve):
        time.sleep(WARMUP_SECONDS)
        result = measure({"agent": agent, "serve": serve, "node_exporter": node_pid},
                         seconds, url)
        return result, uid_of(serve)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run")
    ap.add_argument("--runs", type=int, default=3, help="runs; each figure is their median")
    ap.add_argument("--samples", type=int, default=1000, help="samples for the cost median")
    args = ap.parse_args()

    rows: list[tuple[str, str, str]] = []
    cost = sample_cost(args.samples)
    rows.append(("one sample, no process scan (median)", f"{cost * 1e3:.3f} ms", "<= 1 ms"))
    runs: list[Figures] = []
    serve_uids: set[int] = set()
    skipped = ""
    for _ in range(args.runs):
        try:
            result, uid = one_run(args.seconds)
        except Skipped as exc:
            skipped = str(exc)
            break
        runs.append(result)
        serve_uids.add(uid)
    if skipped:
        rows.append(("agent, serve, node_exporter", "skipped", skipped))
    else:
        def med(name: str, i: int) -> float:
            return statistics.median(r[name][i] for r in runs)

        targets = {"agent": ("<= node_exporter", "<= 60 MB"), "serve": ("<= 0.3 %", ""),
                   "node_exporter": ("scraped 1/s", "")}
        labels = {"agent": "agent (healer run, root)", "serve": "unprivileged side (healer serve)",
                  "node_exporter": "node_exporter"}
        for name in ("agent", "serve", "node_exporter"):
            rows.append((f"{labels[name]}: CPU of one core", f"{med(name, 0):.2f} %",
                         targets[name][0]))
            rows.append((f"{labels[name]}: RSS", f"{med(name, 1) / 2**20:.1f} MB",
                         targets[name][1]))
        node_cpu = med("node_exporter", 0)
        ratio = med("agent", 0) / node_cpu if node_cpu > 0 else float("inf")
        rows.append(("CPU ratio agent / node_exporter", f"{ratio:.2f}x", "<= 1.0"))
        rows.append(("uid listening on the dashboard port",
                     ",".join(str(u) for u in sorted(serve_uids)), "not 0 when run as root"))
    w = max(len(r[0]) for r in rows)
    print(f"medians of {len(runs)} run(s) x {args.seconds:.0f} s, side by side")
    print(f"{'measure':<{w}}  {'value':>12}  target/note")
    print("-" * (w + 30))
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:>12}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
