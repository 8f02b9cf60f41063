"""``/login`` and ``/logout``: cookie sessions for people (the API also takes bearer tokens).

The login form carries a CSRF token bound to a short-lived pre-login cookie. Attempts are
limited per client address (10 a minute) and overall (100 a minute) before any password
work, and at most two argon2 checks run at once. A wrong name costs the same argon2 work
as a wrong password, so timing does not reveal which names exist. Sessions live on the
server: signing out ends them there, not only in the browser.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from healer.logs import logfmt
from healer.store.credentials import hash_password, hash_token, verify_password
from healer.store.rows import UserRow
from web.auth import SESSION_COOKIE, Principal, client_ip, mutates, optional_principal
from web.context import AppContext, get_ctx
from web.render import render

log = logging.getLogger("healer.web")
router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "healer_login"
_DUMMY_HASH: list[str] = []  # an argon2 hash to verify against for unknown names
HASH_WAIT_SECONDS = 10.0  # how long a login waits for a free argon2 slot before a 503


def safe_next(target: str | None) -> str:
    """``target`` when it is a path on this site, else ``/`` (no open redirect).

    Browsers drop tabs and newlines from URLs and read a backslash as ``/``, so
    ``next=/%09/evil.example`` (a tab, once decoded) would become ``//evil.example``.
    Anything outside printable ASCII, or with a backslash, is refused outright; what
    remains must start with exactly one ``/`` and parse as a path with no scheme or host.
    """
    if not target or any(not 0x21 <= ord(c) <= 0x7E or c == "\\" for c in target):
        return "/"
    if target.startswith("//"):  # browsers skip any run of slashes before a host: ///evil
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return "/"
    return target


def _login_page(request: Request, ctx: AppContext, *, error: str = "", status: int = 200,
                next_url: str = "/") -> HTMLResponse:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    page = render(request, "login.html.j2", None, status=status, error=error,
                  login_csrf=ctx.signer.csrf_token("login:" + nonce), next_url=safe_next(next_url))
    page.set_cookie(LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict",
                    secure=ctx.secure_cookies, path="/login")
    return page


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    """The login page (or home, when already signed in)."""
    if optional_principal(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, get_ctx(request), next_url=next)


def _check_password(ctx: AppContext, username: str, password: str) -> UserRow | None:
    user = ctx.repo.get_user(username)
    if user is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_password(secrets.token_urlsafe(16)))
        verify_password(_DUMMY_HASH[0], password)  # same cost as a real check
        return None
    return user if verify_password(user.password_hash, password) else None


def _start_session(ctx: AppContext, user: UserRow, next_url: str) -> Response:
    cookie, session = ctx.signer.new_session()
    ctx.repo.add_session(hash_token(session.nonce), user.id,
                         datetime.fromtimestamp(session.expires, UTC))
    response = RedirectResponse(safe_next(next_url), status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(ctx.signer.max_age), httponly=True,
                        samesite="strict", secure=ctx.secure_cookies, path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=1000)],
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password, rate-limited, and start a session."""
    ctx = get_ctx(request)
    nonce = request.cookies.get(LOGIN_COOKIE)
    if not ctx.signer.check_csrf("login:" + nonce if nonce else None, csrf_token):
        return _login_page(request, ctx, error="The form expired; try again.", status=403)
    ip = client_ip(request)
    if not ctx.login_throttle.allow(ip):
        log.warning(logfmt(msg="login rate-limited", ip=ip))
        return _login_page(request, ctx, error="Too many attempts; wait a minute.", status=429)
    if not ctx.hash_slots.acquire(timeout=HASH_WAIT_SECONDS):
        return _login_page(request, ctx, error="Busy; try again in a moment.", status=503)
    try:
        user = _check_password(ctx, username, password)
    finally:
        ctx.hash_slots.release()
    if user is None:
        log.warning(logfmt(msg="login failed", user=username[:64], ip=ip))
        return _login_page(request, ctx, error="Wrong user name or password.", status=401,
                           next_url=next)
    ctx.repo.add_audit(user.name, "user.login", f"user:{user.name}", {"ip": ip})
    return _start_session(ctx, user, next)


@router.post("/logout")
def logout(request: Request, who: Annotated[Principal, Depends(mutates("viewer"))]) -> Response:
    """End the session on the server, and drop the cookie."""
    if who.via == "session" and who.nonce:
        get_ctx(request).repo.end_session(hash_token(who.nonce))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
