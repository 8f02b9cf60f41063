"""Build Slack interaction requests the way Slack signs them."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from web.slack_signing import slack_signature


def interaction(action_id: int, slack_user: str, verb: str = "approve") -> bytes:
    """A block_actions form body as Slack posts it."""
    payload = {"type": "block_actions", "user": {"id": slack_user, "username": "someone"},
               "actions": [{"action_id": f"healer_{verb}:{action_id}", "value": str(action_id),
                            "type": "button"}],
               "response_url": "https://hooks.slack.invalid/actions/1"}
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed_headers(secret: str, body: bytes, ts: float | None = None) -> dict[str, str]:
    stamp = str(int(ts if ts is not None else time.time()))
    return {"X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": slack_signature(secret, stamp, body),
            "Content-Type": "application/x-www-form-urlencoded"}
