"""How much does healer cost the host it watches? Prints one table.

Rows:
  1. the median cost of one full sample without the process scan (target <= 1 ms);
  2. the daemon (``healer run``, scratch state dir, free port, 1 Hz) CPU % of one core
     and RSS over ``--seconds`` (targets <= 1 % and <= 80 MB);
  3. Debian's prometheus-node-exporter scraped once a second over the same time
     (installed with apt-get if missing), and the healer/node_exporter CPU ratio.

CPU % is the median over 10 s windows of utime+stime deltas from
/proc/PID/stat; RSS is the median of /proc/PID/status VmRSS readings.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


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
        settings = load_settings(state_dir=Path(d))
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


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return True
        except OSError:
            time.sleep(0.5)
    return False


def measure(pid: int, seconds: float, scrape_url: str | None) -> tuple[float, float]:
    """(median CPU % of one core, median RSS bytes) over ``seconds``, 10 s windows."""
    window = min(10.0, seconds)
    cpu, rss = [], []
    end = time.monotonic() + seconds
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    while time.monotonic() < end:
        if scrape_url:
            urllib.request.urlopen(scrape_url, timeout=5).read()
        time.sleep(1.0)
        rss.append(rss_bytes(pid))
        if time.monotonic() - t0 >= window:
            t1, c1 = time.monotonic(), cpu_ticks(pid)
            cpu.append(100.0 * (c1 - c0) / TICK / (t1 - t0))
            t0, c0 = t1, c1
    return statistics.median(cpu or [0.0]), statistics.median(rss or [0])


def run_healer(seconds: float) -> tuple[float, float] | str:
    exe = shutil.which("healer", path=str(ROOT / ".venv/bin")) or shutil.which("healer")
    if exe is None:
        return "healer not installed"
    if subprocess.run([exe, "run", "--help"], capture_output=True).returncode != 0:
        return "`healer run` not available yet"
    port = free_port()
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "HEALER_STATE_DIR": state, "HEALER_MODE": "observe"}
        log = Path(state) / "run.log"
        with log.open("w") as out:
            proc = subprocess.Popen([exe, "run", "--port", str(port)], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            if not wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc):
                last = (log.read_text().strip().splitlines() or ["no output"])[-1]
                return f"`healer run` did not answer /healthz: {last[:120]}"
            time.sleep(5)  # past start-up (migrations, first process scan)
            return measure(proc.pid, seconds, None)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def node_exporter_binary() -> str | None:
    exe = shutil.which("prometheus-node-exporter")
    if exe is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "prometheus-node-exporter"],
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       capture_output=True)
        exe = shutil.which("prometheus-node-exporter")
    return exe


def run_node_exporter(seconds: float) -> tuple[float, float] | str:
    exe = node_exporter_binary()
    if exe is None:
        return "prometheus-node-exporter missing (apt-get install prometheus-node-exporter)"
    port = free_port()
    proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        if not wait_http(url):
            return "node_exporter did not answer"
        return measure(proc.pid, seconds, url)
    finally:
        proc.terminate()
        proc.wait(20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measurement time per daemon")
    ap.add_argument("--samples", type=int, default=1000, help="samples for the cost median")
    args = ap.parse_args()

    rows: list[tuple[str, str, str]] = []
    cost = sample_cost(args.samples)
    rows.append(("one sample, no process scan (median)", f"{cost * 1e3:.3f} ms", "<= 1 ms"))
    healer = run_healer(args.seconds)
    node = run_node_exporter(args.seconds)
    for label, res in (("healer run", healer), ("node_exporter, scraped 1/s", node)):
        if isinstance(res, str):
            rows.append((f"{label}: CPU / RSS", "skipped", res))
        else:
            rows.append((f"{label}: CPU of one core (median)", f"{res[0]:.2f} %",
                         "<= 1 %" if label == "healer run" else ""))
            rows.append((f"{label}: RSS (median)", f"{res[1] / 2**20:.1f} MB",
                         "<= 80 MB" if label == "healer run" else ""))
    if not isinstance(healer, str) and not isinstance(node, str):
        ratio = healer[0] / node[0] if node[0] > 0 else float("inf")
        rows.append(("CPU ratio healer / node_exporter", f"{ratio:.2f}x", ""))
    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'value':>12}  target/note")
    print("-" * (w + 30))
    for name, value, note in rows:
        print(f"{name:<{w}}  {value:>12}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
