"""Turn a playbook's remedy templates into catalog actions for one incident.

Numbers come from the operator table (``playbooks.operators``); text fields are
``{label}`` templates over the incident's captures and scope. Captured kernel-log text is
untrusted: it reaches an action only through the catalog's validators, and a remedy that
does not render or validate is skipped with a reason, never raised. What a remedy may read
arrives as ``RemedyInputs`` (the daemon flattens an incident's evidence into them), so this
package knows nothing of the daemon's models.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from guardrails import linear
from guardrails.actions import Action, parse_action
from playbooks.operators import EvalContext, ExprError, fill_template
from playbooks.schema import INT_FIELDS, NUMERIC_FIELDS, Playbook, Remedy

log = logging.getLogger("playbooks.render")
# Captures are untrusted kernel text: RE2.
_CONTROL_RE = linear.compile(r"[\x00-\x1f\x7f]")
_STRING_VALUE_KINDS = ("sysctl_write", "cgroup_limit")


@dataclass(frozen=True)
class RemedyInputs:
    """What a remedy may read about one incident: numbers by name (``process.num_fds``,
    ``net.core.somaxconn``, ``gpu.0.power_limit_watts``), metric series, and text labels
    for ``{label}`` templates (captures are untrusted kernel text)."""

    numbers: Mapping[str, float] = field(default_factory=dict)
    series: Mapping[str, Sequence[tuple[float, float]]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedRemedy:
    action: Action
    rationale: str
    expected_effect: str
    reversible: bool = True


def scope_labels(scope: str) -> dict[str, str]:
    """Labels a scope provides to templates: ``cgroup:/a`` -> {"cgroup": "/a", "scope": ...}."""
    labels = {"scope": scope}
    kind, _, rest = scope.partition(":")
    if rest and kind in ("cgroup", "pid", "gpu", "netns"):
        labels[kind] = rest
    return labels


def _text(template: str, labels: Mapping[str, str]) -> str:
    return str(_CONTROL_RE.sub(" ", fill_template(template, labels)))[:2000]


def _render_one(remedy: Remedy, ctx: EvalContext, labels: Mapping[str, str], scope: str) -> Action:
    tmpl = remedy.action
    data: dict[str, object] = {"kind": tmpl.kind, "scope": _text(tmpl.scope or scope, labels)}
    for name, raw in tmpl.fields.items():
        if name not in NUMERIC_FIELDS:
            data[name] = _text(str(raw), labels)
    current_name = remedy.current or (data.get("key") if tmpl.kind == "sysctl_write" else None)
    current = ctx.facts.get(ctx.resolve(str(current_name))) if current_name else None
    if current is None:
        current = remedy.current_default
    ctx = EvalContext(current, ctx.facts, ctx.series, ctx.captures)
    for name, expr in tmpl.expressions().items():
        value = expr.evaluate(ctx)
        number: float | int = round(value) if name in INT_FIELDS else round(value, 3)
        data[name] = str(number) if name == "value" and tmpl.kind in _STRING_VALUE_KINDS \
            else number
        if current is not None and name in ("value", "soft", "watts") and number == current:
            raise ExprError(f"{name} is already {number}; nothing to change")
    return parse_action(data)


def render_remedies_detailed(
    playbook: Playbook, inputs: RemedyInputs, scope: str
) -> tuple[list[RenderedRemedy], list[str]]:
    """Render every remedy; returns the actions and one reason per skipped remedy."""
    labels = {**inputs.labels, **scope_labels(scope)}
    ctx = EvalContext(None, inputs.numbers, inputs.series, labels)
    rendered: list[RenderedRemedy] = []
    skipped: list[str] = []
    for i, remedy in enumerate(playbook.remedies):
        try:
            action = _render_one(remedy, ctx, labels, scope)
        except (ExprError, ValidationError, ValueError, OverflowError) as exc:
            reason = f"{playbook.id} remedy {i} ({remedy.action.kind}) skipped: {_first_line(exc)}"
            log.info("remedy skipped: playbook=%s index=%d reason=%r", playbook.id, i,
                     _first_line(exc))
            skipped.append(reason)
            continue
        rendered.append(RenderedRemedy(action, remedy.rationale, remedy.expected_effect,
                                       remedy.reversible and playbook.rollback != "never"))
    return rendered, skipped


def render_remedies(playbook: Playbook, inputs: RemedyInputs, scope: str) -> list[RenderedRemedy]:
    """The playbook's remedies as catalog actions for this incident; bad ones are skipped."""
    return render_remedies_detailed(playbook, inputs, scope)[0]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(text[:3])[:300] if text else type(exc).__name__
