"""Request signatures of what healer sends: the generic webhook's HMAC header.

Generic webhook (what healer sends): ``X-Healer-Timestamp: <unix seconds>`` and
``X-Healer-Signature: sha256=<hex>`` where hex is HMAC-SHA256 keyed with the webhook secret
over ``<timestamp> + "." + <raw body bytes>``. Receivers recompute it, compare in constant
time and reject timestamps more than 5 minutes from their clock (replay).
Slack's signatures on what healer receives are checked by the web (web.slack_signing).
"""

from __future__ import annotations

import hashlib
import hmac

MAX_SKEW_SECONDS = 300.0  # the replay window receivers apply: five minutes


class BadSignature(Exception):
    """A signature or timestamp did not verify; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Healer-Signature`` header value for ``body`` sent at ``timestamp``."""
    return "sha256=" + _hmac_hex(secret, timestamp.encode() + b"." + body)


def _check_timestamp(timestamp: str, now: float, max_skew: float) -> None:
    try:
        ts = int(timestamp)
    except ValueError:
        raise BadSignature("malformed timestamp") from None
    if abs(now - ts) > max_skew:
        raise BadSignature("stale timestamp")


def verify_webhook(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> None:
    """Check a generic-webhook signature (for receivers and tests); raises BadSignature."""
    _check_timestamp(timestamp, now, max_skew)
    if not hmac.compare_digest(sign_webhook(secret, timestamp, body), signature):
        raise BadSignature("signature mismatch")
