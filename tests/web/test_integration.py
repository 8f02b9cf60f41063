"""End to end over real sockets: uvicorn serves the app, a local HTTP receiver plays Slack
and a generic webhook consumer, and a signed Slack click approves the proposal."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from healer.models import ActionState
from healer.notify.channels import build_channels
from healer.notify.notifier import Notifier
from healer.notify.outbox import OutboxDeliverer
from healer.notify.signing import verify_webhook
from healer.settings import Settings
from healer.store.engine import open_store
from healer.telemetry import Telemetry
from tests.web.conftest import SLACK_SECRET
from tests.web.helpers import (
    SILENCE_CHECK,
    Clock,
    add_user,
    agent_seal,
    decide_votes,
    make_proposal,
    serve,
)
from tests.web.slack_helpers import signed_headers
from web import create_app

HOOK_SECRET = "hook-secret-123"
MESSAGE_KEYS = {"version", "id", "event", "severity", "host_id", "subject", "title", "text",
                "link", "action_id", "incident_id", "at", "data"}


class _Receiver(BaseHTTPRequestHandler):
    captured: list[tuple[str, dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.captured.append((self.path, dict(self.headers.items()), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    captured: list[tuple[str, dict[str, str], bytes]] = []
    handler = type("Handler", (_Receiver,), {"captured": captured})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", captured
    server.shutdown()
    server.server_close()


def test_approval_request_reaches_hooks_and_a_signed_slack_click_approves(
        tmp_path: Path, receiver: tuple[str, list[tuple[str, dict[str, str], bytes]]]) -> None:
    url, captured = receiver
    settings = Settings(state_dir=tmp_path / "state", host_id="it-host",
                        slack_webhook_url=f"{url}/slack", webhook_url=f"{url}/hook",
                        webhook_secret=HOOK_SECRET, slack_signing_secret=SLACK_SECRET)
    repo = open_store(settings)
    agent_seal(repo, settings.key_dir)  # the agent writes (and seals) the proposal
    add_user(repo, "alice", "approver", slack="U42")
    clock = Clock()
    record = make_proposal(repo, clock(), approval="approve")
    app = create_app(settings, repo=repo, telemetry=Telemetry(),
                     silence_check=SILENCE_CHECK, clock=clock)
    with serve(app) as base, httpx.Client(base_url=base, timeout=5) as http:
        assert http.get("/healthz").status_code == 200
        Notifier(settings, repo).action("approval_needed", record)
        with httpx.Client(timeout=2) as hooks:
            report = OutboxDeliverer(repo, build_channels(settings, hooks)).deliver_due()
        assert report.delivered == 3  # log, slack, webhook

        by_path = {path: (headers, body) for path, headers, body in captured}
        headers, body = by_path["/hook"]
        verify_webhook(HOOK_SECRET, headers["X-Healer-Timestamp"], body,
                       headers["X-Healer-Signature"], now=time.time())
        message = json.loads(body)
        assert set(message) == MESSAGE_KEYS
        assert (message["event"], message["action_id"]) == ("approval_needed", record.id)
        assert message["link"] == f"http://127.0.0.1:8765/approvals#action-{record.id}"
        assert headers["X-Healer-Delivery"] == message["id"]

        slack_msg = json.loads(by_path["/slack"][1])
        approve = slack_msg["blocks"][-1]["elements"][0]
        assert approve["action_id"] == f"healer_approve:{record.id}"

        # Slack posts the click back; unsigned or anonymous requests change nothing.
        form = {"payload": json.dumps({"type": "block_actions", "user": {"id": "U42"},
                                       "actions": [approve]})}
        raw = urlencode(form).encode()
        ctype = {"Content-Type": "application/x-www-form-urlencoded"}
        assert http.post("/slack/interactions", content=raw, headers=ctype).status_code == 401
        assert http.post(f"/api/v1/proposals/{record.id}/reject", json={}).status_code == 401
        assert repo.get_action(record.id).state == ActionState.AWAITING_APPROVAL  # type: ignore[union-attr, arg-type]

        resp = http.post("/slack/interactions", content=raw,
                         headers=signed_headers(SLACK_SECRET, raw))
        assert resp.status_code == 200, resp.text
        assert repo.list_approvals(record.id)[0].user == "alice"  # type: ignore[arg-type]
        assert [r.state for r in decide_votes(repo)] == [ActionState.APPROVED]
