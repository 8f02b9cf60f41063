"""``healer host add ID`` and ``healer fleet pause|resume [REMEDY]|status``: a control
plane's hosts and its kill switch, against the configured database
(``HEALER_DATABASE_URL``, the control plane's PostgreSQL).

``host add`` prints the host's token as its LAST line (``| tail -n1``): the agent's
``HEALER_AGENT_TOKEN``, bound to that host, shown once. ``fleet pause`` stops every
automatic action fleet-wide (or of one remedy, ``playbook:kind:target``, or on the hosts
``--hosts rack=r12`` selects) and reaches every agent within two seconds; it never blocks
a rollback. ``fleet resume`` lifts it; with a remedy it also closes that remedy's
breaker, and fleet-wide it resolves the open systemic fleet incidents. A host selector
that is empty or matches every host is refused.
"""

from __future__ import annotations

import argparse
from typing import Any

from guardrails.fleet import Remedy
from healer.cli.common import print_json, settings_from_args
from healer.errors import ConfigError
from healer.sim import AGENT_NICE
from healer.sim import SCENARIOS as SIM_SCENARIOS
from healer.sim import SECONDS as SIM_SECONDS
from healer.store.credentials import new_token
from healer.store.repository import Repository

SIM_MAX_AGENTS = 2000


def _repo(args: argparse.Namespace) -> Repository:
    from healer.store.engine import open_control_plane

    return open_control_plane(settings_from_args(args))


def _policy(args: argparse.Namespace) -> Any:
    from guardrails.policy import load_policy

    return load_policy(settings_from_args(args).policy_file).fleet


def _remedy(text: str | None) -> Remedy | None:
    if not text:
        return None
    try:
        return Remedy.parse(text)
    except ValueError:
        raise ConfigError("REMEDY", f"{text!r} is not playbook:kind:target, e.g. "
                                    "listen-backlog-too-small:sysctl_write:net.core.somaxconn"
                          ) from None


def _selector(text: str) -> dict[str, str]:
    from healer.store.repo_hosts import SelectorRefused, parse_selector

    try:
        return parse_selector(text)
    except SelectorRefused as e:
        raise ConfigError("--hosts", str(e)) from None


def cmd_host_add(args: argparse.Namespace) -> int:
    """Register a host; its token is the last line printed."""
    token = new_token()
    _repo(args).add_host(args.id, token)  # AlreadyExists: one line, exit 1
    print(f"host {args.id} added; its agent token (HEALER_AGENT_TOKEN) is shown only once:")
    print(token)
    return 0


def _switch(args: argparse.Namespace, pause: bool) -> list[str]:
    from healer.store.repo_hosts import SelectorRefused

    repo, remedy = _repo(args), _remedy(args.remedy)
    if args.hosts is not None:
        if remedy is not None:
            raise ConfigError("--hosts", "give a remedy or --hosts, not both")
        try:
            hosts = repo.pause_hosts(_selector(args.hosts), pause, "cli")
        except SelectorRefused as e:
            raise ConfigError("--hosts", str(e)) from None
        return [f"{'paused' if pause else 'resumed'} {', '.join(hosts) or 'no host'}"]
    if pause:
        return ["paused" if repo.fleet_pause(remedy, "cli", args.reason) else "already paused"]
    return repo.fleet_resume(remedy, "cli") or ["nothing to resume"]


def cmd_pause(args: argparse.Namespace) -> int:
    """Stop automatic actions; every agent hears of it within two seconds."""
    for line in _switch(args, True):
        print(line)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    """Lift a pause (a remedy's: and close its breaker)."""
    for line in _switch(args, False):
        print(line)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The switches, rollouts, leases in flight, open breakers and fleet incidents."""
    status = _repo(args).fleet_status(_policy(args))
    if args.json:
        print_json(status.model_dump(mode="json"))
        return 0
    print(f"automation: {'PAUSED fleet-wide' if status.paused else 'running'}; "
          f"{status.reporting_hosts} of {status.hosts} hosts reporting")
    for label, items in (("paused remedies", status.paused_remedies),
                         ("paused hosts", status.paused_hosts)):
        if items:
            print(f"{label}: {', '.join(items)}")
    for r in status.rollouts:
        o = r.rollout
        stage = (f"wave {o.wave} ({len(o.wave_verified)}/{o.wave_size} verified)" if o.wave
                 else "canary verified" if o.canary_verified else f"canary {o.canary or '-'}")
        print(f"rollout {o.remedy.key}: {stage}")
    for lease in status.in_flight:
        print(f"in flight: {lease.host_id} {lease.remedy} ({lease.role}, lease {lease.id})")
    for b in status.breakers:
        print(f"BREAKER OPEN {b.remedy}: {b.failures} failed hosts; `healer fleet resume "
              f"{b.remedy}`")
    for i in status.fleet_incidents:
        print(f"FLEET INCIDENT {i.id} {i.kind} {i.fingerprint}: {i.hosts} of {i.reporting} "
              "hosts")
    return 0


def _nice(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 19:
        raise argparse.ArgumentTypeError(f"{text!r}: give a nice value from 0 to 19")
    return int(text)


def _agents(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= SIM_MAX_AGENTS:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of agents from 1 to "
                                         f"{SIM_MAX_AGENTS}")
    return n


def cmd_sim(args: argparse.Namespace) -> int:
    """Run the fleet simulation; exit 1 when a goal fails."""
    import os

    from healer.sim.run import SimConfig, exit_status, simulate

    scenarios = SIM_SCENARIOS if args.scenario == "all" else (args.scenario,)
    report = simulate(SimConfig(agents=args.agents, scenarios=scenarios, seconds=args.seconds,
                                database_url=os.environ.get("HEALER_DATABASE_URL") or None,
                                agent_nice=args.agent_nice))
    if args.json:
        print_json(report)
    else:
        for name, value in report.items():
            if name != "goals":
                print(f"{name}: {value}")
        for goal, ok in report["goals"].items():
            print(f"{'PASS' if ok else 'FAIL'} {goal}")
    return exit_status(report)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``host add`` and ``fleet pause|resume|status``."""
    host = subparsers.add_parser("host", help="a control plane's hosts")
    hsub = host.add_subparsers(dest="host_command", metavar="COMMAND", required=True)
    add = hsub.add_parser("add", help="register a host; prints its agent token last")
    add.add_argument("id")
    add.set_defaults(func=cmd_host_add)
    fleet = subparsers.add_parser("fleet", help="the fleet's kill switch and status")
    fsub = fleet.add_subparsers(dest="fleet_command", metavar="COMMAND", required=True)
    for name, func, helptext in (
            ("pause", cmd_pause, "stop automatic actions (never a rollback)"),
            ("resume", cmd_resume, "lift a pause; a remedy's resume closes its breaker")):
        p = fsub.add_parser(name, help=helptext)
        p.add_argument("remedy", nargs="?", default=None, metavar="REMEDY",
                       help="playbook:kind:target (default: the whole fleet)")
        p.add_argument("--hosts", default=None, metavar="SELECTOR",
                       help="only the hosts with these labels, e.g. rack=r12,zone=a")
        if name == "pause":
            p.add_argument("--reason", default="", help="recorded in the audit log")
        p.set_defaults(func=func)
    st = fsub.add_parser("status", help="switches, rollouts, breakers, fleet incidents")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    sim = fsub.add_parser("sim", help="simulated hosts, real agents, two real control planes")
    sim.add_argument("--agents", type=_agents, required=True, metavar="N")
    sim.add_argument("--scenario", default="all", choices=("all", *SIM_SCENARIOS),
                     help="default: all of them at once, on disjoint hosts")
    sim.add_argument("--seconds", type=float, default=SIM_SECONDS,
                     help=f"stop the scenarios after this long (default {SIM_SECONDS:g})")
    sim.add_argument("--agent-nice", type=_nice, default=AGENT_NICE, metavar="N",
                     help="the simulated agents' nice value, 0-19 (default "
                          f"{AGENT_NICE}); higher keeps their CPU from the control plane's "
                          "latencies, at their own progress' cost")
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(func=cmd_sim)
