"""The alert pipe end to end, on real servers: Prometheus scrapes a real ``healer run
--mode observe``, evaluates the shipped rules and a test rule over a metric healer
exports, and Alertmanager posts the alert, with the shipped receiver's bearer token (an
``ingest`` token made by ``healer token create``), to a real control plane (``healer
serve`` on PostgreSQL), where the incident appears once however often it is delivered,
and to a local HTTP receiver that records exactly what was sent."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from healer.store.credentials import hash_password, hash_token, new_token
from healer.store.engine import CONTROL_PLANE, open_engine
from healer.store.repository import Repository
from tests.prom import DEPLOY, Delivery, ServiceFactory, WebhookReceiver, free_port, shipped
from tests.serve import Replica, cli, replicas

WEBHOOK_PATH = "/api/v1/alerts/alertmanager"
DELIVERY_TIMEOUT_S = 45.0
TEST_RULES = {"groups": [{"name": "pipeline-test", "rules": [{
    "alert": "HealerPipelineTest",
    "expr": 'healer_host_mem_total_bytes{job="healer"} > 0',
    "for": "0s",
    "labels": {"severity": "info", "host": "{{ $labels.host }}"},
    "annotations": {"summary": "{{ $value }}"},
}]}]}


@pytest.fixture
def healer_agent(agent_tmp: Path) -> Iterator[str]:
    """A real ``healer run --mode observe`` confined to a scratch dir; yields host:port."""
    tmp_path = agent_tmp
    port = free_port()
    env = {**os.environ, "HEALER_STATE_DIR": str(tmp_path / "state"),
           "HEALER_PORT": str(port), "HEALER_KMSG_SOURCE": "none",
           "HEALER_GPU_BACKEND": "none", "HEALER_INTERVAL_SECONDS": "0.5"}
    with (tmp_path / "healer.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "healer.cli.main", "run", "--mode",
                                 "observe"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _alertmanager_config(receiver: WebhookReceiver, control_plane: str,
                         token_file: Path) -> dict[str, Any]:
    """The shipped config, its one hook pointed at the control plane, and a copy of it at
    the local receiver; the route kept, waits cut, and a repeat every two seconds (so the
    control plane gets the same alert again and again)."""
    config = shipped("alertmanager.yml")
    (hook,) = config["receivers"][0]["webhook_configs"]
    hook["url"] = control_plane + WEBHOOK_PATH
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    recorded = copy.deepcopy(hook)
    recorded["url"] = receiver.url + WEBHOOK_PATH
    config["receivers"][0]["webhook_configs"].append(recorded)
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="2s")
    return config


def _prometheus_config(agent: str, alertmanager: str, workdir: Path) -> dict[str, Any]:
    """The shipped config: the agent as its one file_sd target, 1 s intervals."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "targets.yml").write_text(yaml.safe_dump([{"targets": [agent]}]))
    (workdir / "test-rules.yml").write_text(yaml.safe_dump(TEST_RULES))
    config = shipped("prometheus.yml")
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "healer-rules.yml"), str(workdir / "test-rules.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    config["scrape_configs"][0]["file_sd_configs"] = [{"files": [str(workdir / "targets.yml")]}]
    return config


def _shipped_rule_health(prom: str) -> dict[str, str]:
    groups = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
    return {r["name"]: r["health"] for g in groups if g["file"].startswith(str(DEPLOY))
            for r in g["rules"]}


@pytest.fixture
def control_plane(pg_head_url: str) -> Iterator[tuple[Replica, str]]:
    """A real ``healer serve`` on PostgreSQL, and an ``ingest`` token from the CLI."""
    token = cli(pg_head_url, "token", "create", "alertmanager", "--role", "ingest")
    with replicas(pg_head_url, 1) as (replica,):
        yield replica, token.strip().splitlines()[-1]


def _incidents(replica: Replica, repo: Repository, host: str) -> list[dict[str, Any]]:
    viewer = new_token()
    user = repo.get_user("vera") or repo.add_user("vera", hash_password("long enough"),
                                                  "viewer")
    repo.add_token(f"vera-{viewer[-6:]}", hash_token(viewer), "viewer", user_id=user.id)
    found: list[dict[str, Any]] = httpx.get(
        f"{replica.url}/api/v1/incidents", params={"host": host}, timeout=10,
        headers={"Authorization": f"Bearer {viewer}"}).json()
    return found


def test_prometheus_scrapes_healer_and_alertmanager_posts_the_alert_to_the_control_plane(
        healer_agent: str, prometheus: ServiceFactory, alertmanager: ServiceFactory,
        webhook_receiver: WebhookReceiver, control_plane: tuple[Replica, str],
        pg_head_url: str, tmp_path: Path) -> None:
    replica, token = control_plane
    token_file = tmp_path / "ingest.token"
    token_file.write_text(token)
    am = alertmanager(_alertmanager_config(webhook_receiver, replica.url, token_file))
    prom = prometheus(_prometheus_config(healer_agent, am.address, tmp_path / "prom-cfg"))

    def fired(d: Delivery) -> bool:
        return any(a["labels"]["alertname"] == "HealerPipelineTest" for a in d.body["alerts"])

    delivery = webhook_receiver.wait_for(fired, DELIVERY_TIMEOUT_S)
    assert delivery.path == WEBHOOK_PATH
    assert delivery.headers["Authorization"] == f"Bearer {token}"
    assert delivery.body["version"] == "4" and delivery.body["status"] == "firing"
    (alert,) = [a for a in delivery.body["alerts"] if a["labels"]["alertname"]
                == "HealerPipelineTest"]
    # The scrape job's relabelling named the host after the target address.
    assert alert["labels"]["host"] == "127.0.0.1" and alert["labels"]["severity"] == "info"
    mem_total = next(int(line.split()[1]) * 1024 for line in
                     Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal:"))
    assert float(alert["annotations"]["summary"]) == mem_total  # this host's real reading

    # The control plane opened the incident once, though the alert keeps coming.
    webhook_receiver.wait_for(lambda d: fired(d) and d is not delivery, DELIVERY_TIMEOUT_S)
    engine = open_engine(pg_head_url, pool_size=1, max_overflow=0)
    try:
        repo = Repository(engine, CONTROL_PLANE)
        tests = [i for i in _incidents(replica, repo, "127.0.0.1")
                 if i["subject"].startswith("HealerPipelineTest{")]
        assert [(i["status"], i["playbook"]) for i in tests] == [("open", "unclassified")]
        assert 'severity="info"' in tests[0]["subject"] and "instance" not in tests[0]["subject"]
    finally:
        engine.dispose()

    # Every shipped rule evaluated cleanly against real healer series.
    deadline = time.monotonic() + 10
    while set((health := _shipped_rule_health(prom.url)).values()) != {"ok"}:
        assert time.monotonic() < deadline, health
        time.sleep(0.5)
    assert len(health) >= 9
