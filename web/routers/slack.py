"""``POST /slack/interactions``: Approve/Reject buttons pressed in Slack.

The request is verified first (v0 signature over the raw body, constant-time compare,
timestamp within 5 minutes), then the Slack user must map to a healer user with the
approver role. Only database work happens inline, so the answer comes well within
Slack's 3-second limit (https://api.slack.com/interactivity/handling#acknowledgment_response).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from healer.logs import logfmt
from healer.models import SLACK_APPROVE_ACTION, SLACK_REJECT_ACTION
from healer.store.credentials import role_at_least
from healer.store.votes import VoteRefused, record_vote
from web.context import AppContext, get_ctx
from web.schemas import ID_MAX
from web.slack_signing import BadSignature, verify_slack

log = logging.getLogger("healer.web")
router = APIRouter(tags=["slack"])


def _reply(status: int, text: str) -> JSONResponse:
    return JSONResponse({"response_type": "ephemeral", "replace_original": False, "text": text},
                        status_code=status)


def _parse(body: bytes) -> tuple[str, str, int] | None:
    """(slack user id, "approve"|"reject", action id) from a block_actions payload."""
    try:
        payload: Any = json.loads(parse_qs(body.decode())["payload"][0])
        user_id = str(payload["user"]["id"])
        pressed = payload["actions"][0]
        prefix, _, _ = str(pressed["action_id"]).partition(":")
        action_id = int(pressed["value"])
    except (KeyError, IndexError, ValueError, TypeError, UnicodeDecodeError):
        return None
    if not 1 <= action_id <= ID_MAX:  # no row has such an id (and SQLite would raise on it)
        return None
    verbs = {SLACK_APPROVE_ACTION: "approve", SLACK_REJECT_ACTION: "reject"}
    return (user_id, verbs[prefix], action_id) if prefix in verbs else None


def _decide(ctx: AppContext, slack_user: str, verb: str, action_id: int) -> JSONResponse:
    user = ctx.repo.get_user_by_slack(slack_user)
    if user is None or not role_at_least(user.role, "approver"):
        log.warning(logfmt(msg="slack vote refused: no approver mapped", slack_user=slack_user,
                           action=action_id))
        return _reply(403, "You are not a healer approver.")
    try:
        result = record_vote(ctx.repo, action_id, user.name, verb == "approve",
                             "via Slack", now=ctx.clock(),
                             ttl_seconds=ctx.settings.approval_ttl_seconds, via="slack")
    except VoteRefused as exc:
        return _reply(200, f"Not recorded: {exc.detail}")
    log.info(logfmt(msg=f"vote {verb}", action=action_id, user=user.name, via="slack",
                    state=result.record.state.value))
    return _reply(200, f"{user.name}: {verb} recorded for action {action_id}; healer "
                       "decides on its next cycle.")


@router.post("/slack/interactions")
async def interactions(request: Request) -> JSONResponse:
    """Verify a Slack interaction and record the approve/reject vote it carries."""
    ctx = get_ctx(request)
    secret = ctx.settings.slack_signing_secret
    if secret is None:
        return _reply(403, "Slack interactivity is not configured.")
    body = await request.body()  # web.limits.BodyLimit refuses past 64 KiB while it streams
    try:
        verify_slack(secret.get_secret_value(), request.headers.get("x-slack-request-timestamp"),
                     body, request.headers.get("x-slack-signature"),
                     now=ctx.clock().timestamp())
    except BadSignature as exc:
        log.warning(logfmt(msg="slack request rejected", reason=exc.reason))
        return _reply(401, f"bad request signature: {exc.reason}")
    parsed = _parse(body)
    if parsed is None:
        return _reply(200, "Nothing to do.")
    return await run_in_threadpool(_decide, ctx, *parsed)
