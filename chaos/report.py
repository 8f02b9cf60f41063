"""Suite reports: report.json, report.md and a self-contained report.html (inline SVG charts)."""

from __future__ import annotations

import json
import platform
import time
from html import escape
from pathlib import Path
from typing import Any

from chaos.svg import line_chart


def _n(v: Any, unit: str = "s") -> str:
    return "–" if v is None else f"{v:.2f}{unit}" if isinstance(v, float) else str(v)


def _verdict(r: dict[str, Any]) -> str:
    return "skip" if r.get("skipped") else ("PASS" if r.get("passed") else "FAIL")


def _label(r: dict[str, Any]) -> str:
    sev = r.get("severity")
    return f"{r['scenario']}@{sev['point']}={sev['value']}{sev['unit']}" if sev else r["scenario"]


def _steps(r: dict[str, Any]) -> str:
    """A convergence's steps and verdicts, one line: 16->4096 insufficient, ... stopped."""
    steps = [f"{s['old']}->{s['new']} {s['outcome'] or s['state']}" for s in r.get("steps", [])]
    stop = f"; stopped at the {r['stopped']}" if r.get("stopped") else ""
    return ("; ".join(steps) or "–") + stop


def _why(r: dict[str, Any]) -> str:
    return str(r.get("skip_reason") or "; ".join(r.get("failures") or []))


def summary_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The markdown summary table (also what the README quotes)."""
    rows = [
        "| scenario | result | detected | detect | root cause | outcome | steps | MTTR "
        "| host untouched |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {_label(r)} | {_verdict(r)} | {'yes' if r.get('detected') else 'no'} | "
            f"{_n(r.get('detect_seconds'))} | {r.get('root_cause') or '–'} | {r.get('outcome')} | "
            f"{_steps(r)} | {_n(r.get('mttr_seconds'))} | "
            f"{'yes' if r.get('host_untouched') else 'NO'} |"
        )
    rate = summary.get("pass_rate")
    rows.append("")
    rows.append(
        f"Passed {summary['passed']}/{summary['ran']} that ran "
        f"({'–' if rate is None else f'{rate:.0%}'}), {summary['skipped']} skipped "
        f"(skipped is not failed). Detection p50 {_n(summary['detect_p50_seconds'])}, "
        f"p95 {_n(summary['detect_p95_seconds'])}; MTTR p50 {_n(summary['mttr_p50_seconds'])}, "
        f"p95 {_n(summary['mttr_p95_seconds'])}."
    )
    return "\n".join(rows)


def to_markdown(
    results: list[dict[str, Any]], summary: dict[str, Any], meta: dict[str, Any]
) -> str:
    """report.md."""
    out = [
        f"# healer chaos report\n\n{meta['when']} on {meta['host']} ({meta['cpus']} CPUs)\n",
        summary_table(results, summary),
        "",
    ]
    for r in results:
        out.append(f"## {_label(r)}: {_verdict(r)}\n")
        if r.get("severity"):
            sev = r["severity"]
            seed = "" if sev["seed"] is None else f", seed {sev['seed']}"
            out.append(f"- severity: {sev['value']}{sev['unit']} ({sev['point']} of "
                       f"{sev['low']}-{sev['high']}{seed})")
        if r.get("steps"):
            out.append(f"- steps: {_steps(r)}")
        if _why(r):
            out.append(f"- why: {_why(r)}")
        out.append(
            f"- expected root cause: {r.get('expected_root_cause') or '–'}; "
            f"got: {r.get('root_cause') or '–'}"
        )
        for a in r.get("actions", []):
            out.append(
                f"- action {a['kind']} {a['scope']} {a['key']}: {a['old']} -> {a['new']}, "
                f"{a['verdict']}, {a['state']}"
            )
        if r.get("checks"):
            out.append(f"- checks: `{json.dumps(r['checks'], default=str)}`")
        out.append("")
    return "\n".join(out)


_CSS = """body{font-family:sans-serif;margin:2em;max-width:900px;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
.PASS{color:#2ca02c;font-weight:bold}.FAIL{color:#d62728;font-weight:bold}.skip{color:#777}
section{margin-top:2em;border-top:1px solid #ddd}code{font-size:12px}"""


def to_html(results: list[dict[str, Any]], summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """report.html: one page, inline CSS and SVG, no external resources."""
    head = (
        "<tr><th>scenario</th><th>result</th><th>detect</th><th>root cause</th>"
        "<th>outcome</th><th>steps</th><th>MTTR</th><th>host untouched</th></tr>"
    )
    rows = "".join(
        f"<tr><td><a href='#{escape(_label(r))}'>{escape(_label(r))}</a></td>"
        f"<td class='{_verdict(r)}'>{_verdict(r)}</td><td>{_n(r.get('detect_seconds'))}</td>"
        f"<td>{escape(str(r.get('root_cause') or '–'))}</td>"
        f"<td>{escape(str(r.get('outcome')))}</td><td>{escape(_steps(r))}</td>"
        f"<td>{_n(r.get('mttr_seconds'))}</td>"
        f"<td>{'yes' if r.get('host_untouched') else 'NO'}</td></tr>"
        for r in results
    )
    s = summary
    rate = "–" if s.get("pass_rate") is None else f"{s['pass_rate']:.0%}"
    stats = (
        f"<p>Pass rate {rate} ({s['passed']}/{s['ran']} that ran; {s['skipped']} skipped, "
        f"which is not a failure). Detection p50 {_n(s['detect_p50_seconds'])}, p95 "
        f"{_n(s['detect_p95_seconds'])}. MTTR p50 {_n(s['mttr_p50_seconds'])}, p95 "
        f"{_n(s['mttr_p95_seconds'])}.</p>"
    )
    sections = "".join(_section(r) for r in results)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>healer chaos report</title>"
        f"<style>{_CSS}</style></head><body><h1>healer chaos report</h1>"
        f"<p>{escape(meta['when'])} on {escape(meta['host'])} ({meta['cpus']} CPUs)</p>"
        f"<table>{head}{rows}</table>{stats}{sections}</body></html>"
    )


def _section(r: dict[str, Any]) -> str:
    tl = r.get("timeline") or {}
    chart = (
        line_chart(tl.get("points", []), tl.get("events", []), tl.get("metric", ""))
        if tl.get("points") or tl.get("events")
        else "<p>(no timeline)</p>"
    )
    acts = "".join(
        f"<li><code>{escape(a['kind'])} {escape(str(a['scope']))} {escape(str(a['key']))}</code>: "
        f"{escape(str(a['old']))} → {escape(str(a['new']))}, {escape(str(a['verdict']))}, "
        f"{escape(str(a['state']))}</li>"
        for a in r.get("actions", [])[:20]
    )
    why = f"<p>{escape(_why(r))}</p>" if _why(r) else ""
    return (
        f"<section id='{escape(_label(r))}'><h2>{escape(_label(r))}: "
        f"<span class='{_verdict(r)}'>{_verdict(r)}</span></h2>{why}{chart}"
        f"<ul>{acts}</ul><p><code>{escape(json.dumps(r.get('checks', {}), default=str))}"
        f"</code></p></section>"
    )


def write_report(
    directory: Path, results: list[dict[str, Any]], summary: dict[str, Any]
) -> list[Path]:
    """Write report.json, report.md and report.html; results carry their timelines."""
    import os

    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
    }
    files = {
        "report.json": json.dumps(
            {"scenarios": results, "summary": summary, "meta": meta}, indent=1, default=str
        ),
        "report.md": to_markdown(results, summary, meta),
        "report.html": to_html(results, summary, meta),
    }
    out = []
    for name, text in files.items():
        (directory / name).write_text(text)
        out.append(directory / name)
    return out
