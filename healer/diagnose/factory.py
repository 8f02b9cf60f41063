"""The composition root of diagnosis: Settings + Telemetry -> the LLM diagnoser, the chain
``healer eval`` measures, and the LLM job's limits.

langchain and openai are imported here, and only when an LLM endpoint is configured.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from healer.diagnose.breaker import CircuitBreaker
from healer.diagnose.chain import ChainDiagnoser
from healer.diagnose.client import ChatTransport, LLMClient, RetryPolicy
from healer.diagnose.llm import LLMDiagnoser
from healer.diagnose.pending import LLMLimits
from healer.diagnose.playbook import PlaybookDiagnoser
from healer.settings import Settings
from healer.telemetry import Telemetry

MAX_STEPS = 6  # read-only tool rounds per conversation


def build_llm(settings: Settings, telemetry: Telemetry, *,
              transport: ChatTransport | None = None, retry: RetryPolicy | None = None,
              breaker: CircuitBreaker | None = None, max_steps: int = MAX_STEPS,
              extra_names: Sequence[str] = (),
              passwd_path: Path = Path("/etc/passwd")) -> LLMDiagnoser:
    """An ``LLMDiagnoser`` for the configured endpoint (langchain loaded here)."""
    if transport is None:
        from healer.diagnose.transport import LangChainTransport  # lazy: pulls in langchain

        transport = LangChainTransport(settings)
    client = LLMClient(
        transport, telemetry,
        breaker or CircuitBreaker(failure_threshold=5, cooldown_seconds=60.0, telemetry=telemetry),
        max_concurrency=settings.llm_max_concurrency, retry=retry,
        acquire_timeout=settings.llm_timeout_seconds * 2,
        model=settings.llm_model or settings.llm_base_url or "default",
    )
    hostnames = {settings.host_id, socket.gethostname()}
    return LLMDiagnoser(
        client, max_tokens_per_incident=settings.llm_max_tokens_per_incident,
        hostnames=sorted(hostnames), extra_names=extra_names, max_steps=max_steps,
        passwd_path=passwd_path,
    )


def llm_limits(settings: Settings, retry: RetryPolicy | None = None,
               max_steps: int = MAX_STEPS) -> LLMLimits:
    """The LLM job's limits; a lease outlives the longest conversation its settings allow
    (every request timing out on every retry, with the longest backoff between)."""
    retry = retry or RetryPolicy()
    per_request = retry.attempts * (settings.llm_timeout_seconds + retry.max_seconds)
    return LLMLimits(diagnoses_per_hour=settings.llm_diagnoses_per_hour,
                     claim_seconds=(max_steps + 3) * per_request)


def build_diagnoser(settings: Settings, telemetry: Telemetry, *,
                    transport: ChatTransport | None = None,
                    retry: RetryPolicy | None = None) -> ChainDiagnoser:
    """Playbooks always; the LLM beside them when ``settings.llm_enabled`` (``healer eval``)."""
    llm = build_llm(settings, telemetry, transport=transport, retry=retry) \
        if settings.llm_enabled else None
    return ChainDiagnoser(PlaybookDiagnoser(), llm)
