"""``healer chaos list|run NAME|suite``: thin wrapper over the chaos package (which drives a
real ``healer run`` subprocess and imports nothing of healer)."""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any, Literal

POINTS: tuple[Literal["low", "middle", "high"], ...] = ("low", "middle", "high")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("chaos", help="inject real faults into a sandbox and watch healer heal them")
    cs = p.add_subparsers(dest="chaos_command", metavar="SUBCOMMAND")
    ls = cs.add_parser("list", help="list the scenarios")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    run = cs.add_parser("run", help="run one scenario")
    run.add_argument("name")
    run.add_argument("--json", action="store_true", help="print the result as one JSON object")
    run.add_argument("--report", type=Path, default=None, help="write report.{json,md,html} here")
    run.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, state db)")
    _severity_args(run)
    run.add_argument("--point", choices=POINTS, default=None,
                     help="run at this point of the scenario's range instead of a draw")
    _skip_arg(run)
    run.set_defaults(func=_run)
    suite = cs.add_parser("suite", help="run every scenario (or the quick CI subset)")
    suite.add_argument("--quick", action="store_true", help="the CI subset (< 5 min)")
    suite.add_argument("--json", action="store_true")
    suite.add_argument("--report", type=Path, default=None)
    suite.add_argument("--keep", action="store_true")
    _severity_args(suite)
    suite.add_argument("--sweep", action="store_true",
                       help="run each scenario that has a range at its low, middle and high "
                            "points (scenarios without one are not run)")
    _skip_arg(suite)
    suite.set_defaults(func=_suite)
    p.set_defaults(func=lambda args: _usage(p))


def _skip_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-skipped", action="store_true",
                   help="exit 0 even when every scenario was skipped (nothing was checked)")


def _status(summary: dict[str, Any], allow_skipped: bool) -> int:
    """1 when a scenario failed, or when none ran and the caller did not accept that: a run
    that checked nothing must not read as a pass."""
    if summary["failed"]:
        return 1
    if summary["ran"] == 0 and not allow_skipped:
        reasons = sorted(set(summary["skipped_scenarios"].values()))
        print(f"chaos: every scenario was skipped, nothing was checked ({'; '.join(reasons)}); "
              "--allow-skipped accepts that", file=sys.stderr)
        return 1
    return 0


def _severity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the fault sizes drawn from each scenario's range (printed)")


def _sized(names: list[str], args: argparse.Namespace) -> list[Any]:
    """The scenarios at their sizes: each sweep point, one given point, or a seeded draw."""
    from chaos.scenarios import registry

    reg = registry()
    if getattr(args, "sweep", False):
        return [reg[n].sized(p) for n in names if reg[n].severity for p in POINTS]
    point = getattr(args, "point", None)
    if point is not None:
        return [reg[n].sized(point) for n in names]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    if any(reg[n].severity for n in names):
        # stderr: stdout carries the JSON; the seed must be seen either way
        print(f"chaos: seed {seed} (--seed {seed} draws the same fault sizes)", file=sys.stderr,
              flush=True)
    return [reg[n].sized("draw", seed) for n in names]


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _list(args: argparse.Namespace) -> int:
    from chaos.scenarios import registry

    reg = registry()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": n,
                        "title": s.title,
                        "expected_root_cause": s.expected_root_cause,
                        "quick": s.quick,
                        "severity": s.severity_info(),
                        "skip_reason": s.unavailable(),
                    }
                    for n, s in reg.items()
                ]
            )
        )
        return 0
    for n, s in reg.items():
        flag = "quick" if s.quick else "     "
        print(f"{n:<22} {flag}  {s.title}")
    return 0


def _execute(
    names: list[str], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from chaos.progress import Progress
    from chaos.runner import run_suite, summarize

    scenarios = _sized(names, args)
    progress = Progress(len(scenarios))
    stream_lines = not args.json and not progress.live  # quiet, machine-readable: JSON lines

    def done(r: Any) -> None:
        progress.finished(r)
        if stream_lines:
            print(json.dumps(r.to_dict()), flush=True)

    results = run_suite(scenarios, keep=args.keep, status=progress.status, done=done)
    summary = summarize(results)
    if args.report:
        from chaos.report import write_report

        write_report(args.report, [r.to_dict(timeline=True) for r in results], summary)
    return [r.to_dict() for r in results], summary


def _run(args: argparse.Namespace) -> int:
    from chaos.scenarios import registry

    reg = registry()
    if args.name not in reg:
        print(f"healer: unknown scenario {args.name!r}; valid: {', '.join(reg)}", file=sys.stderr)
        return 2
    results, summary = _execute([args.name], args)
    r = results[0]
    if args.json:
        print(json.dumps(r))
    elif sys.stdout.isatty():
        _print_table(results, summary)
    return _status(summary, args.allow_skipped)


def _suite(args: argparse.Namespace) -> int:
    from chaos.scenarios import quick_names, registry

    names = quick_names() if args.quick else list(registry())
    results, summary = _execute(names, args)
    if args.json:
        print(json.dumps({"scenarios": results, "summary": summary}))
    elif sys.stdout.isatty():
        _print_table(results, summary)
    else:
        print(json.dumps({"summary": summary}))
        # The plain closing line CI runners read, like a test runner's.
        print(f"chaos: {summary['passed']} passed, {summary['failed']} failed, "
              f"{summary['skipped']} skipped")
    return _status(summary, args.allow_skipped)


def _print_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    from chaos.report import summary_table

    print(summary_table(results, summary))
