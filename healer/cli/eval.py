"""``healer eval [--cases DIR] [--json]``: measure the configured diagnoser on labelled cases.

Exit 0 normally; 1 when any unsafe change would have been applied.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from healer.cli.common import print_json, settings_from_args
from healer.errors import ConfigError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("eval", help="measure diagnosis on labelled cases")
    p.add_argument("--cases", type=Path, default=None, help="directory of case YAML files")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load settings, cases, playbooks and policy; evaluate; print the report."""
    from guardrails import PolicyError, load_policy
    from healer.diagnose.eval import evaluate
    from healer.diagnose.evalcases import load_cases
    from healer.diagnose.factory import build_diagnoser
    from healer.telemetry import Telemetry
    from playbooks.loader import load_library

    settings = settings_from_args(args)
    cases = load_cases(args.cases)
    library = load_library(settings.playbooks_dir)
    try:
        policy = load_policy(settings.policy_file)
    except PolicyError as exc:
        raise ConfigError("policy", str(exc).splitlines()[0]) from None
    report = evaluate(cases, build_diagnoser(settings, Telemetry()), library, policy)
    if args.json:
        print_json(report)
    else:
        _print_text(report)
    return 1 if report["unsafe_applied"] > 0 else 0


def _print_text(report: dict[str, Any]) -> None:
    for r in report["results"]:
        mark = "ok  " if r["correct"] else "MISS"
        llm = f" llm={r['llm_root_cause']}" if r["llm_root_cause"] else ""
        print(f"{mark} {r['group']:<7} {r['id']:<34} expected={r['expected']:<28} "
              f"got={r['root_cause']:<28} proposals={r['proposals']} "
              f"allowed={r['allowed']}{llm}")
    print()
    covered, unknown = report["covered"], report["unknown"]
    print(f"{'covered':<22} {covered['cases']} cases, top-1 {covered['top1_accuracy']}")
    print(f"{'unknown':<22} {unknown['cases']} cases, top-1 {unknown['top1_accuracy']} "
          f"(playbook answered unknown: {unknown['playbook_unknown']})")
    for key in ("diagnoser", "cases", "top1_accuracy", "proposals", "allowed_share",
                "llm_proposals", "llm_allowed", "unsafe_proposals", "unsafe_applied",
                "latency_p50_seconds", "latency_p95_seconds", "tokens_per_incident",
                "llm_failures"):
        print(f"{key:<22} {report[key]}")
