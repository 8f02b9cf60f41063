"""Line charts as generated inline SVG: no scripts, no fonts, no network; renders offline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

W, H = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 34, 30
COLORS = {
    "inject": "#d62728",
    "detect": "#ff7f0e",
    "apply": "#1f77b4",
    "approve": "#9467bd",
    "verify": "#2ca02c",
    "recovered": "#17becf",
    "rollback": "#8c564b",
    "revert": "#7f7f7f",
    "superseded": "#e377c2",
    "kill -9": "#000000",
    "restart": "#bcbd22",
}


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo or 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-2):
        return f"{v:.1e}"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def line_chart(
    points: Sequence[Sequence[float]],
    events: Sequence[Sequence[object]],
    title: str = "",
    x_label: str = "seconds since inject",
) -> str:
    """An SVG line chart of (x, y) points with labelled vertical markers at event times."""
    xs = [float(p[0]) for p in points] + [float(e[0]) for e in events]  # type: ignore[arg-type]
    ys = [float(p[1]) for p in points] or [0.0]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x1 = x1 if x1 > x0 else x0 + 1
    y0, y1 = min(0.0, min(ys)), max(ys)
    y1 = y1 * 1.1 if y1 > y0 else y0 + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return TOP + ph - (y - y0) / (y1 - y0) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" role="img" aria-label="{escape(title)}" font-family="sans-serif" '
        f'font-size="11">',
        f'<rect width="{W}" height="{H}" fill="#fff"/>',
        f'<text x="{LEFT}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    for t in _ticks(y0, y1):
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
            f'stroke="#eee"/><text x="{LEFT - 4}" y="{sy(t) + 4:.1f}" '
            f'text-anchor="end">{_fmt(t)}</text>'
        )
    for t in _ticks(x0, x1, 8):
        out.append(f'<text x="{sx(t):.1f}" y="{H - 12}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(
        f'<text x="{W - RIGHT}" y="{H - 1}" text-anchor="end" fill="#666">{escape(x_label)}</text>'
    )
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    if points:
        path = " ".join(f"{sx(float(p[0])):.1f},{sy(float(p[1])):.1f}" for p in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="#1f4e79" stroke-width="1.6"/>')
    marks = sorted((float(e[0]), str(e[1])) for e in events)  # type: ignore[arg-type]
    for i, (t, label) in enumerate(marks):
        x, color = sx(t), COLORS.get(label, "#444")
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="{color}" '
            f'stroke-dasharray="4 3"/><text x="{x + 2:.1f}" y="{TOP - 4 - 10 * (i % 2)}" '
            f'fill="{color}">{escape(str(label))}</text>'
        )
    out.append("</svg>")
    return "".join(out)
