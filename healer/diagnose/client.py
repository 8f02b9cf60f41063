"""The LLM edge: a chat transport (langchain-openai ``ChatOpenAI``), wrapped with retries,
backoff, a circuit breaker, a concurrency cap and telemetry.

langchain and openai are imported only inside ``LangChainTransport``, so a host
without an LLM configured never loads them.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from healer.diagnose.breaker import CircuitBreaker
from healer.errors import CircuitOpen, LLMError
from healer.telemetry import Telemetry

log = logging.getLogger("healer.diagnose.llm")

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ChatReply:
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    refusal: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0


class LLMCallError(LLMError):
    """One failed request; ``reason`` labels the failure metric."""

    def __init__(self, reason: str, problem: str, retryable: bool) -> None:
        super().__init__(f"llm {reason}: {problem}")
        self.reason = reason
        self.retryable = retryable


class ChatTransport(Protocol):
    """One chat-completions request; raises ``LLMCallError``."""

    def complete(self, messages: Sequence[ChatMessage],
                 tools: Sequence[dict[str, Any]] | None, max_tokens: int) -> ChatReply: ...


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter (AWS architecture blog), bounded attempts."""

    attempts: int = 3
    base_seconds: float = 0.5
    max_seconds: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return float(self.rng.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt)))


class LLMClient:
    """Calls the transport under the breaker, the semaphore and the retry policy."""

    def __init__(self, transport: ChatTransport, telemetry: Telemetry,
                 breaker: CircuitBreaker, max_concurrency: int = 2,
                 retry: RetryPolicy | None = None, acquire_timeout: float = 60.0,
                 model: str = "") -> None:
        self.transport = transport
        self.telemetry = telemetry
        self.breaker = breaker
        self.retry = retry or RetryPolicy()
        self.model = model
        self._sem = threading.BoundedSemaphore(max_concurrency)
        self._acquire_timeout = acquire_timeout

    def complete(self, messages: Sequence[ChatMessage],
                 tools: Sequence[dict[str, Any]] | None = None,
                 max_tokens: int = 1500) -> ChatReply:
        """One answer, retrying transient failures; raises ``CircuitOpen`` or ``LLMCallError``."""
        last: LLMCallError | None = None
        for attempt in range(self.retry.attempts):
            if attempt:
                self.retry.sleep(self.retry.delay(attempt))
            if not self.breaker.allow():
                self.telemetry.llm_failures.labels("circuit_open").inc()
                raise CircuitOpen("llm circuit breaker is open; no call made")
            try:
                return self._one(messages, tools, max_tokens)
            except LLMCallError as exc:
                last = exc
                self.telemetry.llm_failures.labels(exc.reason).inc()
                self.breaker.record_failure()
                log.warning("llm call failed: reason=%s attempt=%d retryable=%s",
                            exc.reason, attempt + 1, exc.retryable)
                if not exc.retryable:
                    break
        assert last is not None
        raise last

    def _one(self, messages: Sequence[ChatMessage], tools: Sequence[dict[str, Any]] | None,
             max_tokens: int) -> ChatReply:
        if not self._sem.acquire(timeout=self._acquire_timeout):
            raise LLMCallError("busy", "concurrency cap reached", retryable=True)
        started = time.perf_counter()
        try:
            self.telemetry.llm_calls.inc()
            reply = self.transport.complete(messages, tools, max_tokens)
        finally:
            self._sem.release()
            self.telemetry.llm_latency.observe(time.perf_counter() - started)
        self.breaker.record_success()
        self.telemetry.llm_tokens.labels("in").inc(reply.tokens_in)
        self.telemetry.llm_tokens.labels("out").inc(reply.tokens_out)
        return reply
