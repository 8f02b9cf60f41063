"""``/login`` and ``/logout``: cookie sessions for people (the API also takes bearer tokens).

The login form carries a CSRF token bound to a short-lived pre-login cookie. Attempts are
limited per (user name, client IP); a wrong name costs the same argon2 work as a wrong
password, so timing does not reveal which names exist.
"""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from healer.cli.users import hash_password, verify_password
from healer.logs import kv
from web.auth import SESSION_COOKIE, Principal, client_ip, mutates, optional_principal
from web.context import AppContext, get_ctx
from web.render import render

log = logging.getLogger("healer.web")
router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "healer_login"
_DUMMY_HASH: list[str] = []  # an argon2 hash to verify against for unknown names


def safe_next(target: str | None) -> str:
    """Only same-site paths: ``/x`` but never ``//host`` or ``/\\host`` (open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
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


def _check_password(ctx: AppContext, username: str, password: str) -> bool:
    user = ctx.repo.get_user(username)
    if user is None:
        if not _DUMMY_HASH:
            _DUMMY_HASH.append(hash_password(secrets.token_urlsafe(16)))
        verify_password(_DUMMY_HASH[0], password)  # same cost as a real check
        return False
    return verify_password(user.password_hash, password)


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
    key = f"{username.lower()}|{ip}"
    if not ctx.login_limiter.allow(key):
        log.warning(kv(msg="login rate-limited", user=username, ip=ip))
        return _login_page(request, ctx, error="Too many attempts; wait a minute.", status=429)
    if not _check_password(ctx, username, password):
        log.warning(kv(msg="login failed", user=username, ip=ip))
        return _login_page(request, ctx, error="Wrong user name or password.", status=401,
                           next_url=next)
    ctx.login_limiter.reset(key)
    ctx.repo.add_audit(username, "user.login", f"user:{username}", {"ip": ip})
    cookie, _ = ctx.signer.new_session(username)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(ctx.signer.max_age), httponly=True,
                        samesite="strict", secure=ctx.secure_cookies, path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, who: Annotated[Principal, Depends(mutates("viewer"))]) -> Response:
    """End the session (the cookie is dropped; it also expires on its own)."""
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
