"""What the LLM must answer, and how its raw proposals become catalog actions.

The answer is parsed into ``LLMDiagnosisOut``; each raw proposal is validated with
``guardrails.actions.parse_action``. Anything that is not a catalog action is dropped
and counted as unsafe: the model proposed something healer could never apply.

A root cause is a known id, ``unknown``, or, where no playbook fits, the model's own short
slug (``mlx5-firmware-command-error``): lowercase letters, digits and single hyphens, at
most ``MAX_SLUG`` characters. The text is the model's, so the check is a length bound
first, then one RE2 match (linear time).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from guardrails import linear
from guardrails.actions import parse_action
from healer.diagnose.redact import Redactor
from healer.models import Proposal

MAX_PROPOSALS = 16
MIN_SLUG, MAX_SLUG = 3, 48
_FENCE_RE = linear.compile(r"(?s)^\s*```(?:json)?\s*(.*?)\s*```\s*$")  # LLM output: RE2
_SLUG_RE = linear.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")  # LLM output: RE2, fullmatch
# Names of incidents, not causes: an answer naming one says nothing.
_NOT_CAUSES = frozenset({"unclassified", "none", "unknown-error"})


def check_root_cause(value: str) -> str:
    """``value`` when it is a well-formed root cause (a known id, a slug, or ``unknown``)."""
    if not MIN_SLUG <= len(value) <= MAX_SLUG:
        raise ValueError(f"root_cause must be {MIN_SLUG} to {MAX_SLUG} characters long")
    if _SLUG_RE.fullmatch(value) is None:
        raise ValueError("root_cause must be a known id, 'unknown', or a short slug of "
                         "lowercase letters, digits and single hyphens")
    if value in _NOT_CAUSES:
        raise ValueError(f"{value!r} is not a root cause: name the cause or answer 'unknown'")
    return value


RootCause = Annotated[str, AfterValidator(check_root_cause)]


class LLMDiagnosisOut(BaseModel):
    """The JSON object the system prompt asks for."""

    model_config = ConfigDict(extra="ignore")

    root_cause: RootCause
    explanation: str = Field(default="", max_length=4000)
    confidence: float = Field(ge=0.0, le=1.0)
    proposals: list[Any] = Field(default_factory=list)


class LLMResult(BaseModel):
    """A validated LLM answer, unredacted: what the store keeps (the cache and the answer
    records). Whoever reads one back validates it again: the root cause's form, and every
    proposal as a catalog action."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root_cause: RootCause
    explanation: str = Field(max_length=4000)
    confidence: float = Field(ge=0.0, le=1.0)
    proposals: tuple[Proposal, ...] = Field(default=(), max_length=MAX_PROPOSALS)
    unsafe: int = Field(default=0, ge=0)
    dropped: int = Field(default=0, ge=0)


def parse_answer(content: str) -> LLMDiagnosisOut:
    """Parse the reply text; raises ``ValueError`` with a short, model-readable message."""
    m = _FENCE_RE.match(content)
    text = m.group(1) if m else content.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("the answer must be a JSON object")
    try:
        return LLMDiagnosisOut.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in exc.errors(include_url=False, include_input=False)[:3]]
        raise ValueError("; ".join(problems)[:400]) from None


def _split(item: dict[str, Any]) -> tuple[Any, str, str]:
    action = item.get("action")
    if not isinstance(action, dict):
        action = {k: v for k, v in item.items() if k not in ("rationale", "expected_effect")}
    return action, str(item.get("rationale", ""))[:500], str(item.get("expected_effect", ""))[:300]


def validate_proposals(raw: Sequence[Any], redactor: Redactor,
                       limit: int = MAX_PROPOSALS) -> tuple[list[Proposal], int, int]:
    """(catalog proposals tagged ``llm``, unsafe count, dropped-over-limit count)."""
    valid: list[Proposal] = []
    seen: set[str] = set()
    unsafe = dropped = 0
    for i, item in enumerate(raw):
        if len(valid) >= limit:
            return valid, unsafe, dropped + len(raw) - i
        if not isinstance(item, dict):
            unsafe += 1
            continue
        action_raw, rationale, effect = _split(item)
        try:
            # Placeholders go back to real values (a cgroup path) before validation,
            # so what is checked is exactly what would be applied.
            action = parse_action(redactor.unredact_obj(action_raw))
        except (ValidationError, ValueError, TypeError):
            unsafe += 1
            continue
        if action.target in seen:
            dropped += 1
            continue
        seen.add(action.target)
        valid.append(Proposal(
            action=action, provenance="llm", rationale=redactor.unredact(rationale),
            expected_effect=redactor.unredact(effect), in_playbook=False,
        ))
    return valid, unsafe, dropped
