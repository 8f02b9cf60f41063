"""The composition root of diagnosis: Settings + Telemetry -> a ``ChainDiagnoser``.

langchain and openai are imported here, and only when an LLM endpoint is configured.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from pathlib import Path

from healer.diagnose.breaker import CircuitBreaker
from healer.diagnose.cache import DiagnosisCache, KVStore
from healer.diagnose.chain import ChainDiagnoser
from healer.diagnose.client import ChatTransport, LLMClient, RetryPolicy
from healer.diagnose.llm import LLMDiagnoser
from healer.diagnose.playbook import PlaybookDiagnoser
from healer.settings import Settings
from healer.telemetry import Telemetry


def build_llm(settings: Settings, telemetry: Telemetry, *, kv: KVStore | None = None,
              transport: ChatTransport | None = None, retry: RetryPolicy | None = None,
              breaker: CircuitBreaker | None = None, max_steps: int = 6,
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
        client, DiagnosisCache(durable=kv),
        max_tokens_per_incident=settings.llm_max_tokens_per_incident,
        hostnames=sorted(hostnames), extra_names=extra_names, max_steps=max_steps,
        passwd_path=passwd_path,
    )


def build_diagnoser(settings: Settings, telemetry: Telemetry, *, kv: KVStore | None = None,
                    transport: ChatTransport | None = None,
                    retry: RetryPolicy | None = None) -> ChainDiagnoser:
    """The daemon's diagnoser: playbooks always; the LLM when ``settings.llm_enabled``."""
    llm = build_llm(settings, telemetry, kv=kv, transport=transport, retry=retry) \
        if settings.llm_enabled else None
    return ChainDiagnoser(PlaybookDiagnoser(), llm)
