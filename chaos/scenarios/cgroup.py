"""Scratch-cgroup scenarios: cgroup-oom, memory-leak, fd-exhaustion, pids-exhaustion,
cpu-contention."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import time
from pathlib import Path
from typing import Any

from chaos.cgroups import CgroupError
from chaos.faults import CgroupKnob
from chaos.scenarios.base import Check, Context, Scenario
from chaos.workloads.common import read_prom

MB = 2**20


def _cg_action(ctx: Context, knob: str, path: str) -> dict[str, Any] | None:
    """The healer action on knob (v2 or v1 name) of cgroup path."""
    names = {knob, ctx.sb.cg.knob_name(knob) if ctx.sb.cg else knob}
    for a in ctx.actions:
        if a["kind"] == "cgroup_limit" and a["key"] in {f"{path}:{n}" for n in names}:
            return a
    return None


class _CgroupScenario(Scenario):
    def scope_prefixes(self, ctx: Context) -> tuple[str, ...]:
        return (f"cgroup:{ctx.sb.cgroup_root}",)

    def _count_at(self, ctx: Context, key: str, t: float) -> float | None:
        """The charted counter's value at (or just after) wall time t."""
        for ts, v in ctx.data.get(key, []):
            if ts >= t:
                return float(v)
        return None

    def _counter_flat(self, ctx: Context, key: str, seconds: float, points: int) -> bool:
        """The charted counter has not moved over the last ``seconds`` since the apply."""
        since = max(time.time() - seconds, ctx.t_applied or 0.0)
        pts = [v for t, v in ctx.data.get(key, []) if t > since]
        return len(pts) >= points and pts[0] == pts[-1]

    def _limit_fix_held(self, ctx: Context, knob: str, key: str, settle: float,
                        what: str, check: str) -> bool:
        """The knob's raise was allowed and verified, and ``key`` stayed flat after it."""
        fix = _cg_action(ctx, knob, ctx.data["cg"])
        if fix and fix["state"] in ("rolled_back", "rollback_failed", "denied"):
            ctx.res.fail(f"{knob} change ended {fix['state']}: {fix['reasons']}")
        if not fix or fix["state"] != "verified" or ctx.t_applied is None:
            return False
        start = self._count_at(ctx, key, ctx.t_applied + settle)
        end = self._count_at(ctx, key, time.time() - 1.0)
        ctx.res.checks.update(
            {"new_limit": fix["new"],
             check: None if start is None or end is None else end - start}
        )
        if start is None or end is None:
            return False
        if end > start:
            ctx.res.fail(f"{end - start:.0f} {what} during the verify window")
        if fix["verdict"] != "allow":
            ctx.res.fail(f"expected allow, got {fix['verdict']}")
        return not ctx.res.failures


class CgroupOom(_CgroupScenario):
    name = "cgroup-oom"
    title = "a 110 MB service under a 100 MB cgroup limit, restarted by its supervisor"
    expected_root_cause = "cgroup-memory-limit-too-low"
    key_metric = "OOM kills in the cgroup (total)"
    timeout = 120.0

    def setup(self, ctx: Context) -> None:
        cg = ctx.sb.cg
        assert cg is not None
        path = ctx.data["cg"] = ctx.sb.cgroup("app")
        cg.write(path, "memory.max", str(256 * MB))
        if cg.version == 1:
            (cg._dir(path, "memory") / "memory.swappiness").write_text("0")
        ctx.data["app"] = ctx.workload(
            "app", "supervisor", "--delay", "0.5", "--", *_py("memhog", "--mb", "110"), cgroup=path
        )

    def probe(self, ctx: Context) -> float | None:
        assert ctx.sb.cg is not None
        n = ctx.sb.cg.events(ctx.data["cg"], "memory").get("oom_kill", 0)
        ctx.data.setdefault("ooms", []).append((time.time(), n))
        return float(n)

    def steady(self, ctx: Context) -> Check:
        assert ctx.sb.cg is not None
        a = ctx.sb.cg.events(ctx.data["cg"], "memory").get("oom_kill", 0)
        time.sleep(2.0)
        b = ctx.sb.cg.events(ctx.data["cg"], "memory").get("oom_kill", 0)
        return b == a, f"{b - a} OOM kills in 2 s"

    def inject(self, ctx: Context) -> None:
        cg = ctx.sb.cg
        assert cg is not None
        fault = CgroupKnob(cg, ctx.data["cg"], "memory.max", str(100 * MB))
        deadline = time.monotonic() + 5.0
        while True:
            try:
                ctx.fault(fault) if not ctx.injected else fault.inject()
                return
            except CgroupError:
                # v1 refuses (EBUSY) a limit below current usage that it cannot reclaim
                # (cgroup-v1/memory.rst 2.5); the admin restarts the service onto the new
                # limit: kill the supervised child, the supervisor starts it again.
                if time.monotonic() > deadline:
                    raise
                supervisor = ctx.data["app"].pid
                for pid in cg.procs(ctx.data["cg"]) - {supervisor}:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)

    def recovered(self, ctx: Context) -> bool:
        return self._counter_flat(ctx, "ooms", 3.5, 3)

    def evaluate(self, ctx: Context) -> bool:
        ok = self._limit_fix_held(ctx, "memory.max", "ooms", 2.0, "OOM kill(s)",
                                  "oom_kills_in_verify_window")
        if ok:
            ctx.t_recovered = ctx.t_recovered or time.time()
        return ok


class MemoryLeak(_CgroupScenario):
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


class FdExhaustion(_CgroupScenario):
    name = "fd-exhaustion"
    title = "a process with RLIMIT_NOFILE soft 64 opens files until EMFILE"
    expected_root_cause = "fd-limit-too-low"
    key_metric = "open fds / soft limit"
    timeout = 75.0

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
            "90",
            cgroup=ctx.data["cg"],
            rlimits={resource.RLIMIT_NOFILE: (64, 4096)},
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

    def recovered(self, ctx: Context) -> bool:
        u = self._usage(ctx)
        return u is not None and u[1] > 64 and u[0] / u[1] < 0.8

    def evaluate(self, ctx: Context) -> bool:
        fix = next(
            (
                a
                for a in ctx.actions
                if a["kind"] == "process_rlimit" and a["key"] == f"{ctx.data.get('pid')}:nofile"
            ),
            None,
        )
        if fix and fix["state"] in ("rolled_back", "rollback_failed", "denied"):
            ctx.res.fail(f"nofile change ended {fix['state']}: {fix['reasons']}")
        if not fix or fix["state"] != "verified":
            return False
        u = self._usage(ctx)
        ctx.res.checks.update(fds=u and u[0], soft_limit=u and u[1], verdict=fix["verdict"])
        if u is None or u[0] / u[1] >= 0.8:
            ctx.res.fail(f"fd usage {u} not below 80 % of the new limit")
        if fix["verdict"] != "allow":
            ctx.res.fail(f"expected allow, got {fix['verdict']}")
        return not ctx.res.failures


class PidsExhaustion(_CgroupScenario):
    name = "pids-exhaustion"
    title = "a forking workload under pids.max=20"
    expected_root_cause = "pids-limit-too-low"
    key_metric = "refused forks in the cgroup (pids.events max)"
    timeout = 75.0
    quick = True

    def setup(self, ctx: Context) -> None:
        assert ctx.sb.cg is not None
        path = ctx.data["cg"] = ctx.sb.cgroup("forker")
        ctx.sb.cg.write(path, "pids.max", "100")
        ctx.workload("forker", "forker", "--children", "30", cgroup=path)

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
        return b == a and n >= 30, f"{b - a} refused forks in 1.5 s, {n} tasks"

    def inject(self, ctx: Context) -> None:
        assert ctx.sb.cg is not None
        ctx.fault(CgroupKnob(ctx.sb.cg, ctx.data["cg"], "pids.max", "20"))

    def recovered(self, ctx: Context) -> bool:
        return self._counter_flat(ctx, "refused", 2.5, 2)

    def evaluate(self, ctx: Context) -> bool:
        return self._limit_fix_held(ctx, "pids.max", "refused", 1.5, "fork(s) refused",
                                    "refused_in_window")


class CpuContention(_CgroupScenario):
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
