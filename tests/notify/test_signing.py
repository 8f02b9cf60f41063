"""Webhook signatures: good verifies; wrong secret, changed body and stale stamps do not."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from healer.notify.signing import BadSignature, sign_webhook, verify_webhook

BODY = b'{"event":"approval_needed","id":"webhook|approval_needed|action:7"}'
NOW = 1_760_000_000.0


def test_webhook_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    want = hmac.new(b"s3cret", b"1760000000." + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook("s3cret", "1760000000", BODY) == f"sha256={want}"


def test_webhook_signature_verifies() -> None:
    verify_webhook("s3cret", "1760000000", BODY, sign_webhook("s3cret", "1760000000", BODY),
                   now=NOW + 10)


@pytest.mark.parametrize(("secret", "ts", "body", "now", "reason"), [
    ("other", "1760000000", BODY, NOW, "signature mismatch"),
    ("s3cret", "1760000000", BODY + b" ", NOW, "signature mismatch"),
    ("s3cret", "1760000000", BODY, NOW + 301, "stale timestamp"),
    ("s3cret", "soon", BODY, NOW, "malformed timestamp"),
])
def test_webhook_signature_rejects(secret: str, ts: str, body: bytes, now: float,
                                   reason: str) -> None:
    good = sign_webhook("s3cret", "1760000000", BODY)
    with pytest.raises(BadSignature) as err:
        verify_webhook(secret, ts, body, good, now=now)
    assert err.value.reason == reason
