"""``quiet_kmsg`` verification: no new kernel-log line of the playbook's kind in the window.

A remedy for repeated kernel events (OOM kills in a cgroup, fork rejections by the pids
controller) works when the events stop. The playbook's ``kmsg`` signals say what a line
looks like; the spec stores them as ``KmsgPattern`` values (storable in the journal), with
the incident's scope pinned: a line counts only when its captured ``cgroup`` is the
action's cgroup or below it. A line whose cgroup cannot be told (no capture, the context
line out of reach) counts too: when in doubt, the fix is judged not to have worked and
the original value is restored, which is the state the operator last chose.

Matching follows healer.detect.kmsg: literal pre-filter, an RE2 search (kernel text is
attacker-chosen: linear time, never Python's ``re``), ``where`` filters, and context lines
(the memcg OOM report's ``oom_memcg=`` line) merged into the next match within
``max_lines``. Only the signals that open an event count; a ``part`` line (a report's
continuation) proves nothing. Pure: records come in as data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from guardrails import linear
from healer.models import KmsgRecord

SCOPE_CAPTURES = ("cgroup",)  # captures that pin a line to the incident's scope


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _literals(contains: str | tuple[str, ...]) -> tuple[str, ...]:
    return (contains,) if isinstance(contains, str) else contains


def _holds(contains: str | tuple[str, ...], msg: str) -> bool:
    return any(lit in msg for lit in _literals(contains))


class KmsgContextPattern(_Frozen):
    """A preceding line whose captures are merged into the next match."""

    contains: str | tuple[str, ...]
    regex: str
    max_lines: int = 50


class KmsgPattern(_Frozen):
    """One kernel-log line kind a ``quiet_kmsg`` verification must not see again."""

    contains: str | tuple[str, ...]  # one literal, or several (any one); see Kmsg.contains
    regex: str
    where: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    context: tuple[KmsgContextPattern, ...] = ()
    scope: dict[str, str] = Field(default_factory=dict)  # capture -> the incident's value

    def captures(self) -> set[str]:
        """Every named group the line or its context lines can capture."""
        names = set(linear.compile(self.regex).groupindex)
        for ctx in self.context:
            names |= set(linear.compile(ctx.regex).groupindex)
        return names


def patterns_from_signals(signals: Iterable[Any], labels: Mapping[str, str]) -> tuple[
        KmsgPattern, ...]:
    """``KmsgPattern`` for each playbook ``kmsg`` signal, scoped by the labels it can capture."""
    out = []
    for sig in signals:
        if getattr(sig, "kind", None) != "kmsg" or getattr(sig, "role", "line") == "part":
            continue
        pattern = KmsgPattern(
            contains=sig.contains, regex=sig.regex,
            where={k: tuple(v) for k, v in sig.where.items()},
            context=tuple(KmsgContextPattern(contains=c.contains, regex=c.regex,
                                             max_lines=c.max_lines) for c in sig.context))
        scope = {k: labels[k] for k in SCOPE_CAPTURES if k in labels and k in pattern.captures()}
        out.append(pattern.model_copy(update={"scope": scope}))
    return tuple(out)


def _under(path: str, root: str) -> bool:
    path, root = path.rstrip("/") or "/", root.rstrip("/") or "/"
    return root == "/" or path == root or path.startswith(root + "/")


def _in_scope(pattern: KmsgPattern, caps: Mapping[str, str]) -> bool:
    for name, value in pattern.scope.items():
        got = caps.get(name)
        if got is None:
            continue  # cannot tell: counts (see the module docstring)
        if not (_under(got, value) if name == "cgroup" else got == value):
            return False
    return True


def matching(pattern: KmsgPattern, records: Sequence[KmsgRecord],
             counted: set[int] | None = None) -> list[KmsgRecord]:
    """Records matching ``pattern`` in its scope; only those whose seq is in ``counted``
    (when given) are returned, the others only feed context lines."""
    regex = linear.compile(pattern.regex)
    contexts = [(c, linear.compile(c.regex)) for c in pattern.context]
    state: list[tuple[int, dict[str, str]] | None] = [None] * len(contexts)
    hits: list[KmsgRecord] = []
    for lineno, rec in enumerate(records):
        msg = rec.message
        for i, (ctx, cregex) in enumerate(contexts):
            if _holds(ctx.contains, msg) and (cm := cregex.search(msg)) is not None:
                state[i] = (lineno, {k: v for k, v in cm.groupdict().items() if v is not None})
        if not _holds(pattern.contains, msg) or (m := regex.search(msg)) is None:
            continue
        caps = {k: v for k, v in m.groupdict().items() if v is not None}
        if any(caps.get(k) not in allowed for k, allowed in pattern.where.items()):
            continue
        for i, (ctx, _) in enumerate(contexts):
            seen = state[i]
            if seen is not None and lineno - seen[0] <= ctx.max_lines:
                caps = {**seen[1], **caps}
        if _in_scope(pattern, caps) and (counted is None or rec.seq in counted):
            hits.append(rec)
    return hits
