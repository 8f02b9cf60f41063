"""Network-namespace scenarios: listen-overflow and the commit-confirmed safety cases built on it
(crash-during-verify, admin-drift), plus bad-fix-rollback with its own playbook."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections import deque
from typing import Any, ClassVar

from chaos import netns
from chaos.faults import FileFlag, NetnsSysctl
from chaos.observe import APPLIED_STATES, parse_ts
from chaos.scenarios.base import Check, Context, Scenario, Severity, converged, data_dir
from chaos.workloads.common import read_prom

PORT = "8080"
SOMAXCONN = "net.core.somaxconn"


class ListenOverflow(Scenario):
    name = "listen-overflow"
    title = ("net.core.somaxconn=16 in a netns; bursts of 100-3,000 connections overflow a "
             "reloading server's accept queue")
    expected_root_cause: ClassVar[str | None] = "listen-backlog-too-small"
    key_metric = "ListenOverflows per second (netns)"
    severity: ClassVar[Severity | None] = Severity(100, 3000, " connections")
    timeout = 90.0
    quick = True
    ACCEPT_RATE = 1500  # connections a second the server takes: it drains a burst in time

    def scope_prefixes(self, ctx: Context) -> tuple[str, ...]:
        return (f"netns:{ctx.sb.ns}",)

    def setup(self, ctx: Context) -> None:
        sb = ctx.sb
        ctx.data["server"] = ctx.workload(
            "server",
            "slow_server",
            "--port",
            PORT,
            "--accept-rate",
            str(self.ACCEPT_RATE),
            netns=True,
            cgroup=sb.cgroup("server"),
        )
        ctx.workload(
            "client",
            "burst_client",
            "--port",
            PORT,
            "--burst",
            str(self.magnitude),
            "--period",
            # A burst per second, or fewer for large ones: between bursts the server must
            # drain the queue, or even the steady state (somaxconn 4096) would overflow.
            f"{max(1.0, self.magnitude / 1000):g}",
            "--hold",
            "0.3",
            netns=True,
            cgroup=sb.cgroup("client"),
        )
        ctx.data["rates"] = deque(maxlen=30)

    def _overflows(self, ctx: Context) -> int:
        return netns.netstat(ctx.data["server"].pid).get("TcpExt.ListenOverflows", 0)

    def probe(self, ctx: Context) -> float | None:
        now, n = time.time(), self._overflows(ctx)
        last = ctx.data.get("last")
        ctx.data["last"] = (now, n)
        if last is None:
            return None
        rate = (n - last[1]) / max(now - last[0], 1e-3)
        ctx.data["rates"].append((now, rate))
        return float(rate)

    def steady(self, ctx: Context) -> Check:
        if not ctx.data["server"].is_active():
            return False, "server not running"
        a = self._overflows(ctx)
        time.sleep(2.0)
        b = self._overflows(ctx)
        return (b == a, f"{b - a} listen overflows in 2 s")

    def inject(self, ctx: Context) -> None:
        ctx.fault(NetnsSysctl(ctx.sb.ns or "", SOMAXCONN, "16"))

    def recovered(self, ctx: Context) -> bool:
        rates = [
            r for t, r in ctx.data["rates"] if t > max(time.time() - 3.5, ctx.t_applied or 0.0)
        ]
        return len(rates) >= 3 and all(r == 0 for r in rates)

    def fix_action(self, ctx: Context) -> dict[str, Any] | None:
        """The healer action that raised somaxconn in this sandbox's netns."""
        for a in ctx.actions:
            if (
                a["kind"] == "sysctl_write"
                and a["key"] == SOMAXCONN
                and a["scope"] == f"netns:{ctx.sb.ns}"
            ):
                return a
        return None

    def evaluate(self, ctx: Context) -> bool:
        res = ctx.res
        if not res.detected and ctx.since_inject() > 5.0:
            res.fail("not detected within 5 s")
        if res.detect_seconds is not None and res.detect_seconds > 5.0:
            res.fail(f"detected after {res.detect_seconds:.1f}s > 5 s")
        live = float(netns.read_sysctl(ctx.sb.ns or "", SOMAXCONN))
        state = converged(ctx, SOMAXCONN, live, 16.0)
        if not state:
            return False
        if res.stopped == "ceiling":
            return True
        if ctx.t_recovered is None:
            return False
        last = [a for a in ctx.actions if a["key"] == SOMAXCONN][-1]
        mttr = ctx.t_recovered - (ctx.t_inject or 0)
        ctx.res.checks.update(verdict=last["verdict"], overflow_rate_zero=True)
        if last["verdict"] != "allow":
            res.fail(f"expected verdict allow, got {last['verdict']}")
        if mttr > 30.0:
            res.fail(f"MTTR {mttr:.1f}s > 30 s")
        return not res.failures

    def on_timeout(self, ctx: Context) -> None:
        fix = self.fix_action(ctx)
        if fix is None:
            ctx.res.fail("no somaxconn change proposed in the netns scope")
        elif fix["state"] != "verified":
            ctx.res.fail(f"somaxconn change not verified (state {fix['state']})")
        elif ctx.t_recovered is None:
            ctx.res.fail("overflow rate never returned to 0")
        super().on_timeout(ctx)


class CrashDuringVerify(ListenOverflow):
    name = "crash-during-verify"
    title = "healer is SIGKILLed while its somaxconn change is verifying, then restarted"
    expected_root_cause = None
    severity = None  # a safety case, at one size
    magnitude = 120
    timeout = 90.0

    def detect_ids(self) -> set[str]:
        return {"listen-backlog-too-small"}

    def evaluate(self, ctx: Context) -> bool:
        fix = self.fix_action(ctx)
        d = ctx.data
        if "killed" not in d:
            if fix and fix["state"] == "verifying":
                self._crash_and_restart(ctx, fix)
            elif fix and fix["state"] in ("verified", "rolled_back"):
                ctx.res.fail(f"change reached {fix['state']} before it could be interrupted")
            return False
        rec = next((a for a in ctx.actions if a["id"] == d["action_id"]), None)
        if rec is None or rec["state"] not in ("verified", "rolled_back"):
            if time.time() - d["restarted"] > 10.0:
                ctx.res.fail(
                    f"not verified or restored 10 s after restart (state {rec and rec['state']})"
                )
            return False
        d["converged_after_restart_seconds"] = round(time.time() - d["restarted"], 3)
        return self._consistent(ctx, rec)

    def _crash_and_restart(self, ctx: Context, fix: dict[str, Any]) -> None:
        assert ctx.healer is not None
        ctx.status("SIGKILL healer while verifying")
        ctx.data.update(killed=time.time(), action_id=fix["id"])
        ctx.res.timeline.mark("kill -9")
        ctx.healer.kill9()
        ctx.data["restarted"] = time.time()
        ctx.healer.start()
        ctx.res.timeline.mark("restart")

    def _consistent(self, ctx: Context, rec: dict[str, Any]) -> bool:
        res, ns = ctx.res, ctx.sb.ns or ""
        live = netns.read_sysctl(ns, SOMAXCONN)
        want = rec["new"] if rec["state"] == "verified" else rec["old"]
        res.checks.update(
            state_after_restart=rec["state"],
            live_value=live,
            expected=want,
            converged_seconds=ctx.data["converged_after_restart_seconds"],
        )
        if str(want).split() != live.split():
            res.fail(f"live somaxconn {live} != {want} for a {rec['state']} change")
        stuck = [a["id"] for a in ctx.actions if a["state"] in ("applying", "approved")]
        if stuck:
            res.fail(f"journal holds actions stuck mid-apply: {stuck}")
        res.checks["integrity_check"] = integrity_check(ctx)
        if res.checks["integrity_check"] != "ok":
            res.fail(f"sqlite integrity_check: {res.checks['integrity_check']}")
        return not res.failures

    def on_timeout(self, ctx: Context) -> None:
        if "killed" not in ctx.data:
            ctx.res.fail("no change was ever seen in state verifying")
        super().on_timeout(ctx)


def integrity_check(ctx: Context) -> str:
    """SQLite ``PRAGMA integrity_check`` on the daemon's database, read-only."""
    db = ctx.sb.state_dir / "healer.db"
    if not db.exists():
        return f"no database at {db}"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


class AdminDrift(ListenOverflow):
    name = "admin-drift"
    title = "an administrator writes somaxconn while healer verifies its own change"
    expected_root_cause = None
    severity = None  # a safety case, at one size
    magnitude = 120
    timeout = 90.0
    quick = False
    ADMIN_VALUE = "1000"
    HOLD_SECONDS = 6.0

    def detect_ids(self) -> set[str]:
        return {"listen-backlog-too-small"}

    def evaluate(self, ctx: Context) -> bool:
        fix, d, res, ns = self.fix_action(ctx), ctx.data, ctx.res, ctx.sb.ns or ""
        if "drift" not in d:
            if fix and fix["state"] == "verifying":
                netns.write_sysctl(ns, SOMAXCONN, self.ADMIN_VALUE)  # the administrator
                d.update(drift=time.time(), action_id=fix["id"])
                res.timeline.mark("admin write")
            elif fix and fix["state"] in ("verified", "rolled_back"):
                res.fail(f"change reached {fix['state']} before the admin could write")
            return False
        rec = next((a for a in ctx.actions if a["id"] == d["action_id"]), None)
        if rec is None or rec["state"] != "superseded":
            if rec and rec["state"] in ("verified", "rolled_back", "rollback_failed"):
                res.fail(f"expected superseded, got {rec['state']}")
            return False
        d.setdefault("superseded", time.time())
        if time.time() - d["superseded"] < self.HOLD_SECONDS:
            return False  # watch a while: the admin's value must stay, automation paused
        return self._check_stand_down(ctx)

    def _check_stand_down(self, ctx: Context) -> bool:
        d, res, ns = ctx.data, ctx.res, ctx.sb.ns or ""
        live = netns.read_sysctl(ns, SOMAXCONN)
        later = [
            a
            for a in ctx.actions
            if a["kind"] == "sysctl_write"
            and a["key"] == SOMAXCONN
            and a["id"] != d["action_id"]
            and a["state"] in APPLIED_STATES
        ]
        notes = [r for r in ctx.sink.requests if r["ts"] >= d["drift"]]
        res.checks.update(live_value=live, later_changes=len(later), notifications=len(notes))
        if live != self.ADMIN_VALUE:
            res.fail(f"admin value not kept: somaxconn={live}")
        if later:
            res.fail(f"automation not paused: {len(later)} later somaxconn change(s)")
        if not any(_tells_drift(r["body"], d["action_id"]) for r in notes):
            res.fail(f"no notification about the stand-down ({len(notes)} hook(s) after drift)")
        return not res.failures

    def on_timeout(self, ctx: Context) -> None:
        if "drift" not in ctx.data:
            ctx.res.fail("no change was ever seen in state verifying")
        super().on_timeout(ctx)


def _tells_drift(body: Any, action_id: int) -> bool:
    """A hook about this action that is not the routine 'applied' notice, or names the drift."""
    text = str(body).lower()
    if "supersed" in text or "drift" in text:
        return True
    return (
        isinstance(body, dict)
        and body.get("action_id") == action_id
        and body.get("event") not in ("action_applied", "action_verified")
    )


class BadFixRollback(Scenario):
    name = "bad-fix-rollback"
    title = "a policy-allowed somaxconn raise makes a guard metric regress; healer rolls back"
    expected_root_cause = None
    key_metric = "service latency seconds (guard)"
    timeout = 60.0
    quick = True
    PLAYBOOK_ID = "chaos-backlog-pressure"

    def detect_ids(self) -> set[str]:
        return {self.PLAYBOOK_ID}

    def setup(self, ctx: Context) -> None:
        # The scenario ships its own one-playbook library: its verify guard is a textfile
        # metric that the sensitive service degrades whenever somaxconn moves.
        pb = ctx.sb.root / "playbooks"
        shutil.copytree(data_dir() / "bad-fix-rollback", pb)
        ctx.env["HEALER_PLAYBOOKS_DIR"] = str(pb)
        ctx.data["events"] = ctx.sb.root / "service-events.jsonl"
        ctx.data["flag"] = ctx.sb.root / "pressure"
        ctx.data["svc"] = ctx.workload(
            "service",
            "sensitive_service",
            "--textfile-dir",
            str(ctx.sb.textfile_dir),
            "--events",
            str(ctx.data["events"]),
            "--pressure-flag",
            str(ctx.data["flag"]),
            netns=True,
            cgroup=ctx.sb.cgroup("service"),
        )

    def _prom(self, ctx: Context) -> dict[str, float]:
        return read_prom(ctx.sb.textfile_dir / "chaos_service.prom")

    def probe(self, ctx: Context) -> float | None:
        return self._prom(ctx).get("chaos_service_latency_seconds")

    def steady(self, ctx: Context) -> Check:
        m = self._prom(ctx)
        lat = m.get("chaos_service_latency_seconds")
        ctx.data.setdefault("original", netns.read_sysctl(ctx.sb.ns or "", SOMAXCONN))
        return (
            lat is not None and lat < 0.05 and m.get("chaos_service_pressure") == 0,
            f"service metrics {m}",
        )

    def inject(self, ctx: Context) -> None:
        # The "fault" is load: the service starts reporting backlog pressure.
        ctx.fault(FileFlag(ctx.data["flag"]))

    def evaluate(self, ctx: Context) -> bool:
        res = ctx.res
        fix = next((a for a in ctx.actions if a["kind"] == "sysctl_write"), None)
        if fix is None or fix["state"] not in ("rolled_back", "rollback_failed", "verified"):
            return False
        if fix["state"] != "rolled_back":
            res.fail(f"expected rolled_back, got {fix['state']}")
            return False
        if fix["verdict"] != "allow":
            res.fail(f"expected verdict allow, got {fix['verdict']}")
        live = netns.read_sysctl(ctx.sb.ns or "", SOMAXCONN)
        changed, restored = self._service_times(ctx)
        rec = next(r for r in ctx.actions_raw if r.get("id") == fix["id"])
        allowed_at = parse_ts(rec.get("created_at"))
        res.checks.update(
            original=ctx.data["original"],
            live=live,
            recorded_original=fix["old"],
            regression_seen=changed is not None,
        )
        if changed is None:
            res.fail("the service never saw the change (no regression to detect)")
        if restored is not None and allowed_at is not None:
            res.checks["rollback_seconds_after_verdict"] = round(restored - allowed_at, 3)
            if restored - allowed_at > 5.0:
                res.fail(f"rolled back {restored - allowed_at:.1f}s after the verdict (> 5 s)")
        if live != ctx.data["original"] or str(fix["old"]).strip() != ctx.data["original"]:
            res.fail(
                f"value {live} (journal original {fix['old']}) != original {ctx.data['original']}"
            )
        ctx.t_recovered = restored
        return not res.failures

    def _service_times(self, ctx: Context) -> tuple[float | None, float | None]:
        """When the service saw somaxconn leave, and return to, its original value."""
        import json

        changed = restored = None
        try:
            lines = ctx.data["events"].read_text().splitlines()
        except OSError:
            return None, None
        for ln in lines:
            ev = json.loads(ln)
            if ev.get("event") == "changed" and changed is None:
                changed = ev["ts"]
            elif ev.get("event") == "restored" and changed is not None:
                restored = ev["ts"]
        return changed, restored
