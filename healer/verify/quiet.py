"""``quiet_kmsg`` verification: no new kernel-log line of the playbook's kind in the window.

A remedy for repeated kernel events (OOM kills in a cgroup, fork rejections by the pids
controller) works when the events stop. The playbook's ``kmsg`` signals say what a line
looks like; the spec stores them as ``KmsgPattern`` values (storable in the journal), with
the incident's scope pinned: a line counts only when its captured ``cgroup`` is the
action's cgroup or below it. A line whose cgroup cannot be told (no capture, the context
line out of reach) counts too: when in doubt, the fix is judged not to have worked and
the original value is restored, which is the state the operator last chose.

Matching follows healer.detect.kmsg: literal pre-filter, an RE2 search (kernel text is
untrusted: linear time), ``where`` filters,
and context lines (the memcg OOM report's ``oom_memcg=`` line) merged into the next match
within ``max_lines``. Pure: records come in as data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from guardrails import linear
from healer.models import KmsgContextPattern, KmsgPattern, KmsgRecord
from playbooks.schema import Kmsg, Signal

SCOPE_CAPTURES = ("cgroup",)  # captures that pin a line to the incident's scope


def patterns_from_signals(signals: Iterable[Signal], labels: Mapping[str, str]) -> tuple[
        KmsgPattern, ...]:
    """``KmsgPattern`` for each playbook ``kmsg`` signal, scoped by the labels it can capture."""
    out = []
    for sig in signals:
        if not isinstance(sig, Kmsg) or sig.role == "part":
            continue  # a report's middle lines say nothing about whether the fault goes on
        pattern = KmsgPattern(
            contains=sig.contains, regex=sig.regex,
            where={k: tuple(v) for k, v in sig.where.items()},
            context=tuple(KmsgContextPattern(contains=c.contains, regex=c.regex,
                                             max_lines=c.max_lines) for c in sig.context))
        scope = {k: labels[k] for k in SCOPE_CAPTURES if k in labels and k in pattern.captures()}
        out.append(pattern.model_copy(update={"scope": scope}))
    return tuple(out)


def _holds(contains: str | tuple[str, ...], msg: str) -> bool:
    """The literal pre-filter: one literal, or several (any one)."""
    return (contains in msg) if isinstance(contains, str) else any(c in msg for c in contains)


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
             counted: set[int] | None = None) -> list[tuple[KmsgRecord, dict[str, str]]]:
    """Records matching ``pattern`` in its scope, with their captures (context lines'
    merged in); only those whose seq is in ``counted`` (when given) are returned, the
    others only feed context lines."""
    regex = linear.compile(pattern.regex)
    contexts = [(c, linear.compile(c.regex)) for c in pattern.context]
    state: list[tuple[int, dict[str, str]] | None] = [None] * len(contexts)
    hits: list[tuple[KmsgRecord, dict[str, str]]] = []
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
            hits.append((rec, caps))
    return hits
