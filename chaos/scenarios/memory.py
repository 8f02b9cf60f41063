"""cgroup-oom: a service needing 110-600 MB under a 100 MB limit, and the unscripted OOM
loop a first user met (a 150 MB service, an approving operator)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import ClassVar

from chaos.cgroups import CgroupError
from chaos.faults import CgroupKnob
from chaos.scenarios.base import Check, Context, Severity, converged
from chaos.scenarios.cgroup import MB, CgroupScenario, _py, limit_value


class CgroupOom(CgroupScenario):
    name = "cgroup-oom"
    title = "a service needing 110-600 MB under a 100 MB cgroup limit, restarted by its supervisor"
    expected_root_cause = "cgroup-memory-limit-too-low"
    key_metric = "OOM kills in the cgroup (total)"
    severity: ClassVar[Severity | None] = Severity(110, 600, "MB")
    timeout = 180.0
    LIMIT_MB = 100

    def setup(self, ctx: Context) -> None:
        cg = ctx.sb.cg
        assert cg is not None
        path = ctx.data["cg"] = ctx.sb.cgroup("app")
        # room for the service, its interpreter and its supervisor before the fault
        cg.write(path, "memory.max", str((self.magnitude + 256) * MB))
        if cg.version == 1:
            (cg._dir(path, "memory") / "memory.swappiness").write_text("0")
        ctx.data["app"] = ctx.workload(
            "app", "supervisor", "--delay", "0.5", "--",
            *_py("memhog", "--mb", str(self.magnitude)), cgroup=path
        )

    def _ooms(self, ctx: Context) -> int:
        assert ctx.sb.cg is not None
        return ctx.sb.cg.events(ctx.data["cg"], "memory").get("oom_kill", 0)

    def probe(self, ctx: Context) -> float | None:
        n = self._ooms(ctx)
        ctx.data.setdefault("ooms", []).append((time.time(), n))
        return float(n)

    def steady(self, ctx: Context) -> Check:
        a = self._ooms(ctx)
        time.sleep(2.0)
        b = self._ooms(ctx)
        return b == a, f"{b - a} OOM kills in 2 s"

    def inject(self, ctx: Context) -> None:
        cg = ctx.sb.cg
        assert cg is not None
        fault = CgroupKnob(cg, ctx.data["cg"], "memory.max", str(self.LIMIT_MB * MB))
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

    def evaluate(self, ctx: Context) -> bool:
        return self._converged(ctx, "memory.max", self.LIMIT_MB * MB, "ooms", 2.0,
                               "OOM kill(s)", "oom_kills_after_fix")


class CgroupOomLoop(CgroupOom):
    """The fault nobody scripted for healer, as a new user met it: a service
    needing about 150 MB in a 100 MB cgroup, restarted by its supervisor after every OOM
    kill; healer in auto mode, confined to the parent cgroup, with an operator approving
    whatever it asks. Healed means the OOM kills stop for 15 s within 120 s of the first."""

    name = "cgroup-oom-loop"
    title = "a 150 MB service in a 100 MB cgroup, an OOM-kill loop, an approving operator"
    severity = None
    magnitude = 150
    timeout = 150.0
    QUIET_SECONDS = 15.0
    WITHIN_SECONDS = 120.0

    def operator(self, ctx: Context) -> None:
        ctx.approve(lambda action: True)  # approves whatever it is asked

    def _first_kill(self, ctx: Context) -> float | None:
        before = self._count_at(ctx, "ooms", ctx.t_inject or 0.0)
        return next((t for t, v in ctx.data.get("ooms", []) if before is not None and v > before),
                    None)

    def _quiet_since(self, ctx: Context) -> float | None:
        """When the OOM counter last moved (the start of the current quiet stretch)."""
        pts = ctx.data.get("ooms", [])
        moved = [t for (t, v), (_, prev) in zip(pts[1:], pts, strict=False) if v > prev]
        return moved[-1] if moved else None

    def evaluate(self, ctx: Context) -> bool:
        first, now, d = self._first_kill(ctx), time.time(), ctx.data
        if first is None:
            return False
        since = self._quiet_since(ctx) or first
        if "healed_at" not in d and now - since >= self.QUIET_SECONDS:
            d["healed_at"] = since + self.QUIET_SECONDS  # 15 s without a kill: healed
        assert ctx.sb.cg is not None
        state = converged(ctx, f"{d['cg']}:memory.max",
                          limit_value(ctx.sb.cg.read(d["cg"], "memory.max")), self.LIMIT_MB * MB)
        healed = d.get("healed_at")
        ctx.res.checks.update(first_kill_after_inject=round(first - (ctx.t_inject or first), 1),
                              healed_after_first_kill=healed and round(healed - first, 1))
        if (healed or now) - first > self.WITHIN_SECONDS:
            ctx.res.fail(f"OOM kills did not stop for {self.QUIET_SECONDS:.0f} s within "
                         f"{self.WITHIN_SECONDS:.0f} s of the first")
            return False
        if healed is None or state is None:
            return False  # not healed yet, or the fixing step's verdict is still to come
        ctx.t_recovered = ctx.t_recovered or healed - self.QUIET_SECONDS
        return state
