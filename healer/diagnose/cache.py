"""Where the LLM path keeps its state: namespaces of the store's ``kv`` table, and keys.

Answers are cached by (fingerprint, model, prompt version), not by a hash of the
evidence: an unclassified incident's fingerprint is its message template, so the thousand
variants of one driver error, and every later incident with that template, cost one call.
"""

from __future__ import annotations

import hashlib

CACHE = "llm-diagnosis"  # key -> the validated answer (LLMResult JSON)
CLAIM = "llm-claim"  # key -> the holder of the one call in flight for that fingerprint
ATTEMPT = "llm-attempt"  # key -> failed tries so far, tokens spent, when to try again
BUDGET = "llm-budget"  # slot-<n> -> held for an hour by the call that took it


def cache_key(fingerprint: str, model: str, prompt_version: str) -> str:
    """The key of one fingerprint's answer from one model under one prompt version."""
    text = f"{model}\x00{prompt_version}\x00{fingerprint}"
    return hashlib.sha256(text.encode()).hexdigest()
