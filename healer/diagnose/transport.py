"""``ChatTransport`` over langchain-openai's ``ChatOpenAI`` (Chat Completions API).

Imported lazily by ``healer.diagnose.factory`` only when an LLM endpoint is configured.
Retries are ours (``LLMClient``), so the openai client's own retries are off.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import openai
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from healer.diagnose.client import ChatMessage, ChatReply, LLMCallError, ToolCall
from healer.settings import Settings


def _to_langchain(m: ChatMessage) -> BaseMessage:
    if m.role == "system":
        return SystemMessage(content=m.content)
    if m.role == "user":
        return HumanMessage(content=m.content)
    if m.role == "tool":
        return ToolMessage(content=m.content, tool_call_id=m.tool_call_id or "")
    calls = [{"name": c.name, "args": c.args, "id": c.id, "type": "tool_call"}
             for c in m.tool_calls]
    return AIMessage(content=m.content, tool_calls=calls)


def _from_langchain(msg: BaseMessage) -> ChatReply:
    content = msg.content if isinstance(msg.content, str) else json.dumps(msg.content)
    calls = [ToolCall(id=c.get("id") or f"call-{i}", name=c["name"], args=dict(c["args"]))
             for i, c in enumerate(getattr(msg, "tool_calls", []) or [])]
    # Arguments that were not JSON still count as a tool call; the tool rejects them.
    for i, c in enumerate(getattr(msg, "invalid_tool_calls", []) or []):
        calls.append(ToolCall(id=c.get("id") or f"bad-{i}", name=c.get("name") or "",
                              args={"__invalid__": str(c.get("args"))[:200]}))
    usage = getattr(msg, "usage_metadata", None) or {}
    refusal = msg.additional_kwargs.get("refusal")
    return ChatReply(content=content or "", tool_calls=tuple(calls),
                     refusal=str(refusal) if refusal else None,
                     tokens_in=int(usage.get("input_tokens", 0)),
                     tokens_out=int(usage.get("output_tokens", 0)))


def _translate(exc: Exception) -> LLMCallError:
    # APITimeoutError subclasses APIConnectionError: test it first.
    if isinstance(exc, openai.APITimeoutError):
        return LLMCallError("timeout", "request timed out", retryable=True)
    if isinstance(exc, openai.RateLimitError):
        return LLMCallError("rate_limit", "HTTP 429", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        retry = exc.status_code >= 500
        return LLMCallError("server" if retry else f"http_{exc.status_code}",
                            f"HTTP {exc.status_code}", retryable=retry)
    if isinstance(exc, openai.APIConnectionError):
        return LLMCallError("connection", "cannot reach the endpoint", retryable=True)
    return LLMCallError("error", type(exc).__name__, retryable=False)


class LangChainTransport:
    """One ``ChatOpenAI`` per transport, built from Settings on first use."""

    def __init__(self, settings: Settings, json_mode: bool = True) -> None:
        self._settings = settings
        self._json_mode = json_mode
        self._model: ChatOpenAI | None = None

    def _chat(self) -> ChatOpenAI:
        if self._model is None:
            s = self._settings
            # Local servers (llama.cpp, Ollama, vLLM) ignore the key, but the openai
            # client refuses to start without one.
            key = s.llm_api_key or SecretStr("not-needed")
            self._model = ChatOpenAI(
                model=s.llm_model or "default", base_url=s.llm_base_url, api_key=key,
                timeout=s.llm_timeout_seconds, max_retries=0, temperature=0,
                use_responses_api=False,
            )
        return self._model

    def complete(self, messages: Sequence[ChatMessage],
                 tools: Sequence[dict[str, Any]] | None, max_tokens: int) -> ChatReply:
        """One request; openai errors become ``LLMCallError``."""
        kwargs: dict[str, Any] = {"max_tokens": max_tokens}
        runnable: Any = self._chat()
        if tools:
            # The openai SDK's parse path (taken whenever response_format is set) only
            # accepts strict tools, so JSON mode is asked for on tool-free turns only;
            # the answer is validated by us either way.
            runnable = runnable.bind_tools(list(tools))
        elif self._json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            msg = runnable.invoke([_to_langchain(m) for m in messages], **kwargs)
        except Exception as exc:  # openai, httpx or langchain: all are the endpoint's failure
            raise _translate(exc) from exc
        return _from_langchain(msg)
