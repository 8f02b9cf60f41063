"""Guard throughput: decisions per second on one core and the p99 latency of one ``check``.

Target (issue #4): at least 50,000 decisions per second per core. The mix is what the
daemon and a hostile LLM produce: bounded raises that pass, protected keys, out-of-range
values, unknown sysctls, cgroup/rlimit/GPU changes with facts, messages, and a journal
history of 20 entries per context. Actions are parsed once, as the daemon does; the time
is ``check`` alone. Usage: ``python bench/guard_throughput.py [--json] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from guardrails import CheckContext, HistoryEntry, check, load_policy, parse_action

TARGET_PER_SECOND = 50_000
MiB = 1024 * 1024


def _mix(now: datetime) -> list[tuple[Any, CheckContext]]:
    history = tuple(
        HistoryEntry(
            target=f"sysctl_write:host:net.core.k{i}",
            ts=now - timedelta(minutes=3 * i),
            state="verified" if i % 3 else "rolled_back",
            value=str(1024 * i),
        )
        for i in range(20)
    )
    facts = {
        "hard_limit": 4096.0,
        "gpu_min_watts": 100.0,
        "gpu_max_watts": 400.0,
        "cgroup_budget_bytes": 2048.0 * MiB,
        "host_memory_bytes": 16384.0 * MiB,
    }

    def ctx(current: str | None, **kw: Any) -> CheckContext:
        return CheckContext(now=now, current=current, facts=facts, history=history, **kw)

    netns = "netns:chaos-1"
    cases: list[tuple[dict[str, Any], CheckContext]] = [
        (
            {"kind": "sysctl_write", "scope": netns, "key": "net.core.somaxconn", "value": "4096"},
            ctx("16", confine=(netns, "cgroup:/healer-chaos")),
        ),
        (
            {"kind": "sysctl_write", "key": "kernel.panic", "value": "1"},
            ctx("0", provenance="llm", in_playbook=False),
        ),
        ({"kind": "sysctl_write", "key": "net.core.somaxconn", "value": "100000"}, ctx("4096")),
        ({"kind": "sysctl_write", "key": "net.ipv4.tcp_fin_timeout", "value": "30"}, ctx("60")),
        (
            {
                "kind": "cgroup_limit",
                "scope": "cgroup:/healer-chaos/w",
                "path": "/healer-chaos/w",
                "knob": "memory.max",
                "value": str(180 * MiB),
            },
            ctx(str(100 * MiB)),
        ),
        (
            {"kind": "cgroup_limit", "path": "/healer-chaos/w", "knob": "pids.max", "value": "80"},
            ctx("20"),
        ),
        ({"kind": "process_rlimit", "pid": 4242, "resource": "nofile", "soft": 4096}, ctx("64")),
        ({"kind": "gpu_power_limit", "scope": "gpu:0", "index": 0, "watts": 270}, ctx("300")),
        (
            {"kind": "gpu_compute_mode", "index": 0, "mode": "exclusive_process"},
            ctx(None, approvals=("alice",)),
        ),
        ({"kind": "notify", "message": "gpu 0: Xid 79, fell off the bus"}, ctx(None)),
    ]
    return [(parse_action(a), c) for a, c in cases]


def throughput(mix: list[tuple[Any, CheckContext]], policy: Any, rounds: int) -> float:
    """Decisions per second over ``rounds`` passes of the mix."""
    start = time.perf_counter()
    for _ in range(rounds):
        for action, context in mix:
            check(action, context, policy)
    return rounds * len(mix) / (time.perf_counter() - start)


def latencies_us(mix: list[tuple[Any, CheckContext]], policy: Any, rounds: int) -> list[float]:
    """The latency of each single ``check`` call, in microseconds."""
    out: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for action, context in mix:
            t0 = clock()
            check(action, context, policy)
            out.append((clock() - t0) / 1000.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10_000, help="passes of the mix per repeat")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says
    policy = load_policy()
    mix = _mix(datetime.now(UTC))
    throughput(mix, policy, 500)  # warm caches (rule lookup memo, regex)
    rates = [throughput(mix, policy, args.rounds) for _ in range(args.repeats)]
    lat = sorted(latencies_us(mix, policy, max(1, args.rounds // 2)))
    result = {
        "decisions_per_second": round(statistics.median(rates)),
        "target_per_second": TARGET_PER_SECOND,
        "meets_target": statistics.median(rates) >= TARGET_PER_SECOND,
        "p50_us": round(lat[len(lat) // 2], 2),
        "p99_us": round(lat[int(len(lat) * 0.99)], 2),
        "repeats": args.repeats,
        "checks_per_repeat": args.rounds * len(mix),
        "mix": len(mix),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"guard: {result['decisions_per_second']:,} decisions/s on one core "
            f"(target {TARGET_PER_SECOND:,}: {'ok' if result['meets_target'] else 'MISSED'}); "
            f"p50 {result['p50_us']} us, p99 {result['p99_us']} us per check "
            f"(median of {args.repeats} repeats, {result['checks_per_repeat']:,} checks each)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
