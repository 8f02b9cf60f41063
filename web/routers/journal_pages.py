"""Read-only pages: the actions journal, the audit log, the playbooks and the policy."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from guardrails.errors import PolicyError
from guardrails.policy import load_policy
from playbooks.loader import LibraryError, load_library
from web.auth import Principal, requires
from web.context import get_ctx
from web.render import render

log = logging.getLogger("healer.web")
router = APIRouter(include_in_schema=False)
Viewer = Annotated[Principal, Depends(requires("viewer"))]


@router.get("/actions", response_class=HTMLResponse)
def actions(request: Request, who: Viewer) -> HTMLResponse:
    """The journal with each record's votes."""
    repo = get_ctx(request).repo
    records = repo.list_actions(limit=300, **get_ctx(request).hosts())
    votes = {r.id: repo.list_approvals(r.id) for r in records if r.id is not None}
    return render(request, "actions.html.j2", who, records=records, votes=votes)


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, who: Viewer) -> HTMLResponse:
    """Every audit row, newest first."""
    return render(request, "audit.html.j2", who, rows=get_ctx(request).repo.list_audit(limit=500))


def _dump(obj: Any) -> str:
    data = obj.model_dump(mode="json", exclude_none=True) if hasattr(obj, "model_dump") else obj
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _load_playbooks(request: Request) -> tuple[list[tuple[str, str]], str]:
    try:
        library = load_library(get_ctx(request).settings.playbooks_dir)
    except LibraryError as exc:  # show the problem on the page instead of failing the page
        log.warning("playbooks not loadable: %s", exc)
        return [], f"Playbooks unavailable: {exc}"
    return [(p.id, _dump(p)) for p in library.playbooks], ""


@router.get("/playbooks", response_class=HTMLResponse)
def playbooks(request: Request, who: Viewer) -> HTMLResponse:
    """The loaded playbook library, read-only."""
    items, error = _load_playbooks(request)
    return render(request, "playbooks.html.j2", who, items=items, error=error)


@router.get("/policy", response_class=HTMLResponse)
def policy(request: Request, who: Viewer) -> HTMLResponse:
    """The guardrail policy in force, read-only."""
    ctx = get_ctx(request)
    try:
        text, error = _dump(load_policy(ctx.settings.policy_file)), ""
    except PolicyError as exc:
        text, error = "", f"Policy unavailable: {exc}"
    return render(request, "policy.html.j2", who, text=text, error=error,
                  policy_path=str(ctx.settings.policy_file or "(shipped default)"))
