"""Simulated-GPU scenarios: gpu-xid (real-format NVRM lines in /dev/kmsg), gpu-thermal,
gpu-contention."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from chaos import gpusim
from chaos.faults import GpuPatch, GpuWorkload, KmsgLines
from chaos.observe import APPLIED_STATES
from chaos.proc import python_module
from chaos.scenarios.base import Check, Context, Scenario
from chaos.workloads.common import read_prom

NOT_DISRUPTIVE = frozenset({"notify", "escalate"})


def bus_for(sid: str) -> int:
    """A PCI bus number unique to the run, so earlier runs' Xid lines never match this GPU."""
    return 0x10 + int(sid, 16) % 0xE0


def gpu_job(ctx: Context, label: str, *, sm: float, fault: bool, textfile: bool = True) -> Any:
    """Start a chaos.workloads.gpu_job against the sandbox's simulated GPU 0."""
    args = ["--state", str(ctx.sb.gpu_state), "--name", label, "--sm-demand", str(sm)]
    if textfile:
        args += ["--textfile-dir", str(ctx.sb.textfile_dir)]
    w = GpuWorkload(
        label,
        python_module("chaos.workloads.gpu_job", *args),
        state=ctx.sb.gpu_state,
        out=ctx.sb.logs / f"{label}.log",
        log=ctx.sb.logs / "watchdog.log",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return ctx.fault(w) if fault else ctx.sb.add(w)


def xid_line(bus: int, code: int, pid: int) -> str:
    """One NVRM Xid report as the driver prints it (NVIDIA Xid catalog examples)."""
    detail = {
        13: f"pid={pid}, name=python3, Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): "
        "Out Of Range Address",
        31: f"pid={pid}, name=python3, Ch 00000008, intr 10000000. MMU Fault: ENGINE GRAPHICS "
        "GPCCLIENT_T1_0 faulted @ 0x7f0a_c4000000. Fault is of type FAULT_PDE "
        "ACCESS_TYPE_VIRT_READ",
        48: f"pid={pid}, name=python3, An uncorrectable double bit error (DBE) has been "
        "detected on GPU in the framebuffer at partition 3, subpartition 0.",
        79: "pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
        94: f"pid={pid}, name=python3, Contained: SM (0x1). RST: No, D-RST: No",
    }[code]
    return f"<3>NVRM: Xid (PCI:0000:{bus:02x}:00): {code}, {detail}"


class _GpuScenario(Scenario):
    needs = ("root",)

    def scope_prefixes(self, ctx: Context) -> tuple[str, ...]:
        return ("gpu:0",)

    def setup(self, ctx: Context) -> None:
        ctx.data["bus"] = bus_for(ctx.sb.id)
        ctx.sb.gpus([gpusim.default_device(0, ctx.data["bus"])])


class GpuXid(_GpuScenario):
    name = "gpu-xid"
    title = "NVRM Xid 13, 31, 48, 79, 94 in the kernel log for the simulated GPU"
    expected_root_cause = "gpu-xid-fell-off-bus"
    key_metric = "gpu-xid incidents open"
    timeout = 45.0
    quick = True
    CODES: ClassVar[dict[int, str]] = {
        13: "gpu-xid-app-fault",
        31: "gpu-xid-app-fault",
        48: "gpu-xid-ecc-contained",
        94: "gpu-xid-ecc-contained",
        79: "gpu-xid-fell-off-bus",
    }
    outcome_order = ("escalated", "rolled_back", "verified")

    def unavailable(self) -> str | None:
        if not os.access("/dev/kmsg", os.W_OK):
            return "needs a writable /dev/kmsg (root)"
        return super().unavailable()

    def detect_ids(self) -> set[str]:
        return set(self.CODES.values())

    def probe(self, ctx: Context) -> float | None:
        return float(len([i for i in ctx.incidents if i.get("playbook") in self.detect_ids()]))

    def inject(self, ctx: Context) -> None:
        lines = [xid_line(ctx.data["bus"], code, 40000 + code) for code in self.CODES]
        ctx.fault(KmsgLines(lines))

    def evaluate(self, ctx: Context) -> bool:
        res = ctx.res
        want: dict[str, int] = {}
        for pb in self.CODES.values():
            want[pb] = want.get(pb, 0) + 1
        got = {
            i["playbook"]: int(i.get("count", 0))
            for i in ctx.incidents
            if i.get("playbook") in want and str(i.get("scope")) == "gpu:0"
        }
        res.checks["incident_counts"] = got
        unsafe = [
            a for a in ctx.actions if a["verdict"] == "allow" and a["kind"] not in NOT_DISRUPTIVE
        ]
        if unsafe:
            res.fail(f"automatic disruptive actions: {unsafe}")
        if got != want:
            return False
        bodies = " ".join(str(r["body"]) for r in ctx.sink.requests)
        told = {pb for pb in want if pb in bodies}
        res.checks.update(
            notifications=len(ctx.sink.requests),
            notified_for=sorted(told),
            automatic_disruptive=len(unsafe),
        )
        # The GPU reset / drain is a person's call: healer escalates (asks), never does it.
        asked = {a["scope"] for a in ctx.actions if a["kind"] == "escalate"}
        res.checks["escalated_scopes"] = sorted(asked)
        if len(told) < len(want) or "gpu:0" not in asked:
            return False  # notifications go out through the outbox; give them time
        return not res.failures

    def on_timeout(self, ctx: Context) -> None:
        c = ctx.res.checks
        ctx.res.fail(
            f"incidents {c.get('incident_counts')} (want app-fault 2, ecc-contained 2, "
            f"fell-off-bus 1); notified for {c.get('notified_for')}"
        )
        super().on_timeout(ctx)


class GpuThermal(_GpuScenario):
    name = "gpu-thermal"
    title = "the simulated GPU heats past its slowdown temperature (HW thermal slowdown)"
    expected_root_cause = "gpu-thermal-throttling"
    key_metric = "GPU temperature °C"
    timeout = 150.0

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        # 300 W at 0.18 °C/W over 30 °C ambient: 84 °C, just under the 85 °C slowdown.
        gpusim.patch_device(
            ctx.sb.gpu_state,
            0,
            {
                "power_limit_w": 300.0,
                "power_demand_w": 300.0,
                "thermal_resistance": 0.18,
                "slowdown_temp_c": 85.0,
                "temperature_c": 84.0,
            },
        )
        gpu_job(ctx, "train", sm=95.0, fault=False)

    def _dev(self, ctx: Context) -> dict[str, Any]:
        return gpusim.device(ctx.sb.gpu_state, 0)

    def _throughput(self, ctx: Context) -> float | None:
        return read_prom(ctx.sb.textfile_dir / "chaos_gpu_train.prom").get(
            "chaos_gpu_train_throughput_ratio"
        )

    def probe(self, ctx: Context) -> float | None:
        t = self._throughput(ctx)
        if t is not None and ctx.t_inject and ctx.t_applied is None and ctx.since_inject() > 3:
            ctx.data["throttled_tp"] = t
        return float(self._dev(ctx)["temperature_c"])

    def steady(self, ctx: Context) -> Check:
        d = self._dev(ctx)
        return d["temperature_c"] < d["slowdown_temp_c"], f"{d['temperature_c']:.1f} °C"

    def inject(self, ctx: Context) -> None:
        ctx.fault(GpuPatch(ctx.sb.gpu_state, 0, {"heat_boost_c": 6.0}))  # a blocked fan

    def recovered(self, ctx: Context) -> bool:
        d = self._dev(ctx)
        return bool(d["temperature_c"] < d["slowdown_temp_c"] and d["power_limit_w"] < 300.0)

    def evaluate(self, ctx: Context) -> bool:
        res = ctx.res
        steps = [a for a in ctx.actions if a["kind"] == "gpu_power_limit"]
        for a in steps:
            old, new = float(a["old"] or 0), float(a["new"] or 0)
            if a["state"] != "denied" and old and new < old * 0.9 - 0.01:
                res.fail(f"power limit step {old} -> {new} W exceeds 10 %")
            if a["state"] in ("rolled_back", "rollback_failed"):
                res.fail(f"power limit change ended {a['state']}: {a['reasons']}")
        done = [a for a in steps if a["state"] == "verified"]
        if not done or not self.recovered(ctx):
            return False
        d, tp = self._dev(ctx), self._throughput(ctx)
        res.checks.update(
            temperature_c=round(d["temperature_c"], 2),
            power_limit_w=d["power_limit_w"],
            throughput=tp,
            throughput_while_throttled=ctx.data.get("throttled_tp"),
            verdicts=[a["verdict"] for a in steps],
        )
        if any(a["verdict"] != "allow" for a in done):
            res.fail("expected allow for the power-limit step")
        if tp is None or tp < 0.85:
            res.fail(f"throughput guard not held: {tp}")
        return not res.failures


class GpuContention(_GpuScenario):
    name = "gpu-contention"
    title = "one process takes all SMs of the simulated GPU; a second one starves"
    expected_root_cause = "gpu-unfair-sharing"
    key_metric = "victim throughput (fraction)"
    timeout = 150.0

    def setup(self, ctx: Context) -> None:
        super().setup(ctx)
        gpu_job(ctx, "victim", sm=30.0, fault=False)

    def _tp(self, ctx: Context) -> float | None:
        return read_prom(ctx.sb.textfile_dir / "chaos_gpu_victim.prom").get(
            "chaos_gpu_victim_throughput_ratio"
        )

    def probe(self, ctx: Context) -> float | None:
        return self._tp(ctx)

    def steady(self, ctx: Context) -> Check:
        tp = self._tp(ctx)
        return tp is not None and tp >= 0.9, f"victim throughput {tp}"

    def inject(self, ctx: Context) -> None:
        gpu_job(ctx, "hog", sm=100.0, fault=True, textfile=False)

    def operator(self, ctx: Context) -> None:
        ctx.approve(lambda a: a.get("kind") in ("gpu_mps_thread_percentage", "gpu_timeslice"))

    def recovered(self, ctx: Context) -> bool:
        tp = self._tp(ctx)
        return tp is not None and tp >= 0.9

    def evaluate(self, ctx: Context) -> bool:
        res = ctx.res
        fixes = [
            a for a in ctx.actions if a["kind"] in ("gpu_mps_thread_percentage", "gpu_timeslice")
        ]
        for a in fixes:
            if a["state"] in ("rolled_back", "rollback_failed"):
                res.fail(f"{a['kind']} ended {a['state']}: {a['reasons']}")
            if a["state"] in APPLIED_STATES and a["id"] not in ctx.data.get("approved", []):
                res.fail(f"{a['kind']} was applied without approval")
        if not any(a["state"] == "verified" for a in fixes) or not self.recovered(ctx):
            return False
        res.checks.update(victim_throughput=self._tp(ctx), approved=ctx.data.get("approved"))
        return not res.failures
