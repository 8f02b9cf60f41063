"""The whole expression language of playbook remedies: a table of named pure operators.

Grammar (recursive descent, no ``eval``; bounded length and depth)::

    expr   := term ('+' term)*
    term   := factor ('*' factor)*
    factor := NUMBER | 'current' | CALL | '(' expr ')'
    CALL   := OP '(' args ')'      OP in OPERATORS
    NAME   := [A-Za-z_][A-Za-z0-9_.{}:-]*   (the argument of value/peak/capture)

``value(name)``, ``peak(name)`` and ``capture(name)`` take a *name*, not an expression;
``{label}`` placeholders in the name are filled from the incident's captures when evaluated.
Anything else, including an unknown operator, is a parse error at load time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from guardrails import linear

MAX_EXPR_CHARS = 256
MAX_DEPTH = 12
_TOKEN_RE = re.compile(
    r"\s*(?:(?P<num>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.{}:/-]*)|(?P<op>[(),*+]))"
)
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DIGITS_RE = linear.compile(r"[0-9]{1,20}")  # captures are untrusted: RE2


class ExprError(ValueError):
    """An expression did not parse (load time) or could not be evaluated (render time)."""


@dataclass(frozen=True)
class EvalContext:
    """What an expression may read: the current value, facts, metric windows and captures."""

    current: float | None
    facts: Mapping[str, float]
    series: Mapping[str, Sequence[tuple[float, float]]]
    captures: Mapping[str, str]

    def resolve(self, name: str) -> str:
        """Fill ``{label}`` placeholders from captures; a missing label is an error."""

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in self.captures:
                raise ExprError(f"no capture {m.group(1)!r} for {name!r}")
            return self.captures[m.group(1)]

        return _PLACEHOLDER_RE.sub(sub, name)


class Expr:
    """A parsed expression node."""

    def evaluate(self, ctx: EvalContext) -> float:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Num(Expr):
    value: float

    def evaluate(self, ctx: EvalContext) -> float:
        return self.value


@dataclass(frozen=True)
class Current(Expr):
    def evaluate(self, ctx: EvalContext) -> float:
        if ctx.current is None:
            raise ExprError("current value unknown")
        return ctx.current


@dataclass(frozen=True)
class NameRef(Expr):
    """value(name) / peak(name) / capture(name)."""

    op: str
    name: str

    def evaluate(self, ctx: EvalContext) -> float:
        name = ctx.resolve(self.name)
        if self.op == "value":
            if name in ctx.facts:
                return ctx.facts[name]
            points = ctx.series.get(name)
            if points:
                return points[-1][1]
            raise ExprError(f"no value for {name!r}")
        if self.op == "peak":
            points = ctx.series.get(name)
            if not points:
                raise ExprError(f"no series for {name!r}")
            return max(v for _, v in points)
        raw = ctx.captures.get(name)  # capture: untrusted text, accepted only as digits
        if raw is None or not _DIGITS_RE.fullmatch(raw):
            raise ExprError(f"capture {name!r} is not a number")
        return float(int(raw))


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


# name -> (arity or -1 for "2 or more", function). The whole language.
OPERATORS: dict[str, tuple[int, Callable[..., float]]] = {
    "max": (-1, max),
    "min": (-1, min),
    "clamp": (3, _clamp),
    "mul": (2, lambda a, b: a * b),
    "add": (2, lambda a, b: a + b),
    "pct": (2, lambda x, p: x * p / 100.0),
}
NAME_OPERATORS = ("value", "peak", "capture")


@dataclass(frozen=True)
class Call(Expr):
    op: str
    args: tuple[Expr, ...]

    def evaluate(self, ctx: EvalContext) -> float:
        if self.op == "coalesce":  # first argument that evaluates
            for arg in self.args:
                try:
                    return arg.evaluate(ctx)
                except ExprError:
                    continue
            raise ExprError("coalesce: no argument had a value")
        result = float(OPERATORS[self.op][1](*(a.evaluate(ctx) for a in self.args)))
        if not math.isfinite(result):
            raise ExprError(f"{self.op}: result not finite")
        return result


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise ExprError("unexpected end of expression")
        tok = self.tokens[self.pos]
        if expected is not None and tok[1] != expected:
            raise ExprError(f"expected {expected!r}, got {tok[1]!r}")
        self.pos += 1
        return tok

    def expr(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise ExprError("expression nested too deeply")
        node = self.term(depth)
        while self.peek() == "+":
            self.take()
            node = Call("add", (node, self.term(depth)))
        return node

    def term(self, depth: int) -> Expr:
        node = self.factor(depth)
        while self.peek() == "*":
            self.take()
            node = Call("mul", (node, self.factor(depth)))
        return node

    def factor(self, depth: int) -> Expr:
        kind, text = self.take()
        if kind == "num":
            return Num(float(text))
        if text == "(":
            node = self.expr(depth + 1)
            self.take(")")
            return node
        if kind != "name":
            raise ExprError(f"unexpected {text!r}")
        if text == "current":
            return Current()
        return self.call(text, depth)

    def call(self, op: str, depth: int) -> Expr:
        if op not in OPERATORS and op not in NAME_OPERATORS and op != "coalesce":
            raise ExprError(f"unknown operator {op!r}")
        self.take("(")
        if op in NAME_OPERATORS:
            kind, name = self.take()
            if kind != "name":
                raise ExprError(f"{op}() takes a name, got {name!r}")
            self.take(")")
            return NameRef(op, name)
        args = [self.expr(depth + 1)]
        while self.peek() == ",":
            self.take()
            args.append(self.expr(depth + 1))
        self.take(")")
        arity = OPERATORS[op][0] if op in OPERATORS else -1
        if (arity == -1 and len(args) < 2) or (arity >= 0 and len(args) != arity):
            raise ExprError(f"{op}() takes {'2 or more' if arity < 0 else arity} arguments")
        return Call(op, tuple(args))


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"unexpected character {text[pos:pos + 1]!r} at {pos}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


def parse_expr(text: str | int | float) -> Expr:
    """Parse an expression (or a plain number) into a tree; raises ``ExprError``."""
    if isinstance(text, bool):
        raise ExprError("expected a number or an expression, got a boolean")
    if isinstance(text, int | float):
        return Num(float(text))
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters")
    parser = _Parser(text)
    if not parser.tokens:
        raise ExprError("empty expression")
    node = parser.expr(0)
    if parser.pos != len(parser.tokens):
        raise ExprError(f"unexpected {parser.tokens[parser.pos][1]!r} after expression")
    return node


def placeholders(text: str) -> list[str]:
    """The ``{label}`` names used in a metric name or message template."""
    return _PLACEHOLDER_RE.findall(text)


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``{label}`` placeholders; raises ``ExprError`` on a missing label."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise ExprError(f"no value for {{{m.group(1)}}}")
        return values[m.group(1)]

    return _PLACEHOLDER_RE.sub(sub, template)
