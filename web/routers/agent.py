"""The agent protocol, ``/api/v1/agent/``: heartbeat, report, lease, release, events
(docs/fleet-protocol.md).

Host tokens only, each bound to one host: a body or query naming another host is 403,
and so is any other token. ``X-Healer-Agent-Version`` outside the accepted skew is 426.
A database that does not answer is 503 with ``Retry-After``; a replica full of long polls,
or with a full queue of one kind of request (web.fleet.Lane), answers 429 the same way.
Every endpoint is async: the database work runs in its lane's few threads, and the long
poll holds no thread while it waits (web.events).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from healer.logs import logfmt
from healer.store.credentials import hash_token
from healer.store.errors import NotFound, StoreError
from healer.store.fleet_types import Heartbeat, LeaseAnswer, LeaseAsk, Release, ReportBatch
from healer.store.repo_leases import LeaseLost
from web.auth import AuthError
from web.context import AppContext, get_ctx
from web.events import TooManyWaiters
from web.fleet import HEARTBEAT_SECONDS, FleetConfig, Lane, LaneFull, version_problem
from web.schemas import iso

log = logging.getLogger("healer.web.agent")
router = APIRouter(prefix="/api/v1/agent", tags=["agent"])
VERSION_HEADER = "x-healer-agent-version"
RETRY_AFTER_S = 2  # back-pressure: seconds an agent waits before asking again
MAX_WAIT_S = 25.0
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# The report body's schema for the API's description (its models under $defs, resolved
# within it: the $id makes it a schema resource of its own).
REPORT_SCHEMA = {"$id": "urn:healer:agent:report-batch", **ReportBatch.model_json_schema()}


def _fleet(ctx: AppContext) -> FleetConfig:
    assert ctx.fleet is not None  # the router is mounted only with a FleetConfig
    return ctx.fleet


async def agent_host(request: Request) -> str:
    """The host a request's token is bound to (401 without a token, 403 for any token
    but a host's), after the version check (426). A kept lookup costs no thread."""
    ctx = get_ctx(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "a host token is required (Authorization: Bearer ...)")
    tokens, hashed = _fleet(ctx).tokens, hash_token(token.strip())
    kept, found = tokens.cached(hashed)
    if not kept:
        found = await run_in_threadpool(_answer, lambda: tokens.lookup(hashed,
                                                                      ctx.repo.host_of_token))
    if found is None:
        raise AuthError(401, "invalid, revoked or expired token")
    role, host_id = found
    if role != "host" or host_id is None:
        raise AuthError(403, "only a host token (healer host add) may use the agent protocol")
    problem = version_problem(request.headers.get(VERSION_HEADER), _fleet(ctx).version)
    if problem is not None:
        raise HTTPException(426, problem)
    return host_id


AgentHost = Annotated[str, Depends(agent_host)]


def _same_host(bound: str, named: str) -> None:
    if named != bound:
        raise AuthError(403, f"this token is bound to host {bound!r}, not {named[:253]!r}")


def _answer(call: Callable[[], T]) -> T:
    """``call()``, with the store's failures as the protocol's answers."""
    try:
        return call()
    except LeaseLost:
        raise HTTPException(409, "lease lost") from None
    except NotFound as e:
        raise HTTPException(404, str(e)) from None
    except StoreError as e:
        log.warning(logfmt(msg="agent request failed on the store", error=str(e)[:200]))
        raise HTTPException(503, "the control plane's database is not answering; retry",
                            headers={"Retry-After": str(RETRY_AFTER_S)}) from None


async def _in(lane: Lane, call: Callable[[], T]) -> T:
    """``call()`` in ``lane`` (its failures as the protocol's answers); 429 with
    ``Retry-After`` when the lane's queue is full: the agent comes back, the replica
    keeps up with what it took."""
    try:
        return await lane.run(lambda: _answer(call))
    except LaneFull:
        raise HTTPException(429, f"this replica is busy ({lane.name} requests); retry",
                            headers={"Retry-After": str(RETRY_AFTER_S)}) from None


@router.post("/heartbeat")
async def heartbeat(request: Request, host: AgentHost, body: Heartbeat) -> dict[str, Any]:
    """The agent is alive; answers the pause and the control plane's clock."""
    _same_host(host, body.host_id)
    ctx = get_ctx(request)
    paused = await _in(_fleet(ctx).lanes.bulk, lambda: ctx.repo.heartbeat(body))
    return {"server_time": iso(ctx.repo.now()), "paused": paused,
            "heartbeat_seconds": HEARTBEAT_SECONDS}


@router.post("/report", openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": REPORT_SCHEMA}}}})
async def report(request: Request, host: AgentHost) -> dict[str, int]:
    """Reports, upserted on (host, seq) and applied in seq order.

    The body is parsed in the reports' lane, not here: at a storm's onset hundreds of
    batches wait for that lane at once, and each waits as its bytes. Parsed on the event
    loop, each held dozens of objects that the collector walked at every young collection,
    and each collection stopped the replica's lease answers (docs/fleet-sim.md)."""
    ctx = get_ctx(request)
    raw = await request.body()

    def store() -> int:
        body = _parse(ReportBatch, raw)
        _same_host(host, body.host_id)
        return ctx.repo.store_reports(body)

    return {"acked_through": await _in(_fleet(ctx).lanes.report, store)}


def _parse(model: type[M], raw: bytes) -> M:
    """``raw`` as ``model``; a body that is not one is 422, as FastAPI answers it."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in
                                      e.errors(include_url=False, include_input=False)]) from None


@router.post("/lease")
async def lease(request: Request, host: AgentHost, body: LeaseAsk) -> dict[str, Any]:
    """Ask to apply a fleet-gated remedy, or renew a grant. A remedy in its systemic hold
    is answered from the replica's memory (web.fleet.Holds)."""
    _same_host(host, body.host_id)
    ctx = get_ctx(request)
    fleet = _fleet(ctx)
    if body.renew is not None:
        renew = body.renew
        answer = await _in(fleet.lanes.lease,
                           lambda: ctx.repo.renew(host, renew.lease_id, renew.epoch))
    else:
        window = fleet.verify_window(body.remedy.playbook)
        answer = await fleet.holds.ask(
            body.remedy.key, body.incident_fingerprint, host, body.purpose, fleet.policy,
            ctx.repo.now, lambda: _in(fleet.lanes.lease,
                                      lambda: ctx.repo.lease(body, fleet.policy, window)))
    return lease_json(answer)


def lease_json(answer: LeaseAnswer) -> dict[str, Any]:
    """A grant or a wait, as the protocol spells them."""
    d = answer.decision
    if answer.grant is not None:
        return {"grant": answer.grant.model_dump()}
    return {"wait": {"reason": d.reason, "rule": d.rule, "retry_after": d.retry_after,
                     "detail": d.detail}}


@router.post("/release")
async def release(request: Request, host: AgentHost, body: Release) -> dict[str, Any]:
    """How a lease ended; a regression counts toward the remedy's breaker."""
    _same_host(host, body.host_id)
    ctx = get_ctx(request)
    fleet = _fleet(ctx)
    await _in(fleet.lanes.lease, lambda: ctx.repo.release(body, fleet.policy))
    return {}


def _cursor(after: str) -> int:
    if not after:
        return 0
    if not after.isdigit() or len(after) > 19:
        raise HTTPException(422, "after: a cursor from an earlier answer")
    return int(after)


@router.get("/events", response_model=None)
async def events(
    request: Request, host: AgentHost,
    host_id: Annotated[str, Query(min_length=1, max_length=253)],
    after: Annotated[str, Query(max_length=20)] = "",
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = MAX_WAIT_S,
) -> dict[str, Any] | JSONResponse:
    """Events for this host after ``after``, held up to ``wait`` seconds until one comes."""
    _same_host(host, host_id)
    ctx = get_ctx(request)
    hub = _fleet(ctx).hub
    cursor = _cursor(after)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    try:
        async with hub.slot():
            while True:
                mark = hub.mark(host)
                rows = hub.tail(host, cursor)
                if rows is None:  # a cursor older than the hub's memory
                    rows = await _in(_fleet(ctx).lanes.events,
                                     lambda: ctx.repo.events_after(host, cursor))
                left = deadline - loop.time()
                if rows or left <= 0 or hub.stopping:
                    break
                await hub.wait(host, mark, left)
    except TooManyWaiters:
        return JSONResponse({"detail": "too many long polls on this replica; retry"},
                            status_code=429, headers={"Retry-After": str(RETRY_AFTER_S)})
    if rows:
        cursor = rows[-1].id
    return {"cursor": str(cursor),
            "events": [r.payload | {"id": r.id, "at": iso(r.created_at)} for r in rows]}
