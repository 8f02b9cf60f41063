"""``/metrics`` passes ``promtool check metrics``: counters are counters, gauges have no
``_total``, over a real reading of this host plus a GPU."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from healer.cli.snapshot import take_snapshot
from healer.monitor.registry import Monitor, build_collectors
from healer.settings import Settings
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from tests.tools import require_tool
from tests.web.helpers import SILENCE_CHECK, FakeWindow
from web import create_app


def _metrics_text(settings: Settings, repo: Repository, window: FakeWindow) -> str:
    telemetry = Telemetry()
    monitor = Monitor(build_collectors(settings.model_copy(update={"kmsg_source": "none"}),
                                       kmsg_persist=False, processes=False))
    try:
        sample, _ = take_snapshot(monitor)
    finally:
        monitor.close()
    gpu = window.latest()
    assert gpu is not None
    telemetry.host.update(dict(sample.metrics) | {k: v for k, v in gpu.metrics.items()
                                                  if k.startswith("gpu.")})
    telemetry.decisions.labels("allow").inc()
    app = create_app(settings, repo=repo, telemetry=telemetry, silence_check=SILENCE_CHECK)
    with TestClient(app) as client:
        resp = client.get("/metrics")
    assert resp.status_code == 200
    return resp.text


def test_host_counters_are_prometheus_counters(settings: Settings, repo: Repository,
                                               window: FakeWindow) -> None:
    text = _metrics_text(settings, repo, window)
    assert "# TYPE healer_host_cpu_context_switches_total counter" in text
    assert "healer_host_cpu_context_switches_total " in text
    assert "# TYPE healer_host_mem_available_bytes gauge" in text
    assert "gauge\nhealer_host_" in text and "_total gauge" not in text


def test_promtool_check_metrics_is_clean(settings: Settings, repo: Repository,
                                         window: FakeWindow, tmp_path: Path) -> None:
    promtool = require_tool("promtool", "Debian's prometheus package (make system-deps)")
    text = _metrics_text(settings, repo, window)
    done = subprocess.run([str(promtool), "check", "metrics"], input=text, text=True,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), (
        done.stdout + done.stderr)[:3000]
