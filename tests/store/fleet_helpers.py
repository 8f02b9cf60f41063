"""A small fleet in a real PostgreSQL database: hosts that heartbeat and report one open
incident each, and lease requests for one remedy."""

from __future__ import annotations

from datetime import datetime, timedelta

from guardrails.fleet import Remedy
from healer.store.credentials import new_token
from healer.store.fleet_types import Heartbeat, LeaseAsk, Report, ReportBatch
from healer.store.repository import Repository

REMEDY = Remedy(playbook="listen-backlog-too-small", kind="sysctl_write",
                target="net.core.somaxconn")
FP = "listen-backlog-too-small|host"


def beat(repo: Repository, host: str, labels: dict[str, str] | None = None,
         seq: int = 0) -> bool:
    """One heartbeat of ``host``; returns whether it is paused."""
    return repo.heartbeat(Heartbeat(host_id=host, agent_version="0.1.0", mode="auto",
                                    labels=labels or {}, sent_at=repo.now(),
                                    last_report_seq=seq))


def incident_report(seq: int, local_id: int, first_seen: datetime, *, status: str = "open",
                    playbook: str = "listen-backlog-too-small") -> Report:
    return Report.model_validate({
        "seq": seq, "kind": "incident", "at": first_seen.isoformat(),
        "incident": {"id": local_id, "playbook": playbook, "scope": "host", "status": status,
                     "first_seen": first_seen.isoformat(),
                     "last_seen": first_seen.isoformat()}})


def add_fleet(repo: Repository, n: int, *, opened_ago: float = 600.0,
              sick: int | None = None, prefix: str = "h") -> list[str]:
    """``n`` hosts that heartbeat; the first ``sick`` (default all) report the incident
    opened ``opened_ago`` seconds ago (by default before the systemic window: no storm)."""
    hosts = [f"{prefix}{i}" for i in range(n)]
    first = repo.now() - timedelta(seconds=opened_ago)
    for i, host in enumerate(hosts):
        repo.add_host(host, new_token())
        beat(repo, host)
        if i < (n if sick is None else sick):
            repo.store_reports(ReportBatch(host_id=host,
                                           reports=[incident_report(1, 1, first)]))
    return hosts


def ask(host: str, remedy: Remedy = REMEDY, fingerprint: str = FP,
        purpose: str = "apply") -> LeaseAsk:
    return LeaseAsk.model_validate({"host_id": host, "incident_fingerprint": fingerprint,
                                    "remedy": remedy.model_dump(), "purpose": purpose})
