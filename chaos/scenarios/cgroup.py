"""Scratch-cgroup scenarios: memory-leak, fd-exhaustion, pids-exhaustion, cpu-contention, and
what the cgroup scenarios share (cgroup-oom and its unscripted twin are in memory.py)."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path
from typing import Any

from chaos.faults import CgroupKnob
from chaos.scenarios.base import Check, Context, Scenario, Severity, converged
from chaos.workloads.common import read_prom

MB = 2**20


def _cg_action(ctx: Context, knob: str, path: str) -> dict[str, Any] | None:
    """The healer action on knob (v2 or v1 name) of cgroup path."""
    names = {knob, ctx.sb.cg.knob_name(knob) if ctx.sb.cg else knob}
    for a in ctx.actions:
        if a["kind"] == "cgroup_limit" and a["key"] in {f"{path}:{n}" for n in names}:
            return a
    return None


def limit_value(text: str | None) -> float | None:
    """A limit file's value; "max" and v1's unlimited PAGE_COUNTER_MAX read as infinity."""
    if text is None:
        return None
    return float("inf") if text in ("max", "-1") or len(text) > 18 else float(text)


class CgroupScenario(Scenario):
    def scope_prefixes(self, ctx: Context) -> tuple[str, ...]:
        return (f"cgroup:{ctx.sb.cgroup_root}",)

    def _count_at(self, ctx: Context, key: str, t: float) -> float | None:
        """The charted counter's value at (or just after) wall time t."""
        for ts, v in ctx.data.get(key, []):
            if ts >= t:
                return float(v)
        return None

    def _converged(self, ctx: Context, knob: str, original: float, key: str, settle: float,
                   what: str, check: str) -> bool:
        """healer stepped ``knob`` until fixed (and ``key`` stayed flat after the fixing
        step), or stopped at the policy's ceiling; never below ``original``."""
        assert ctx.sb.cg is not None
        path = ctx.data["cg"]
        live = limit_value(ctx.sb.cg.read(path, knob))
        state = converged(ctx, f"{path}:{knob}", live, original)
        if not state:
            return False
        last = [a for a in ctx.actions if a["key"] == f"{path}:{knob}"][-1]
        if ctx.res.stopped == "ceiling" or last["applied_at"] is None:
            return not ctx.res.failures
        start = self._count_at(ctx, key, last["applied_at"] + settle)
        end = self._count_at(ctx, key, time.time() - 1.0)
        ctx.res.checks.update(
            {"new_limit": last["new"], check: None if start is None or end is None else end - start}
        )
        if start is None or end is None:
            return False
        if end > start:
            ctx.res.fail(f"{end - start:.0f} {what} after the fixing step")
        if last["verdict"] != "allow":
            ctx.res.fail(f"expected allow, got {last['verdict']}")
        if not ctx.res.failures and ctx.t_recovered is None:
            # healthy from the fixing step on: the counter has not moved since it settled
            ctx.t_recovered = last["applied_at"] + settle
            ctx.res.timeline.mark("recovered", ctx.t_recovered)
        return not ctx.res.failures


class MemoryLeak(CgroupScenario):
    name = "memory-leak"
    title = "a process in a cgroup grows 8 MB/s without bound"
    expected_root_cause = "memory-leak"
    key_metric = "cgroup memory (MB)"
    outcome_order = ("escalated", "rolled_back", "verified")
    timeout = 60.0
    WATCH = 40.0  # escalation must come within 30 s; then watch for a second raise

    def setup(self, ctx: Context) -> None:
        path = ctx.data["cg"] = ctx.sb.cgroup("leaky")
        assert ctx.sb.cg is not None
        ctx.sb.cg.write(path, "memory.max", str(300 * MB))

    def probe(self, ctx: Context) -> float | None:
        assert ctx.sb.cg is not None
        knob = "memory.current" if ctx.sb.cg.version == 2 else "memory.usage_in_bytes"
        return int((ctx.sb.cg._dir(ctx.data["cg"], "memory") / knob).read_text()) / MB

    def inject(self, ctx: Context) -> None:
        ctx.workload(
            "leaker",
            "supervisor",
            "--delay",
            "0.5",
            "--",
            *_py("leaker", "--rate-mb", "8", "--cap-mb", "1024"),
            cgroup=ctx.data["cg"],
            fault=True,
        )

    def evaluate(self, ctx: Context) -> bool:
        res = ctx.res
        raises = [
            a
            for a in ctx.actions
            if a["kind"] == "cgroup_limit"
            and a["state"] not in ("denied", "awaiting_approval", "rejected", "expired")
        ]
        escalated = res.outcome == "escalated" or any(a["kind"] == "escalate" for a in ctx.actions)
        if escalated and "escalated_at" not in ctx.data:
            ctx.data["escalated_at"] = ctx.since_inject()
            res.timeline.mark("escalate")
            ctx.t_recovered = None
        res.checks.update(
            limit_raises=len(raises),
            notifications=len(ctx.sink.requests),
            escalated_after_seconds=ctx.data.get("escalated_at"),
        )
        if len(raises) > 1:
            res.fail(f"{len(raises)} limit raises (at most one allowed)")
        if not escalated:
            if ctx.since_inject() > 30.0:
                res.fail("not escalated within 30 s")
            return False
        if ctx.since_inject() < self.WATCH:
            return False
        if not ctx.sink.requests:
            res.fail("no notification was sent")
        return not res.failures


class FdExhaustion(CgroupScenario):
    name = "fd-exhaustion"
    title = "a process wanting 100-5,000 fds under RLIMIT_NOFILE soft 64 (hard 4096) hits EMFILE"
    expected_root_cause = "fd-limit-too-low"
    key_metric = "open fds / soft limit"
    severity = Severity(100, 5000, " fds")
    timeout = 150.0
    SOFT, HARD = 64, 4096  # past the hard limit healer may not go: there it asks a person

    def scope_prefixes(self, ctx: Context) -> tuple[str, ...]:
        return ("pid:",)

    def setup(self, ctx: Context) -> None:
        ctx.data["cg"] = ctx.sb.cgroup("files")
        ctx.env["HEALER_TOP_PROCESSES"] = "200"  # an idle process must still be scanned

    def inject(self, ctx: Context) -> None:
        w = ctx.workload(
            "fd-opener",
            "fd_opener",
            "--want",
            str(self.magnitude),
            cgroup=ctx.data["cg"],
            rlimits={resource.RLIMIT_NOFILE: (self.SOFT, self.HARD)},
            fault=True,
        )
        ctx.data["pid"] = w.pid

    def _usage(self, ctx: Context) -> tuple[int, int] | None:
        pid = ctx.data.get("pid")
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            limits = Path(f"/proc/{pid}/limits").read_text()
        except OSError:
            return None
        soft = next(
            int(ln.split()[3]) for ln in limits.splitlines() if ln.startswith("Max open files")
        )
        return fds, soft

    def probe(self, ctx: Context) -> float | None:
        u = self._usage(ctx)
        return None if u is None else u[0] / u[1]

    def evaluate(self, ctx: Context) -> bool:
        u = self._usage(ctx)
        ctx.res.checks.update(fds=u and u[0], soft_limit=u and u[1])
        state = converged(ctx, f"{ctx.data.get('pid')}:nofile", u and float(u[1]),
                          float(self.SOFT))
        if not state:
            return False
        if ctx.res.stopped == "ceiling":
            return True
        last = [a for a in ctx.actions if a["key"] == f"{ctx.data.get('pid')}:nofile"][-1]
        if u is None or u[0] / u[1] >= 0.8:
            ctx.res.fail(f"fd usage {u} not below 80 % of the new limit")
        if last["verdict"] != "allow":
            ctx.res.fail(f"expected allow, got {last['verdict']}")
        if not ctx.res.failures and ctx.t_recovered is None:
            ctx.t_recovered = last["applied_at"]
            ctx.res.timeline.mark("recovered", ctx.t_recovered)
        return not ctx.res.failures


class PidsExhaustion(CgroupScenario):
    name = "pids-exhaustion"
    title = "a workload keeping 30-1,000 tasks under pids.max=20"
    expected_root_cause = "pids-limit-too-low"
    key_metric = "refused forks in the cgroup (pids.events max)"
    severity = Severity(30, 1000, " tasks")
    timeout = 150.0
    quick = True
    LIMIT = 20

    def setup(self, ctx: Context) -> None:
        assert ctx.sb.cg is not None
        path = ctx.data["cg"] = ctx.sb.cgroup("forker")
        ctx.sb.cg.write(path, "pids.max", str(2 * self.magnitude + 50))
        # Workers live longer in a larger pool: about 100 forks a second whatever its size.
        lifetime = max(1.0, self.magnitude / 100)
        ctx.workload("forker", "forker", "--children", str(self.magnitude),
                     "--child-seconds", f"{lifetime:g}", cgroup=path)

    def _refused(self, ctx: Context) -> int:
        assert ctx.sb.cg is not None
        return ctx.sb.cg.events(ctx.data["cg"], "pids").get("max", 0)

    def probe(self, ctx: Context) -> float | None:
        n = self._refused(ctx)
        ctx.data.setdefault("refused", []).append((time.time(), n))
        return float(n)

    def steady(self, ctx: Context) -> Check:
        assert ctx.sb.cg is not None
        a, n = self._refused(ctx), len(ctx.sb.cg.procs(ctx.data["cg"]))
        time.sleep(1.5)
        b = self._refused(ctx)
        # workers come and go: the pool is up when it holds 90 % of its size
        return b == a and n >= 0.9 * self.magnitude, f"{b - a} refused forks in 1.5 s, {n} tasks"

    def inject(self, ctx: Context) -> None:
        assert ctx.sb.cg is not None
        ctx.fault(CgroupKnob(ctx.sb.cg, ctx.data["cg"], "pids.max", str(self.LIMIT)))

    def evaluate(self, ctx: Context) -> bool:
        return self._converged(ctx, "pids.max", self.LIMIT, "refused", 1.5, "fork(s) refused",
                               "refused_after_fix")


class CpuContention(CgroupScenario):
    name = "cpu-contention"
    title = "a CPU hog with 10x weight in cgroup A slows a latency probe in cgroup B"
    expected_root_cause = "cpu-contention"
    key_metric = "probe p95 latency / SLO"
    timeout = 150.0

    def setup(self, ctx: Context) -> None:
        ctx.data["a"] = ctx.sb.cgroup("batch")
        ctx.data["b"] = ctx.sb.cgroup("latency")
        # The operator declares the probe's SLO as the app reports it: p95 within its objective.
        ctx.env["HEALER_SLO_METRICS"] = (
            "textfile.chaos_latency_p95_seconds<=textfile.chaos_latency_slo_seconds"
        )
        ctx.workload(
            "probe",
            "latency_probe",
            "--textfile-dir",
            str(ctx.sb.textfile_dir),
            cgroup=ctx.data["b"],
        )

    def _ratio(self, ctx: Context) -> float | None:
        m = read_prom(ctx.sb.textfile_dir / "chaos_latency.prom")
        if "chaos_latency_p95_seconds" not in m:
            return None
        return m["chaos_latency_p95_seconds"] / m["chaos_latency_slo_seconds"]

    def probe(self, ctx: Context) -> float | None:
        return self._ratio(ctx)

    def steady(self, ctx: Context) -> Check:
        r = self._ratio(ctx)
        return r is not None and r <= 1.0, f"latency/SLO = {r}"

    def inject(self, ctx: Context) -> None:
        assert ctx.sb.cg is not None
        ctx.fault(CgroupKnob(ctx.sb.cg, ctx.data["a"], "cpu.weight", "1000"))
        ctx.workload(
            "hog",
            "cpu_hog",
            "--procs",
            str(2 * (os.cpu_count() or 2)),
            cgroup=ctx.data["a"],
            fault=True,
        )

    def operator(self, ctx: Context) -> None:
        a = ctx.data["a"]
        ctx.approve(
            lambda act: (
                act.get("kind") == "cgroup_limit"
                and act.get("path") == a
                and act.get("knob") in ("cpu.weight", "cpu.shares")
            )
        )

    def recovered(self, ctx: Context) -> bool:
        r = self._ratio(ctx)
        return r is not None and r <= 1.0

    def evaluate(self, ctx: Context) -> bool:
        fix = _cg_action(ctx, "cpu.weight", ctx.data["a"]) or _cg_action(
            ctx, "cpu.shares", ctx.data["a"]
        )
        if fix and fix["state"] in ("rolled_back", "rollback_failed", "denied", "rejected"):
            ctx.res.fail(f"cpu weight change ended {fix['state']}: {fix['reasons']}")
        if not fix or fix["state"] != "verified":
            return False
        ctx.res.checks.update(
            verdict=fix["verdict"],
            approved=ctx.data.get("approved"),
            latency_over_slo=self._ratio(ctx),
        )
        if fix["id"] not in ctx.data.get("approved", []):
            ctx.res.fail(f"cpu weight change applied without approval (verdict {fix['verdict']})")
        if not self.recovered(ctx):
            ctx.res.fail(f"probe latency still over its SLO ({self._ratio(ctx)})")
        return not ctx.res.failures


def _py(module: str, *args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", f"chaos.workloads.{module}", *args]
