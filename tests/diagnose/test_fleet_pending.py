"""The control plane's LLM job on a real PostgreSQL and a real (local) LLM over HTTP: one
call per fleet fingerprint, however many hosts report it and however many replicas run
the job at once; each host then gets the answer as a ``diagnosis`` event."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from healer.control.answers import deliver_answers
from healer.diagnose.client import RetryPolicy
from healer.diagnose.factory import build_llm
from healer.diagnose.pending import LLMLimits, diagnose_pending
from healer.settings import Settings
from healer.store.credentials import new_token
from healer.store.engine import CONTROL_PLANE, open_engine
from healer.store.fleet_types import Report, ReportBatch
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from playbooks.loader import load_library
from tests.diagnose.conftest import FIXTURES
from tests.llm_server import LLMServer, Reply
from tests.store.conftest import FakeClock

LIBRARY = load_library()
TEMPLATES = ("mlx<N>_core <PCI>: mlx<N>_cmd_check:<N>:(pid <N>): CREATE_MKEY(<HEX>) failed",
             "nvme nvme<N>: I/O <N> QID <N> timeout, aborting")


@pytest.fixture
def replicas(pg_head_url: str) -> Iterator[list[Repository]]:
    clock = FakeClock()
    engines = [open_engine(pg_head_url, pool_size=3, max_overflow=0) for _ in range(2)]
    yield [Repository(e, CONTROL_PLANE, clock=clock) for e in engines]
    for e in engines:
        e.dispose()


def report(repo: Repository, host: str, playbook: str, scope: str, subject: str,
           fingerprint: str) -> None:
    at = (repo.now() - timedelta(minutes=1)).isoformat()
    repo.add_host(host, new_token())
    repo.store_reports(ReportBatch(host_id=host, reports=[Report.model_validate({
        "seq": 1, "kind": "incident", "at": at, "incident": {
            "id": 3, "playbook": playbook, "scope": scope, "subject": subject,
            "status": "open", "first_seen": at, "last_seen": at,
            "evidence": {"kmsg": [subject.replace("<N>", "1")]},
            "fleet_fingerprint": fingerprint}})]))


def test_one_llm_call_per_fleet_fingerprint_across_hosts_and_replicas(
        llm_server: LLMServer, settings: Settings, replicas: list[Repository]) -> None:
    # Six hosts share two templates; three more have cpu-contention, each in its own
    # cgroup (three incident fingerprints, one fleet fingerprint: "cpu-contention|cgroup").
    hosts = {f"gpu-{i}": f"unclassified|{TEMPLATES[i % 2]}" for i in range(6)}
    for i, (host, fingerprint) in enumerate(hosts.items()):
        report(replicas[0], host, "unclassified", "host", TEMPLATES[i % 2], fingerprint)
    for name in ("a", "b", "c"):
        hosts[f"web-{name}"] = "cpu-contention|cgroup"
        report(replicas[0], f"web-{name}", "cpu-contention", f"cgroup:/{name}.service", "",
               "cpu-contention|cgroup")
    distinct = set(hosts.values())
    llm_server.push(*[Reply.slow(0.5)] * len(distinct))  # the replicas overlap
    patient = settings.model_copy(update={"llm_timeout_seconds": 10.0})
    start = threading.Barrier(2)
    runs: list[Any] = []

    def replica(repo: Repository) -> None:
        llm = build_llm(patient, Telemetry(), retry=RetryPolicy(attempts=1, sleep=lambda s: 0),
                        passwd_path=FIXTURES / "passwd", max_steps=0)
        start.wait()
        for _ in range(3):  # the job runs every few seconds; the busy ones come back
            runs.append(diagnose_pending(repo, llm, LIBRARY, limits=LLMLimits(), fleet=True))

    threads = [threading.Thread(target=replica, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(llm_server.requests) == len(distinct) == 3  # fingerprints, not hosts
    assert sum(r.asked for r in runs) == len(distinct)  # the rest came from the cache
    assert deliver_answers(replicas[1]) == len(hosts)
    for host, fingerprint in hosts.items():
        [event] = replicas[0].events_after(host, 0)
        assert event.payload["type"] == "diagnosis" and event.payload["incident_id"] == 3
        assert event.payload["fleet_fingerprint"] == fingerprint
