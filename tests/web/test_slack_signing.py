"""Slack's v0 signature (web.slack_signing): good verifies; bad, stale or missing do not."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from web.slack_signing import BadSignature, slack_signature, verify_slack

NOW = 1_760_000_000.0


def test_slack_signature_matches_slacks_documented_scheme() -> None:
    # https://api.slack.com/authentication/verifying-requests-from-slack: v0=HMAC("v0:ts:body")
    body = b"payload=%7B%7D"
    want = hmac.new(b"slacksecret", b"v0:1760000000:" + body, hashlib.sha256).hexdigest()
    assert slack_signature("slacksecret", "1760000000", body) == f"v0={want}"


def test_slack_verification_good_bad_stale_missing() -> None:
    body = b"payload=%7B%7D"
    good = slack_signature("slacksecret", "1760000000", body)
    verify_slack("slacksecret", "1760000000", body, good, now=NOW + 299)
    with pytest.raises(BadSignature, match="mismatch"):
        verify_slack("slacksecret", "1760000000", body, "v0=" + "0" * 64, now=NOW)
    with pytest.raises(BadSignature, match="stale"):
        verify_slack("slacksecret", "1760000000", body, good, now=NOW + 301)
    with pytest.raises(BadSignature, match="missing"):
        verify_slack("slacksecret", None, body, good, now=NOW)
