"""What a scenario is, and the context it runs in.

A scenario subclasses ``Scenario`` and fills in: ``setup`` (the steady workload and the
daemon's extra settings), ``steady`` (is the system healthy?), ``inject`` (the fault),
``evaluate`` (have the pass criteria been met?), and optionally ``operator`` (approvals),
``recovered`` (for MTTR), ``probe`` (the charted metric) and ``on_timeout``.
The runner (``chaos.runner``) owns the order of steps and the cleanup.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from chaos import observe
from chaos.daemon import DaemonError, Healer
from chaos.faults import Fault, Workload
from chaos.proc import python_module
from chaos.result import ScenarioResult
from chaos.sandbox import Sandbox, free_port
from chaos.sinks import LlmProxy, WebhookSink

Check = tuple[bool, str]  # (ok, why)
Point = Literal["low", "middle", "high", "draw"]
POINTS: tuple[Point, ...] = ("low", "middle", "high")


@dataclass(frozen=True)
class Severity:
    """The range a scenario's fault magnitude is drawn from: sizes we did not choose."""

    low: int
    high: int
    unit: str  # shown after the value: "MB", " fds", " tasks", " connections"

    def at(self, point: Point) -> int:
        """The range's low, middle or high point."""
        return {"low": self.low, "middle": (self.low + self.high) // 2}.get(point, self.high)

    def draw(self, seed: int, name: str) -> int:
        """A uniform draw, reproducible from the seed alone (one stream per scenario name)."""
        return random.Random(f"{seed}:{name}").randint(self.low, self.high)


class Context:
    """Everything one run holds: sandbox, daemon, sinks, result and the latest API view."""

    def __init__(
        self,
        scn: Scenario,
        sb: Sandbox,
        res: ScenarioResult,
        status: Callable[[str], None] = lambda s: None,
    ) -> None:
        self.scn, self.sb, self.res, self.status = scn, sb, res, status
        self.env: dict[str, str] = {}
        self.healer: Healer | None = None
        self.sink = WebhookSink().start()
        self.llm: LlmProxy | None = None
        self.injected: list[Fault] = []
        self.t_inject: float | None = None
        self.incidents: list[dict[str, Any]] = []
        self.actions_raw: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.api_error: str | None = None
        self.t_applied: float | None = None
        self.t_recovered: float | None = None
        self.data: dict[str, Any] = {}  # scenario-private state

    # --- building the sandbox ---------------------------------------------------------
    def daemon_env(self) -> dict[str, str]:
        """HEALER_* settings that confine the daemon to this sandbox."""
        sb = self.sb
        env = {
            "HEALER_HOST_ID": f"chaos-{sb.id}",
            "HEALER_STATE_DIR": str(sb.state_dir),
            "HEALER_HOST": "127.0.0.1",
            "HEALER_PORT": str(free_port()),
            "HEALER_MODE": "auto",
            "HEALER_INTERVAL_SECONDS": "0.5",
            "HEALER_PROCESS_SCAN_SECONDS": "1",
            "HEALER_TEXTFILE_DIR": str(sb.textfile_dir),
            "HEALER_KMSG_SOURCE": "/dev/kmsg",
            "HEALER_GPU_BACKEND": "none",
            "HEALER_WEBHOOK_URL": self.sink.url + "/hook",
            "HEALER_SYSCTL_DROPIN": str(sb.root / "90-healer.conf"),
            "HEALER_APPROVAL_TTL_SECONDS": "600",
            "HEALER_LOG_LEVEL": "info",
        }
        if sb.ns:
            env["HEALER_NETNS"] = sb.ns
        if sb.cgroup_root:
            env["HEALER_CGROUP_ROOT"] = sb.cgroup_root
        if sb.gpu_state.exists():
            env["HEALER_GPU_BACKEND"] = "simulated"
            env["HEALER_GPU_SIM_STATE"] = str(sb.gpu_state)
        return {**env, **self.env}

    def start_daemon(self) -> Healer:
        """Start ``healer run`` confined to the sandbox."""
        self.status("starting healer")
        self.healer = Healer(self.daemon_env(), self.sb.logs / "healer.log")
        self.healer.start()
        self.healer.token()  # the API wants a principal even for reads
        return self.healer

    def workload(
        self,
        label: str,
        module: str,
        *args: str,
        cgroup: str | None = None,
        netns: bool = False,
        fault: bool = False,
        **kw: Any,
    ) -> Workload:
        """Start ``python -m chaos.workloads.<module>`` confined; a fault when fault=True."""
        w = Workload(
            label,
            python_module(f"chaos.workloads.{module}", *args),
            ns=self.sb.ns if netns else None,
            cg=self.sb.cg,
            cgroup=cgroup,
            out=self.sb.logs / f"{label}.log",
            log=self.sb.logs / "watchdog.log",
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            **kw,
        )
        return self.fault(w) if fault else self.sb.add(w)  # type: ignore[return-value]

    def fault(self, f: Fault) -> Fault:
        """Inject a fault that the runner reverts after observing."""
        if f.log is None:
            f.log = self.sb.logs / "watchdog.log"
        self.injected.append(f)
        return self.sb.add(f)

    def start_llm(self, mode: str = "adversarial") -> LlmProxy:
        """Start the test suite's OpenAI-compatible server behind a recording proxy."""
        from chaos.llm import start_llm_server

        upstream = start_llm_server(self.sb, mode)
        llm = self.llm = LlmProxy(upstream).start()
        self.env.update(
            {
                "HEALER_LLM_BASE_URL": llm.url + "/v1",
                "HEALER_LLM_MODEL": "chaos-adversary",
                "HEALER_LLM_API_KEY": "chaos",
            }
        )
        return llm

    # --- observing ----------------------------------------------------------------------
    def since_inject(self) -> float:
        return time.time() - (self.t_inject or time.time())

    def refresh(self) -> None:
        """Poll incidents and actions; update the result's common fields and markers."""
        if self.healer is None or not self.healer.alive:
            return
        try:
            self.incidents = list(self.healer.get("/api/v1/incidents?limit=1000") or [])
            self.actions_raw = list(self.healer.get("/api/v1/actions?limit=1000") or [])
            self.api_error = None
        except (DaemonError, OSError, ValueError) as exc:
            self.api_error = str(exc)
            return
        self.actions = [observe.summarize_action(r) for r in reversed(self.actions_raw)]
        self._update_result()

    def _update_result(self) -> None:
        res, tl, scn = self.res, self.res.timeline, self.scn
        hits = observe.matching(self.incidents, scn.detect_ids(), scn.scope_prefixes(self))
        if hits and self.t_inject:
            t = observe.first_seen(hits) or time.time()
            t = max(t, self.t_inject)
            if not res.detected:
                res.detected, res.detect_seconds = True, round(t - self.t_inject, 3)
                tl.mark("detect", t)
            best = [i for i in hits if i.get("playbook") == scn.expected_root_cause] or hits
            res.root_cause = observe.root_cause_of(best[-1])
        res.actions = [{k: v for k, v in a.items() if k not in ("provenance", "numbers")}
                       for a in self.actions]
        res.outcome = observe.outcome_of(self.actions, scn.outcome_order)
        res.steps, res.stopped = observe.steps_of(self.actions), observe.stopped(self.actions)
        now = time.time()
        if any(a["state"] in observe.APPLIED_STATES for a in self.actions):
            if self.t_applied is None:
                self.t_applied = now
            tl.mark("apply", self.t_applied)
        for state, label in (
            ("verified", "verify"),
            ("rolled_back", "rollback"),
            ("superseded", "superseded"),
        ):
            # a step kept as "insufficient" is verified but heals nothing yet
            if any(a["state"] == state and a["outcome"] != "insufficient" for a in self.actions):
                tl.mark(label, now)
        if any(a["outcome"] == "insufficient" for a in self.actions):
            tl.mark("step", now)
        if self.t_applied and self.t_recovered is None and scn.recovered(self):
            self.t_recovered = now
            tl.mark("recovered", now)

    def approve(self, pred: Callable[[dict[str, Any]], bool]) -> list[int]:
        """Approve every awaiting proposal that pred accepts, through the API."""
        assert self.healer is not None
        done: list[int] = []
        try:
            waiting = self.healer.get("/api/v1/proposals?status=awaiting_approval") or []
        except DaemonError:
            return done
        for rec in waiting:
            if pred(rec.get("action") or {}) and rec["id"] not in self.data.setdefault(
                "approved", []
            ):
                self.healer.post(
                    f"/api/v1/proposals/{rec['id']}/approve", {"comment": "chaos operator"}
                )
                self.data["approved"].append(rec["id"])
                self.res.timeline.mark("approve")
                done.append(rec["id"])
        return done

    def close(self) -> None:
        """Stop the sinks (the runner stops the daemon and destroys the sandbox)."""
        self.sink.stop()
        dump = {"webhooks": self.sink.requests, "llm": self.llm.requests if self.llm else []}
        (self.sb.logs / "requests.json").write_text(json.dumps(dump, indent=1, default=str))
        if self.llm:
            self.llm.stop()


class Scenario:
    """One row of SCENARIOS.md."""

    name: ClassVar[str]
    title: ClassVar[str]
    expected_root_cause: ClassVar[str | None] = None
    key_metric: ClassVar[str] = ""
    timeout: ClassVar[float] = 60.0
    quick: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ("root", "netns", "cgroups")
    outcome_order: ClassVar[tuple[str, ...]] = observe.DEFAULT_OUTCOME_ORDER
    poll_seconds: ClassVar[float] = 0.25
    severity: ClassVar[Severity | None] = None  # set: the fault's size is drawn from a range
    magnitude: int = 0  # this run's size (severity's unit); the low point until one is chosen
    point: Point = "low"
    seed: int | None = None

    def __init__(self) -> None:
        if self.severity is not None:
            self.magnitude = self.severity.low

    def sized(self, point: Point, seed: int | None = None) -> Scenario:
        """A copy of this scenario at a point of its range, or drawn with ``seed``."""
        out = copy.copy(self)
        if self.severity is not None:
            out.point, out.seed = point, seed
            out.magnitude = (self.severity.draw(seed or 0, self.name) if point == "draw"
                             else self.severity.at(point))
        return out

    def severity_info(self) -> dict[str, Any] | None:
        """The magnitude as the result JSON reports it."""
        sev = self.severity
        if sev is None:
            return None
        return {"value": self.magnitude, "unit": sev.unit.strip(), "low": sev.low,
                "high": sev.high, "point": self.point, "seed": self.seed}

    def detect_ids(self) -> set[str]:
        """Playbook ids whose incident counts as detection."""
        return {self.expected_root_cause} if self.expected_root_cause else set()

    def scope_prefixes(self, ctx: Context) -> tuple[str, ...]:
        """Incident scopes that belong to this sandbox ('' = any)."""
        return ()

    def unavailable(self) -> str | None:
        """Why this scenario cannot run here (skip reason), or None."""
        if "root" in self.needs and os.geteuid() != 0:
            return "needs root (network namespaces, cgroups, /dev/kmsg)"
        if "netns" in self.needs and not shutil.which("ip"):
            return "needs iproute2 (`ip netns`)"
        if "llm" in self.needs:
            from chaos.llm import llm_server_script

            if not llm_server_script().is_file():
                return f"needs the test LLM server {llm_server_script()}"
        return None

    def setup(self, ctx: Context) -> None:
        """Start the steady workload; put daemon settings in ctx.env."""

    def steady(self, ctx: Context) -> Check:
        """Is the system in its steady state?"""
        return True, "ok"

    def inject(self, ctx: Context) -> None:
        """Inject the fault (with ctx.fault / ctx.workload(fault=True))."""
        raise NotImplementedError

    def probe(self, ctx: Context) -> float | None:
        """The charted metric, sampled once a second."""
        return None

    def operator(self, ctx: Context) -> None:
        """What an operator does while observing (approvals)."""

    def recovered(self, ctx: Context) -> bool:
        """The service is healthy again (used for MTTR)."""
        return False

    def evaluate(self, ctx: Context) -> bool:
        """True once every pass criterion is met; call ctx.res.fail() on a definite failure."""
        raise NotImplementedError

    def on_timeout(self, ctx: Context) -> None:
        """Name the criteria still unmet when time ran out."""
        res = ctx.res
        if not res.detected and self.detect_ids():
            res.fail(f"not detected: no {sorted(self.detect_ids())} incident")
        res.fail(f"criteria not met within {self.timeout:.0f}s (outcome={res.outcome})")

    def after_revert(self, ctx: Context) -> None:
        """Extra checks once faults are reverted (optional)."""


ENDED = ("rolled_back", "rollback_failed", "denied", "rejected", "expired")


def converged(ctx: Context, key: str, live: float | None, original: float) -> bool | None:
    """Where healer's convergence on the knob ``key`` stands (``observe.action_key``): True
    once its newest step was verified "fixed", or once it stopped at the policy's ceiling;
    None while under way. Fails the run for a step that was rolled back, denied or refused,
    for stopping short of the ceiling, and for a live limit below the original."""
    res = ctx.res
    steps = [a for a in ctx.actions if a["key"] == key]
    for a in steps:
        if a["state"] in ENDED:
            res.fail(f"step {a['step']} ({a['old']} -> {a['new']}) ended {a['state']}: "
                     f"{'; '.join(a['reasons'])}")
    if live is not None and live < original:
        res.fail(f"{key} is {live:g}, below the original {original:g}")
    stop = observe.stopped(ctx.actions, key)
    if stop is not None and stop != "ceiling":
        res.fail(f"not fixed within the steps allowed (stopped: {stop})")
    res.checks.update(steps=len(steps), live_limit=live, original_limit=original, stopped=stop)
    if res.failures:
        return False
    if stop == "ceiling":
        return True
    last = steps[-1] if steps else None
    return True if last and last["state"] == "verified" and last["outcome"] == "fixed" else None


def data_dir() -> Path:
    """Scenario data shipped with chaos (playbooks, policies)."""
    return Path(__file__).parent / "data"
