"""Slack's v0 request signature, checked on every ``/slack/interactions`` request.

``X-Slack-Signature: v0=<hex>`` with hex = HMAC-SHA256 of
``"v0:" + X-Slack-Request-Timestamp + ":" + raw body`` keyed with the app's signing secret
(https://api.slack.com/authentication/verifying-requests-from-slack). What healer sends
(the generic webhook's signature) lives with the sender, in healer.notify.signing.
"""

from __future__ import annotations

import hashlib
import hmac

MAX_SKEW_SECONDS = 300.0  # Slack's documented replay window: five minutes


class BadSignature(Exception):
    """A signature or timestamp did not verify; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack would send for ``body``."""
    message = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_slack(
    secret: str, timestamp: str | None, body: bytes, signature: str | None, *, now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> None:
    """Check a Slack request signature (v0) and its freshness; raises BadSignature."""
    if not timestamp or not signature:
        raise BadSignature("missing signature headers")
    try:
        ts = int(timestamp)
    except ValueError:
        raise BadSignature("malformed timestamp") from None
    if abs(now - ts) > max_skew:
        raise BadSignature("stale timestamp")
    if not hmac.compare_digest(slack_signature(secret, timestamp, body), signature):
        raise BadSignature("signature mismatch")
