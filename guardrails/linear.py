"""Linear-time matching for untrusted text: RE2 (``google-re2``), never Python's ``re``.

Kernel lines, scopes, cgroup paths, process names, LLM tool arguments and alert labels are
chosen by whoever runs a process or sends a request. A backtracking engine lets such text
freeze the daemon (ARCHITECTURE.md, safety principle 7), so every pattern that meets it is
compiled here. RE2 rejects what it cannot run in linear time (lookarounds, backreferences);
that is an error, never a silent fallback to ``re``.

    from guardrails import linear
    rx = linear.compile(r"^cgroup:/[A-Za-z0-9_.@:/-]*$")   # raises linear.PatternError
    rx.search(text)                                       # groupdict(), group(), span()
    linear.glob("kernel.panic*").fullmatch("kernel.panic_on_oops")
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import re2

Pattern = Any  # re2._Regexp: the wrapper ships no type stubs
# RE2's default program budget (8 MiB) is ample for every shipped pattern; a pattern that
# needs more is refused at compile time rather than degrading at match time.
MAX_MEM = 8 << 20


class PatternError(ValueError):
    """A pattern RE2 cannot compile (a lookaround, a backreference, a syntax error)."""

    def __init__(self, pattern: str, problem: str) -> None:
        super().__init__(f"pattern {pattern[:80]!r} is not linear-time (RE2): {problem}")
        self.pattern = pattern
        self.problem = problem


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported once, as PatternError
    options.max_mem = MAX_MEM
    return options


def compile(pattern: str) -> Pattern:
    """Compile ``pattern`` with RE2; raises ``PatternError`` when RE2 refuses it."""
    return _compile(pattern)


@lru_cache(maxsize=1024)
def _compile(pattern: str) -> Pattern:
    try:
        return re2.compile(pattern, _options())
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        raise PatternError(pattern, text) from None


def check(pattern: str) -> str:
    """``pattern`` unchanged when RE2 compiles it; a pydantic-friendly validator."""
    compile(pattern)
    return pattern


def escape(text: str) -> str:
    """``text`` as a literal in RE2 syntax."""
    return str(re2.escape(text))


def glob_to_regex(glob: str, *, sep: str | None = None) -> str:
    """An fnmatch-style glob (``*``, ``?``, ``[...]``) as an RE2 pattern (use ``fullmatch``).

    ``fnmatch.translate`` emits Python-only syntax (``\\Z``, and lookahead plus
    backreference for several stars), so globs are translated here instead. With ``sep``
    (a path separator), ``*`` and ``?`` stay within one path component.
    """
    star, one = (".*", ".") if sep is None else (f"[^{escape(sep)}]*", f"[^{escape(sep)}]")
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        i += 1
        if c == "*":
            out.append(star)
        elif c == "?":
            out.append(one)
        elif c == "[":
            j = i
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                out.append(escape("["))  # no closing bracket: a literal, as fnmatch does
                continue
            body = glob[i:j].replace("\\", "\\\\")
            i = j + 1
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
        else:
            out.append(escape(c))
    return "(?s:" + "".join(out) + ")"


def glob(pattern: str) -> Pattern:
    """A compiled glob; use ``fullmatch``."""
    return compile(glob_to_regex(pattern))


def glob_union(patterns: tuple[str, ...] | list[str]) -> Pattern | None:
    """One compiled alternation of globs (``fullmatch``); None when there are none."""
    if not patterns:
        return None
    return compile("|".join(f"(?:{glob_to_regex(p)})" for p in patterns))


class PatternSet:
    """Many patterns matched against one text in a single RE2 pass (``RE2::Set``).

    ``match`` returns the indices (in the order added) of every pattern found in the text.
    Meant for sets of literals: their automaton stays small (about one state per literal
    character), far inside ``max_mem``, which RE2 would otherwise need at match time.
    """

    def __init__(self, patterns: list[str] | tuple[str, ...], max_mem: int = 64 << 20) -> None:
        options = _options()
        options.max_mem = max_mem
        self._set = re2.Set.SearchSet(options)
        for pattern in patterns:
            compile(pattern)  # one clear PatternError for a bad member
            self._set.Add(pattern)
        self._set.Compile()
        self.size = len(patterns)

    def match(self, text: str | bytes) -> list[int]:
        """Indices of the patterns that occur in ``text``."""
        return list(self._set.Match(text) or ())


_UNANCHORED = re2._Anchor.UNANCHORED


def spans(pattern: Pattern, data: bytes, pos: int = 0) -> list[tuple[int, int]] | None:
    """The group spans of the leftmost match in ``data[pos:]`` (index 0: the whole match;
    (-1, -1): a group that did not take part), or None without a match.

    Bytes in, byte offsets out, one RE2 call: for hot loops that cannot pay the wrapper's
    per-call match object and text-offset translation (about 3 us a call).
    """
    raw = getattr(pattern, "_regexp", None)
    if raw is not None:
        found = raw.Match(_UNANCHORED, data, pos, len(data))
        return None if found[0][0] < 0 else list(found)
    m = pattern.search(data, pos)  # a wrapper without the raw object: the same answer, slower
    return None if m is None else [m.span(i) for i in range(pattern.groups + 1)]
