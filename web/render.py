"""Rendering pages: one Jinja2 environment with autoescaping always on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from web.auth import Principal
from web.context import get_ctx
from web.live import agent_state
from web.schemas import iso


def _fmt_ts(ts: datetime | float | None) -> str:
    if ts is None:
        return "—"
    if isinstance(ts, int | float):
        ts = datetime.fromtimestamp(ts, UTC)
    return (iso(ts) or "").replace("T", " ")[:19] + "Z"


def build_templates() -> jinja2.Environment:
    """The template environment (``*.html.j2``; autoescape is explicit: the suffix is .j2)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ts"] = _fmt_ts
    env.filters["iso"] = iso
    return env


def render(request: Request, template: str, principal: Principal | None, *,
           status: int = 200, **values: Any) -> HTMLResponse:
    """Render ``template`` with the user, their CSRF token and the nav state."""
    ctx = get_ctx(request)
    csrf = ctx.signer.csrf_token(principal.nonce) if principal and principal.nonce else ""
    live = ctx.live
    agent_dead = live is not None and live.separate_agent and agent_state(
        live.agent(), ctx.clock().timestamp(), ctx.settings.interval_seconds,
        ctx.started.timestamp()) == "dead"
    html = ctx.templates.get_template(template).render(
        user=principal, csrf=csrf, host_id=ctx.settings.host_id, path=request.url.path,
        agent_dead=agent_dead, fleet_view=ctx.fleet is not None, **values)
    return HTMLResponse(html, status_code=status)
