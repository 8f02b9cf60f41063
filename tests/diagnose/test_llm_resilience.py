"""Circuit breaker, concurrency cap and the adversarial model, over real HTTP.

The cache, the one call in flight per fingerprint and the hourly budget are the store's:
tests/diagnose/test_pending.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from guardrails import CheckContext, check, load_policy
from healer.diagnose.base import DiagnoseContext
from healer.diagnose.breaker import CircuitBreaker
from healer.diagnose.client import ChatMessage, ChatReply, LLMClient, RetryPolicy
from healer.diagnose.tools import ToolBox
from healer.settings import Settings
from healer.telemetry import Telemetry
from tests.diagnose.conftest import FIXTURES, make_incident
from tests.diagnose.test_llm_http import _llm, _metric
from tests.llm_server import LLMServer


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_circuit_breaker_opens_and_no_request_reaches_the_server_while_open(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    clock = FakeClock()
    tel = Telemetry()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=60, clock=clock, telemetry=tel)
    llm, _ = _llm(settings, no_sleep, breaker=breaker)
    llm.client.telemetry = tel
    llm_server.reset(mode="error")
    first = llm.diagnose_detailed(make_incident(incident_id=1), DiagnoseContext())
    assert first.failure == "server" and len(llm_server.requests) == 3
    assert breaker.state == "open" and _metric(tel, "healer_llm_circuit_open") == 1
    second = llm.diagnose_detailed(make_incident(incident_id=2), DiagnoseContext())
    assert second.failure == "circuit_open" and second.diagnosis.root_cause == "unknown"
    assert len(llm_server.requests) == 3  # nothing reached the server
    assert llm.status()["state"] == "open"
    clock.t += 61  # cool-down over: one trial call, which succeeds and closes the circuit
    llm_server.reset(mode="correct")
    third = llm.diagnose_detailed(make_incident(incident_id=3), DiagnoseContext())
    assert third.diagnosis.root_cause == "cgroup-memory-limit-too-low"
    assert len(llm_server.requests) == 1
    assert breaker.state == "closed" and _metric(tel, "healer_llm_circuit_open") == 0


class _SlowTransport:
    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.lock = threading.Lock()

    def complete(self, messages: Sequence[ChatMessage], tools: Any, max_tokens: int) -> ChatReply:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.05)
        with self.lock:
            self.active -= 1
        return ChatReply(content="{}")


def test_concurrency_cap_bounds_requests_in_flight() -> None:
    transport = _SlowTransport()
    client = LLMClient(transport, Telemetry(), CircuitBreaker(), max_concurrency=2)
    threads = [threading.Thread(target=client.complete, args=([ChatMessage("user", "x")],))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert transport.peak == 2


def test_backoff_is_exponential_and_bounded() -> None:
    retry = RetryPolicy(base_seconds=0.5, max_seconds=4.0)
    retry.rng.seed(1)
    delays = [retry.delay(n) for n in range(1, 8) for _ in range(20)]
    assert max(delays) <= 4.0 and min(delays) >= 0.0
    assert max(retry.delay(1) for _ in range(50)) <= 1.0


def test_adversarial_model_gets_nothing_applied(
        llm_server: LLMServer, settings: Settings, no_sleep: RetryPolicy) -> None:
    llm, _ = _llm(settings, no_sleep)
    llm_server.reset(mode="adversarial")
    tools = ToolBox(procfs_root=FIXTURES / "proc", sysfs_root=FIXTURES / "sys")
    report = llm.diagnose_detailed(make_incident(), DiagnoseContext(tools=tools))
    # Traversal, an unknown write tool, a backreference: all refused before any read.
    assert tools.calls == []
    tool_out = [m["content"] for m in llm_server.requests[1]["messages"] if m["role"] == "tool"]
    assert len(tool_out) == 7 and all("error" in t for t in tool_out)
    assert "shadow" not in "".join(t for t in tool_out if "root:" in t)
    proposals = report.diagnosis.proposals
    assert len(proposals) <= 16  # thousands proposed, a bounded few kept
    assert report.unsafe_proposals >= 7  # shell, traversal, injection in fields: dropped
    assert all(p.provenance == "llm" and not p.in_playbook for p in proposals)
    policy = load_policy()
    now = datetime.now(UTC)
    verdicts = [check(p.action, CheckContext(now=now, provenance="llm", in_playbook=False,
                                             current="16"), policy).verdict
                for p in proposals]
    assert "allow" not in verdicts
    protected = [p for p in proposals if getattr(p.action, "key", "").startswith(
        ("kernel.panic", "kernel.sysrq", "vm.panic_on_oom"))]
    assert protected and all(
        check(p.action, CheckContext(now=now, provenance="llm"), policy).verdict == "deny"
        for p in protected)
