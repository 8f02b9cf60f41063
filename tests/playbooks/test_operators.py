"""The expression language: a table of named pure operators, parsed at load time."""

from __future__ import annotations

import pytest

from playbooks.operators import EvalContext, ExprError, parse_expr


def ev(text: str, current: float | None = None, **kw: object) -> float:
    ctx = EvalContext(current, kw.get("facts", {}), kw.get("series", {}),  # type: ignore[arg-type]
                      kw.get("captures", {}))  # type: ignore[arg-type]
    return parse_expr(text).evaluate(ctx)


def test_somaxconn_expression_from_the_issue() -> None:
    expr = "clamp(max(current*4, 4096), 128, 65535)"
    assert ev(expr, 16) == 4096
    assert ev(expr, 8192) == 32768
    assert ev(expr, 60000) == 65535


def test_sugar_binds_like_arithmetic() -> None:
    assert ev("1 + 2 * 3") == 7
    assert ev("(1 + 2) * 3") == 9
    assert ev("mul(add(1, 2), 3)") == 9


def test_named_operators() -> None:
    assert ev("min(3, 1, 2)") == 1
    assert ev("pct(200, 10)") == 20
    assert ev("value(net.core.somaxconn)", facts={"net.core.somaxconn": 16.0}) == 16
    assert ev("peak(m.x)", series={"m.x": [(0.0, 1.0), (1.0, 9.0), (2.0, 3.0)]}) == 9
    assert ev("capture(limit_kb)", captures={"limit_kb": "102400"}) == 102400
    assert ev("coalesce(value(missing), 7)") == 7


def test_placeholders_in_names_are_filled_from_captures() -> None:
    series = {"cgroup./a.memory.current_bytes": [(0.0, 5.0)]}
    assert ev("peak(cgroup.{cgroup}.memory.current_bytes)", series=series,
              captures={"cgroup": "/a"}) == 5


@pytest.mark.parametrize("text", [
    "system('reboot')", "__import__(os)", "current - 1", "max(1)", "clamp(1, 2)",
    "max(1, 2", "1 2", "", "current ** 2", "value(1)", "peak(max(1, 2))", "x" * 300,
    "(" * 40 + "1" + ")" * 40,
])
def test_anything_outside_the_operator_table_is_a_parse_error(text: str) -> None:
    with pytest.raises(ExprError):
        parse_expr(text)


def test_unknown_current_and_non_numeric_capture_fail_at_evaluation() -> None:
    with pytest.raises(ExprError, match="current"):
        ev("current * 2")
    with pytest.raises(ExprError, match="not a number"):
        ev("capture(pid)", captures={"pid": "1; rm -rf /"})
    with pytest.raises(ExprError):
        ev("mul(1e300, 1e300)")
