"""The LLM through the whole loop: detection (the unknown path included), the playbook's
diagnosis, the LLM job over the store, the root agent taking its answers up, the change
engine and the default policy in auto mode.

Real parts: the detector and the playbook library, the incident tracker, the SQLite journal,
the change engine and guard, the notifier's outbox, and the LLM over HTTP
(tests/llm_server.py). Only the host is faked: a kernel log the test writes and one sysctl.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from guardrails import load_policy
from guardrails.actions import Action, SysctlWrite
from guardrails.decision import Decision
from healer.act.base import ActuatorRegistry, require_allow, require_original
from healer.act.engine import ChangeEngine
from healer.act.persist import DropIn
from healer.detect import Detector, IncidentTracker, UnknownPath
from healer.diagnose.base import DiagnoseContext
from healer.diagnose.client import RetryPolicy
from healer.diagnose.factory import build_llm
from healer.diagnose.pending import LLMLimits, diagnose_pending
from healer.diagnose.playbook import PlaybookDiagnoser
from healer.models import ActionRecord, ActionState, Incident, KmsgRecord, Sample
from healer.notify.notifier import Notifier
from healer.pipeline import Pipeline
from healer.settings import Settings
from healer.store.engine import migrate, open_engine
from healer.store.repository import Repository
from healer.telemetry import Telemetry
from healer.window import MetricWindow
from playbooks.loader import load_library
from playbooks.noise import load_noise
from tests.act.conftest import Clock
from tests.detect.test_unknown import _drivers
from tests.diagnose.conftest import FIXTURES
from tests.llm_server import LLMServer, Reply

HOST = "node-a"
S = ActionState
BLOCK_RE = re.compile(r"<<<DATA id=(kmsg-\d+)>>>\n(.*?)\n<<<END DATA id=\1>>>", re.DOTALL)
ANSWERS = (  # what the LLM proposes for one incident, then for the other
    [{"action": {"kind": "sysctl_write", "scope": "host", "key": "net.core.somaxconn",
                 "value": "4096"}, "rationale": "more room for the driver"},
     {"action": {"kind": "notify", "message": "the NIC firmware needs an update"}},
     {"action": {"kind": "escalate", "message": "reseat the card"}}],
    [{"action": {"kind": "sysctl_write", "scope": "host", "key": "net.ipv4.tcp_max_syn_backlog",
                 "value": "4096"}},
     {"action": {"kind": "notify", "message": "update the VF driver"}}],
)
# One record per target: a notify already waiting is not proposed twice (ChangeEngine.propose).
TARGETS = {"sysctl_write:host:net.core.somaxconn", "sysctl_write:host:net.ipv4.tcp_max_syn_backlog",
           "notify:host:notify", "escalate:host:escalate"}


class KernelLog:
    """The monitor: each cycle's sample carries the next batch of kernel-log lines."""

    def __init__(self, clock: Clock, batches: list[list[str]], priority: int = 3) -> None:
        self.clock, self.batches, self.seq, self.priority = clock, batches, 0, priority

    def sample(self) -> Sample:
        lines = self.batches.pop(0) if self.batches else []
        records = []
        for line in lines:
            self.seq += 1
            records.append(KmsgRecord(seq=self.seq, priority=self.priority, ts_us=self.seq,
                                      message=line))
        return Sample(ts=self.clock.now.timestamp(), metrics={}, kmsg=tuple(records))


class Somaxconn:
    """The host's one sysctl: what an applied LLM proposal would change."""

    kinds = ("sysctl_write",)

    def __init__(self) -> None:
        self.value = "128"

    def read(self, action: Action) -> str | None:
        return self.value

    def in_action_units(self, action: Action, value: str) -> str:
        return value

    def facts(self, action: Action) -> dict[str, float]:
        return {}

    def apply(self, action: Action, decision: Decision) -> str:
        require_allow(action, decision)
        assert isinstance(action, SysctlWrite)
        self.value = action.value
        return self.value

    def restore(self, record: ActionRecord) -> str:
        self.value = require_original(record)
        return self.value


class InlinePool(ThreadPoolExecutor):
    """Runs submitted work on the cycle thread, so a test sees it in order."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


@pytest.fixture
def repo(tmp_path: Path, clock: Clock) -> Repository:
    engine = open_engine(f"sqlite:///{tmp_path / 'healer.db'}")
    migrate(engine)
    return Repository(engine, HOST, clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Loop:
    """The root agent's pipeline and, beside it, healer serve's LLM job (both processes)."""

    def __init__(self, pipeline: Pipeline, job: Callable[[], object] | None) -> None:
        self.pipeline, self.job = pipeline, job

    def cycle(self) -> None:
        self.pipeline.cycle()
        if self.job is not None:  # healer serve runs it every few seconds
            self.job()


def _pipeline(repo: Repository, clock: Clock, log: KernelLog, sysctl: Somaxconn, tmp: Path,
              settings: Settings | None) -> Loop:
    library = load_library()
    notifier = Notifier(Settings(state_dir=tmp, host_id=HOST), repo, channels=["log"],
                        clock=clock)
    engine = ChangeEngine(repo, ActuatorRegistry([sysctl]), load_policy(), mode="auto",
                          clock=clock, notifier=notifier, dropin=DropIn(tmp / "90.conf"),
                          root=True)

    def context_for(incident: Incident) -> DiagnoseContext:
        return DiagnoseContext(playbook=library.get(incident.playbook),
                               host={"kernel": "6.8.0-45-generic", "cpu.count": "64"})

    job = None
    if settings is not None:
        llm = build_llm(settings, Telemetry(), retry=RetryPolicy(sleep=lambda _s: None),
                        passwd_path=FIXTURES / "passwd")
        job = partial(diagnose_pending, repo, llm, library, limits=LLMLimits(),
                      context_for=context_for)
    return Loop(Pipeline(
        monitor=log,  # type: ignore[arg-type]
        window=MetricWindow(3600, 1.0),
        detector=Detector(library, unknown=UnknownPath(load_noise())),
        tracker=IncidentTracker(HOST, clock=lambda: clock.now.timestamp(), sink=repo),
        diagnoser=PlaybookDiagnoser(), context_for=context_for, engine=engine,
        notifier=notifier, repo=repo, library=library, telemetry=Telemetry(),
        pool=InlinePool(), take_llm_answers=job is not None), job)


def _drive(p: Loop, clock: Clock, cycles: int) -> None:
    for _ in range(cycles):
        clock.advance(1)
        p.cycle()


def _batches() -> tuple[list[str], list[list[str]]]:
    lines = _drivers(random.Random(11))  # 60 lines of each of two drivers, numbers varying
    return lines, [lines[i:i + 30] for i in range(0, len(lines), 30)]


def test_two_unknown_drivers_are_two_incidents_one_llm_call_each_and_nothing_applied(
        llm_server: LLMServer, repo: Repository, clock: Clock, tmp_path: Path) -> None:
    llm_server.push(*(Reply.answer("nic-firmware-command-failure", proposals, confidence=0.9,
                                   explanation="the firmware rejects the driver's commands")
                      for proposals in ANSWERS))
    settings = Settings(llm_base_url=llm_server.url, llm_model="scripted", host_id=HOST,
                        state_dir=tmp_path)
    lines, batches = _batches()
    sysctl = Somaxconn()
    p = _pipeline(repo, clock, KernelLog(clock, batches), sysctl, tmp_path, settings)
    _drive(p, clock, 60)

    incidents = repo.list_incidents()
    assert sorted((i.playbook, i.count) for i in incidents) == [("unclassified", 60)] * 2
    # At most one LLM diagnosis per fingerprint: none failed, so exactly one each.
    assert len(llm_server.requests) == 2
    for request in llm_server.requests:  # each kernel line reached the LLM as delimited data
        user = request["messages"][1]["content"]
        kmsg = [text for _, text in BLOCK_RE.findall(user)]
        assert kmsg and all(text in lines for text in kmsg)
        assert "6.8.0-45-generic" in user  # and the host's context
    assert {frozenset(BLOCK_RE.findall(r["messages"][1]["content"])[0][1].split()[:1])
            for r in llm_server.requests} == {frozenset({"mlx5_core"}), frozenset({"i40e"})}
    for incident in incidents:
        assert incident.diagnosis is not None
        assert (incident.diagnosis.root_cause, incident.diagnosis.source) == (
            "nic-firmware-command-failure", "llm")
    # Everything the LLM proposed waits for a person, in auto mode, under the default policy.
    records = repo.list_actions(limit=100)
    assert {r.action.target for r in records} == TARGETS and len(records) == len(TARGETS)
    assert all(r.provenance == "llm" for r in records)
    assert {r.state for r in records} == {S.AWAITING_APPROVAL}
    assert all("V-outside-playbook" in r.decision.rules for r in records)
    assert sysctl.value == "128"


def test_without_an_llm_an_unclassified_incident_notifies(
        repo: Repository, clock: Clock, tmp_path: Path) -> None:
    _, batches = _batches()
    p = _pipeline(repo, clock, KernelLog(clock, batches), Somaxconn(), tmp_path, None)
    _drive(p, clock, 10)
    incidents = repo.list_incidents()
    assert len(incidents) == 2
    for incident in incidents:
        assert incident.diagnosis is not None and incident.diagnosis.root_cause == "unknown"
    opened = [n for n in repo.due_notifications(clock.now) if n.event == "incident_opened"]
    assert sorted(n.payload["incident_id"] for n in opened) == sorted(
        i.id for i in incidents)
    assert all("unclassified [" in n.payload["text"] for n in opened)
    assert repo.list_actions(limit=10) == []


def test_a_sure_and_wrong_llm_leaves_a_playbooks_diagnosis_and_remedies_standing(
        llm_server: LLMServer, repo: Repository, clock: Clock, tmp_path: Path) -> None:
    llm_server.reset(mode="wrong")
    settings = Settings(llm_base_url=llm_server.url, llm_model="scripted", host_id=HOST,
                        state_dir=tmp_path)
    hung = "INFO: task kworker/0:1:123 blocked for more than 120 seconds."
    sysctl = Somaxconn()
    p = _pipeline(repo, clock, KernelLog(clock, [[hung]]), sysctl, tmp_path, settings)
    _drive(p, clock, 20)
    [incident] = repo.list_incidents()
    d = incident.diagnosis
    assert d is not None and (d.root_cause, d.source) == ("hung-task", "playbook")
    assert d.second_opinion is not None and not d.second_opinion.agrees
    assert d.second_opinion.root_cause != "hung-task" and d.second_opinion.confidence == 0.99
    assert len(llm_server.requests) == 1
    records = repo.list_actions(limit=100)
    mine = [r for r in records if r.provenance == "llm"]
    assert {r.action.kind for r in mine} == {"sysctl_write", "notify"}
    assert {r.state for r in mine} == {S.AWAITING_APPROVAL} and sysctl.value == "128"
    theirs = [r for r in records if r.provenance == "playbook"]
    assert theirs
    assert {p.action.target for p in d.proposals} == {r.action.target for r in theirs}
