"""The shipped deploy/prometheus/ files: promtool and amtool accept them, the rule unit
tests pass, every alert is complete and tested, and the rules read metrics healer exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest

from healer.monitor.registry import Monitor, build_collectors
from healer.settings import Settings
from healer.telemetry import Telemetry
from tests.prom import DEPLOY, shipped
from tests.tools import require_tool

PROC = Path(__file__).resolve().parents[1] / "fixtures" / "proc-psi"
RULE_TESTS = sorted((DEPLOY / "tests").glob("*.yml"))
METRIC = re.compile(r"\bhealer_[a-z0-9_]+")  # over our own rule files only


def _alerts() -> list[dict[str, Any]]:
    return [rule for group in shipped("healer-rules.yml")["groups"] for rule in group["rules"]]


def _run(tool: str, hint: str, *args: str) -> str:
    out = subprocess.run([str(require_tool(tool, hint)), *args], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_promtool_accepts_the_scrape_config_and_its_rules_without_warnings() -> None:
    text = _run("promtool", "Debian's prometheus", "check", "config",
                str(DEPLOY / "prometheus.yml"))
    assert "WARNING" not in text and "SUCCESS: 1 rule files found" in text


def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    text = _run("promtool", "Debian's prometheus", "test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in text and "FAILED" not in text


def test_amtool_accepts_the_alertmanager_config() -> None:
    text = _run("amtool", "Debian's prometheus-alertmanager", "check-config",
                str(DEPLOY / "alertmanager.yml"))
    assert "SUCCESS" in text and "1 receivers" in text


def test_every_alert_waits_names_severity_and_host_and_explains_itself() -> None:
    alerts = _alerts()
    assert len(alerts) >= 9
    for rule in alerts:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["labels"]["host"] == "{{ $labels.host }}", rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_every_alert_has_a_unit_test_that_sees_it_fire() -> None:
    fired = {case["alertname"] for path in RULE_TESTS
             for test in yaml.safe_load(path.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    assert {rule["alert"] for rule in _alerts()} <= fired


def test_the_scrape_job_derives_host_from_the_target_unless_it_names_one() -> None:
    job = shipped("prometheus.yml")["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    (relabel,) = job["relabel_configs"]
    assert relabel["target_label"] == "host"
    assert job["file_sd_configs"][0]["files"] == ["healer-targets/*.yml"]
    assert (DEPLOY / "healer-targets" / "hosts.yml").exists()


def test_alertmanager_posts_every_alert_to_the_control_plane_with_a_bearer_token() -> None:
    config = shipped("alertmanager.yml")
    assert config["route"]["receiver"] == "healer-control-plane"
    assert "routes" not in config["route"]  # nothing is diverted elsewhere
    (receiver,) = config["receivers"]
    (hook,) = receiver["webhook_configs"]
    assert hook["url"].startswith("https://")
    assert hook["url"].endswith("/api/v1/alerts/alertmanager")
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every metric and family name healer's /metrics shows after one sample of a real
    host's /proc, as recorded in tests/fixtures/proc-psi."""
    settings = Settings(procfs_root=PROC, sysfs_root=PROC / "sys", kmsg_source="none",
                        gpu_backend="none", state_dir=tmp_path_factory.mktemp("state"))
    telemetry = Telemetry()
    monitor = Monitor(build_collectors(settings, telemetry, processes=False, cgroups=False))
    telemetry.host.update(monitor.sample().metrics)
    text = (generate_latest(telemetry.serve_registry)
            + generate_latest(telemetry.agent_registry)).decode()
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
               if line and not line.startswith("#")}
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    return samples | families


def test_rules_read_only_metrics_healer_exports(exported: set[str]) -> None:
    used = set(METRIC.findall("\n".join(rule["expr"] for rule in _alerts())))
    assert {"healer_host_psi_memory_full_avg60", "healer_actions_total"} <= used
    assert used <= exported, sorted(used - exported)
