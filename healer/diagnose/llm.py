"""The LLM diagnoser: redacted evidence in, a validated diagnosis (or "unknown") out.

One conversation per call: the system and user prompts, up to ``max_steps`` read-only
tool calls, one repair retry for an answer that does not validate, all within a token
budget. Any failure (transport, breaker, refusal, garbage, token budget) yields
``unknown`` with the reason in the report; it never raises for a bad model.

It keeps no state between calls: caching, the one call in flight per fingerprint, the
hourly budget and the tokens spent across retries live in the store
(``healer.diagnose.pending``), so any process can run it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from healer.diagnose.base import DiagnoseContext, DiagnosisReport, unknown
from healer.diagnose.client import ChatMessage, LLMClient, ToolCall
from healer.diagnose.evidence import EvidenceBundle, build_bundle, data_block
from healer.diagnose.redact import Redactor, read_passwd
from healer.diagnose.schema import LLMDiagnosisOut, LLMResult, parse_answer, validate_proposals
from healer.diagnose.templates import PROMPT_VERSION, render, system_prompt, user_prompt
from healer.diagnose.tools import ToolBox, openai_tool_specs
from healer.errors import LLMError
from healer.models import Diagnosis, Incident

log = logging.getLogger("healer.diagnose.llm")


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Conversation:
    """Per-diagnosis bookkeeping."""

    budget: int  # tokens this conversation may spend
    redactor: Redactor
    tools: ToolBox | None
    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    steps: int = 0
    messages: list[ChatMessage] = field(default_factory=list)


class LLMDiagnoser:
    """Asks an OpenAI-compatible endpoint, through ``LLMClient``, for a root cause."""

    def __init__(self, client: LLMClient, max_tokens_per_incident: int = 8000,
                 hostnames: Sequence[str] = (), passwd_path: Path = Path("/etc/passwd"),
                 extra_names: Sequence[str] = (), max_steps: int = 6,
                 reply_max_tokens: int = 1500) -> None:
        self.client = client
        self.max_tokens_per_incident = max_tokens_per_incident
        self.hostnames = tuple(hostnames) or (socket.gethostname(),)
        self.passwd_path = passwd_path
        self.extra_names = tuple(extra_names)
        self.max_steps = max_steps
        self.reply_max_tokens = reply_max_tokens

    @property
    def model(self) -> str:
        """The model answers are cached under."""
        return self.client.model

    @property
    def prompt_version(self) -> str:
        """The prompts' digest answers are cached under."""
        return PROMPT_VERSION

    def status(self) -> dict[str, object]:
        """The model and its breaker's state for the UI and the snapshot endpoint."""
        return {"model": self.client.model, **self.client.breaker.snapshot()}

    def diagnose(self, incident: Incident, ctx: DiagnoseContext) -> Diagnosis:
        """The LLM's diagnosis, or ``unknown`` when it gave none."""
        return self.diagnose_detailed(incident, ctx).diagnosis

    def diagnose_detailed(self, incident: Incident, ctx: DiagnoseContext,
                          token_budget: int | None = None) -> DiagnosisReport:
        """Diagnose with the cost and the dropped proposals accounted; ``token_budget``
        (default ``max_tokens_per_incident``) bounds what this conversation spends."""
        started = time.perf_counter()
        bundle = build_bundle(incident, ctx.host, ctx.related)
        budget = self.max_tokens_per_incident if token_budget is None else token_budget
        conv = self._start(incident, ctx, bundle, budget)
        try:
            out = self._converse(conv)
            result = self._result(out, conv)
        except _Stop as stop:
            return self._failed(conv, stop.reason, started)
        except LLMError as exc:
            return self._failed(conv, getattr(exc, "reason", "circuit_open"), started)
        report = _report(result)
        report.calls, report.tokens_in = conv.calls, conv.tokens_in
        report.tokens_out = conv.tokens_out
        report.latency_seconds = time.perf_counter() - started
        log.info("llm diagnosis: root_cause=%s confidence=%.2f proposals=%d unsafe=%d calls=%d",
                 result.root_cause, result.confidence, len(result.proposals), result.unsafe,
                 conv.calls)
        return report

    def _start(self, incident: Incident, ctx: DiagnoseContext, bundle: EvidenceBundle,
               budget: int) -> _Conversation:
        users = {p.username for p in incident.evidence.processes if p.username}
        if ctx.tools is not None:
            users |= {p.username for p in ctx.tools.processes() if p.username}
        redactor = Redactor(hostnames=(*self.hostnames, incident.host_id), users=users,
                            names=self.extra_names, passwd_text=read_passwd(self.passwd_path))
        conv = _Conversation(budget=budget, redactor=redactor, tools=ctx.tools)
        conv.messages = [
            ChatMessage("system", system_prompt(ctx.root_causes, ctx.tools is not None,
                                                self.max_steps)),
            ChatMessage("user", user_prompt(bundle, redactor)),
        ]
        return conv

    def _converse(self, conv: _Conversation) -> LLMDiagnosisOut:
        specs = openai_tool_specs() if conv.tools is not None else None
        repaired = False
        for _ in range(self.max_steps + 3):  # tool rounds + the answer + one repair
            remaining = conv.budget - conv.tokens_in - conv.tokens_out
            if remaining <= 0:
                raise _Stop("token_budget")
            tools = specs if conv.steps < self.max_steps else None
            reply = self.client.complete(conv.messages, tools,
                                         max_tokens=min(self.reply_max_tokens, remaining))
            self._account(conv, reply.tokens_in, reply.tokens_out)
            if reply.refusal:
                raise _Stop("refusal")
            if reply.tool_calls:
                self._run_tools(conv, reply.content, reply.tool_calls)
                continue
            try:
                return parse_answer(reply.content)
            except ValueError as exc:
                if repaired:
                    raise _Stop("invalid") from None
                repaired = True
                conv.messages.append(ChatMessage("assistant", reply.content[:4000]))
                conv.messages.append(ChatMessage("user", render("repair", error=str(exc))))
        raise _Stop("steps")

    def _run_tools(self, conv: _Conversation, content: str, calls: Sequence[ToolCall]) -> None:
        conv.messages.append(ChatMessage("assistant", content, tool_calls=tuple(calls)))
        for call in calls:
            if conv.tools is None or conv.steps >= self.max_steps:
                out = "error: the investigation step limit is reached"
            else:
                conv.steps += 1
                out = conv.tools.run(call.name, call.args)
                log.info("llm tool call: tool=%s step=%d", call.name[:64], conv.steps)
            block = data_block(f"tool-{conv.steps}-{len(conv.messages)}", conv.redactor.redact(out))
            conv.messages.append(ChatMessage("tool", block, tool_call_id=call.id))
        if conv.steps >= self.max_steps:
            limit = render("tool_limit", max_steps=self.max_steps)
            conv.messages.append(ChatMessage("user", limit))

    @staticmethod
    def _account(conv: _Conversation, tokens_in: int, tokens_out: int) -> None:
        conv.calls += 1
        conv.tokens_in += tokens_in
        conv.tokens_out += tokens_out

    def _result(self, out: LLMDiagnosisOut, conv: _Conversation) -> LLMResult:
        proposals, unsafe, dropped = validate_proposals(out.proposals, conv.redactor)
        if unsafe or dropped:
            log.warning("llm proposals dropped: unsafe=%d over_limit=%d", unsafe, dropped)
        return LLMResult(root_cause=out.root_cause,
                         explanation=conv.redactor.unredact(out.explanation),
                         confidence=out.confidence, proposals=tuple(proposals),
                         unsafe=unsafe, dropped=dropped)

    def _failed(self, conv: _Conversation, reason: str, started: float) -> DiagnosisReport:
        if reason in ("refusal", "invalid", "token_budget", "steps"):
            self.client.telemetry.llm_failures.labels(reason).inc()
        log.warning("llm diagnosis failed: reason=%s calls=%d", reason, conv.calls)
        return DiagnosisReport(
            diagnosis=unknown(f"LLM gave no diagnosis ({reason})", "llm"), llm_used=True,
            calls=conv.calls, tokens_in=conv.tokens_in, tokens_out=conv.tokens_out,
            latency_seconds=time.perf_counter() - started, failure=reason)


def _report(result: LLMResult) -> DiagnosisReport:
    diagnosis = Diagnosis(root_cause=result.root_cause, explanation=result.explanation,
                          confidence=result.confidence, source="llm", proposals=result.proposals)
    return DiagnosisReport(diagnosis=diagnosis, llm_used=True, unsafe_proposals=result.unsafe,
                           result=result)
