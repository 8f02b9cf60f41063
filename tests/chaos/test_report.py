"""Reports come from a result list alone, render offline, and summarise correctly."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chaos.report import write_report
from chaos.result import ScenarioResult
from chaos.runner import summarize


def _results() -> list[ScenarioResult]:
    out = []
    for i, (name, passed, det, mttr) in enumerate(
        [
            ("listen-overflow", True, 1.0, 8.0),
            ("pids-exhaustion", True, 2.0, 12.0),
            ("gpu-xid", False, 3.0, None),
            ("cgroup-oom", True, 5.0, 20.0),
        ]
    ):
        r = ScenarioResult(
            scenario=name,
            passed=passed,
            detected=True,
            detect_seconds=det,
            mttr_seconds=mttr,
            outcome="verified" if passed else "escalated",
            steady_state_before=True,
            steady_state_after=True,
        )
        r.timeline.metric = "overflows/s"
        r.timeline.t0 = 1000.0
        for s in range(-2, 20):
            r.timeline.add(float(max(0, 10 - abs(s - 5 - i))), at=1000.0 + s)
        for label, t in (("inject", 1000.0), ("detect", 1001.0 + i), ("verify", 1015.0)):
            r.timeline.mark(label, t)
        if not passed:
            r.fail("notified for [] <script>alert(1)</script>")
        out.append(r)
    skipped = ScenarioResult(
        scenario="prompt-injection", skipped=True, skip_reason="needs the test LLM server"
    )
    return [*out, skipped]


def test_summary_counts_skips_apart_and_gives_percentiles() -> None:
    s = summarize(_results())
    assert (s["total"], s["ran"], s["passed"], s["failed"], s["skipped"]) == (5, 4, 3, 1, 1)
    assert s["pass_rate"] == 0.75
    assert s["detect_p50_seconds"] == 2.5  # of 1, 2, 3, 5
    assert s["detect_p95_seconds"] == 4.7
    assert s["mttr_p50_seconds"] == 12.0  # of 8, 12, 20
    assert s["skipped_scenarios"] == {"prompt-injection": "needs the test LLM server"}
    assert s["failed_scenarios"] == ["gpu-xid"]


def test_report_files_are_self_contained_with_one_chart_per_scenario(tmp_path: Path) -> None:
    results = _results()
    files = write_report(tmp_path, [r.to_dict(timeline=True) for r in results], summarize(results))
    assert sorted(p.name for p in files) == ["report.html", "report.json", "report.md"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") == 4  # the skipped scenario has no timeline
    assert not re.search(r"""(?:src|href)=["']?https?:""", html), "no external resources"
    assert "<script>" not in html and "&lt;script&gt;" in html
    for label in ("inject", "detect", "verify"):
        assert f">{label}</text>" in html
    assert "Pass rate 75%" in html
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["summary"]["passed"] == 3
    assert data["scenarios"][0]["timeline"]["events"][0] == [0.0, "inject"]
    assert data["scenarios"][0]["timeline"]["points"][0] == [-2.0, 3.0]
    md = (tmp_path / "report.md").read_text()
    assert "| gpu-xid | FAIL |" in md and "| prompt-injection | skip |" in md


def test_result_json_has_every_field_scenarios_md_names() -> None:
    d = ScenarioResult(scenario="x").to_dict()
    for field in (
        "scenario",
        "passed",
        "detected",
        "detect_seconds",
        "root_cause",
        "expected_root_cause",
        "actions",
        "outcome",
        "mttr_seconds",
        "steady_state_before",
        "steady_state_after",
        "host_untouched",
    ):
        assert field in d
    assert "timeline" not in d
