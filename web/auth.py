"""Who is asking, and may they: bearer tokens, session cookies, roles, CSRF.

People's roles are ordered viewer < approver < admin and are read from the user row on
every request, so a removed or demoted user loses access at once; a person's token acts
as its user, with at most the user's role. Service tokens (``ingest``, ``host``) sit
outside that scale and pass no ``requires(role)``. No, bad, revoked or expired
credentials answer 401; a known principal with too small a role, or a session mutation
without its CSRF token, answers 403. Bearer requests need no CSRF token: browsers never
attach that header on their own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from healer.store.credentials import (
    hash_token,
    is_service,
    lesser_role,
    role_at_least,
    token_matches,
)
from web.context import AppContext, get_ctx
from web.security import client_address

SESSION_COOKIE = "healer_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class AuthError(Exception):
    """Turned into 401/403 (or a login redirect for pages) by the app's handler."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Principal:
    name: str  # the user's name; a service token's own name
    role: str
    via: Literal["session", "token", "slack"]
    nonce: str | None = None  # the session id CSRF tokens are bound to
    user_id: int | None = None  # None: a service token

    def has(self, role: str) -> bool:
        """True when this principal is a person whose role is ``role`` or above."""
        return role_at_least(self.role, role)


def _from_bearer(header: str, ctx: AppContext) -> Principal:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthError(401, "malformed Authorization header")
    row = ctx.repo.find_token(hash_token(token))
    if row is None or not token_matches(token, row.token_hash):
        raise AuthError(401, "invalid token")
    if not row.usable(ctx.clock()):
        raise AuthError(401, "token revoked or expired")
    if row.user_id is None:  # a service token; a person's token without its owner is void
        if not is_service(row.role):
            raise AuthError(401, "invalid token")
        return Principal(row.name, row.role, "token")
    user = ctx.repo.get_user_by_id(row.user_id)
    if user is None:
        raise AuthError(401, "invalid token")
    return Principal(user.name, lesser_role(row.role, user.role), "token", user_id=user.id)


def resolve_principal(request: Request, ctx: AppContext) -> Principal | None:
    """The caller, from ``Authorization: Bearer`` or the session cookie; None if anonymous."""
    header = request.headers.get("authorization")
    if header:
        return _from_bearer(header, ctx)
    session = ctx.signer.read_session(request.cookies.get(SESSION_COOKIE))
    if session is None:
        return None
    live = ctx.repo.get_session(hash_token(session.nonce))  # signed out on the server: gone
    if live is None:
        return None
    user = ctx.repo.get_user_by_id(live.user_id)  # re-read: a demoted user loses access
    if user is None:
        return None
    return Principal(user.name, user.role, "session", session.nonce, user.id)


def requires(role: str) -> Callable[[Request], Principal]:
    """A dependency that admits principals with ``role`` or above."""

    def dependency(request: Request) -> Principal:
        principal = resolve_principal(request, get_ctx(request))
        if principal is None:
            raise AuthError(401, "authentication required")
        if is_service(principal.role):
            raise AuthError(403, f"a {principal.role} service token cannot use this endpoint")
        if not principal.has(role):
            raise AuthError(403, f"requires role {role}")
        request.state.principal = principal
        return principal

    return dependency


def requires_service(role: str) -> Callable[[Request], Principal]:
    """A dependency that admits only service tokens of ``role`` (``ingest``): a person's
    token or session, however high, is 403 here, as a service token is on their pages."""

    def dependency(request: Request) -> Principal:
        principal = resolve_principal(request, get_ctx(request))
        if principal is None:
            raise AuthError(401, "authentication required")
        if principal.role != role or principal.user_id is not None:
            raise AuthError(403, f"requires a service token of role {role}")
        request.state.principal = principal
        return principal

    return dependency


def mutates(role: str) -> Callable[..., Awaitable[Principal]]:
    """``requires(role)`` plus a valid CSRF token for cookie sessions (header or form field)."""
    base = requires(role)

    async def dependency(request: Request) -> Principal:
        principal = await run_in_threadpool(base, request)  # the store is blocking I/O
        if principal.via == "session":
            token = request.headers.get(CSRF_HEADER)
            if token is None and "form" in request.headers.get("content-type", ""):
                value = (await request.form()).get(CSRF_FIELD)
                token = value if isinstance(value, str) else None
            if not get_ctx(request).signer.check_csrf(principal.nonce, token):
                raise AuthError(403, "missing or invalid CSRF token")
        return principal

    return dependency


def optional_principal(request: Request) -> Principal | None:
    """The caller if any, without failing (pages that adapt to the viewer)."""
    try:
        return resolve_principal(request, get_ctx(request))
    except AuthError:
        return None


def client_ip(request: Request) -> str:
    """The client's address: the peer, or X-Forwarded-For as set by a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    return client_address(peer, request.headers.get("x-forwarded-for"),
                          get_ctx(request).trusted_proxies)
