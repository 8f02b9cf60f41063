"""Run a scenario the same way every time, and always clean up.

Steps: create the sandbox, start the steady workload and ``healer run``, check the steady
state, inject, observe until the criteria pass or time runs out, revert every fault, check
the steady state again, stop healer, destroy the sandbox, compare the host's sysctls.
Ctrl-C and SIGTERM become KeyboardInterrupt in the main thread; cleanup then runs with
both signals ignored, so a second Ctrl-C cannot leave a namespace or cgroup behind.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from chaos import hostcheck, observe
from chaos.daemon import DaemonError
from chaos.result import Sampler, ScenarioResult
from chaos.sandbox import Sandbox
from chaos.scenarios.base import Context, Scenario

Status = Callable[[str, str], None]  # (scenario, text)
STEADY_TIMEOUT = 25.0
BASELINE_SECONDS = 2.0


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    prev = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in prev:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in prev.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    prev = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in prev:
        signal.signal(s, signal.SIG_IGN)
    try:
        yield
    finally:
        for s, h in prev.items():
            signal.signal(s, h)


def _wait_steady(ctx: Context, timeout: float) -> tuple[bool, str]:
    deadline = time.monotonic() + timeout
    ok, why = False, "not checked"
    while time.monotonic() < deadline:
        try:
            ok, why = ctx.scn.steady(ctx)
        except (OSError, DaemonError, ValueError) as exc:
            ok, why = False, str(exc)
        if ok:
            return ok, why
        time.sleep(0.5)
    return ok, why


def _observe(ctx: Context) -> bool:
    scn, res = ctx.scn, ctx.res
    deadline = (ctx.t_inject or time.time()) + scn.timeout
    while True:
        ctx.refresh()
        try:
            scn.operator(ctx)
            if scn.evaluate(ctx):
                return True
        except (DaemonError, OSError) as exc:
            ctx.api_error = str(exc)
        if res.failures:
            return False
        if time.time() > deadline:
            scn.on_timeout(ctx)
            return False
        det = f"detected {res.detect_seconds:.1f}s" if res.detect_seconds is not None else "waiting"
        ctx.status(f"observing {ctx.since_inject():4.0f}s  {det}  outcome={res.outcome}")
        time.sleep(scn.poll_seconds)


def _drive(ctx: Context) -> bool:
    scn, res = ctx.scn, ctx.res
    ctx.status("setting up")
    scn.setup(ctx)
    ctx.start_daemon()
    ctx.status("checking steady state")
    res.steady_state_before, why = _wait_steady(ctx, STEADY_TIMEOUT)
    if not res.steady_state_before:
        res.fail(f"steady state before inject: {why}")
        return False
    res.timeline.metric = scn.key_metric
    ctx.data["sampler"] = Sampler(res.timeline, lambda: scn.probe(ctx)).start()
    time.sleep(BASELINE_SECONDS)
    ctx.t_inject = res.timeline.t0 = time.time()
    ctx.status("injecting")
    scn.inject(ctx)
    res.timeline.mark("inject", ctx.t_inject)
    return _observe(ctx)


def _teardown(ctx: Context, interrupted: bool) -> None:
    res = ctx.res
    errors: list[str] = []
    for fault in reversed(ctx.injected):
        errors += fault.revert()
    if ctx.injected:
        res.timeline.mark("revert")
    if res.steady_state_before and not interrupted:
        ctx.status("checking steady state after revert")
        ctx.refresh()
        res.steady_state_after, why = _wait_steady(ctx, STEADY_TIMEOUT)
        if not res.steady_state_after:
            res.fail(f"steady state after revert: {why}")
        with contextlib.suppress(DaemonError, OSError):
            ctx.scn.after_revert(ctx)
    sampler = ctx.data.get("sampler")
    if sampler:
        sampler.stop()
    if ctx.healer:
        ctx.healer.stop()
    ctx.close()
    errors += ctx.sb.destroy()
    for e in errors:
        res.fail(f"cleanup: {e}")


def run_scenario(
    scn: Scenario, *, keep: bool = False, status: Status | None = None
) -> ScenarioResult:
    """Run one scenario end to end; re-raises KeyboardInterrupt after cleaning up."""
    res = ScenarioResult(scenario=scn.name, expected_root_cause=scn.expected_root_cause,
                         severity=scn.severity_info())
    why = scn.unavailable()
    if why:
        res.skipped, res.skip_reason = True, why
        return res
    report: Callable[[str], None] = (lambda s: status(scn.name, s)) if status else (lambda s: None)
    before = hostcheck.read_host_sysctls()
    started = time.monotonic()
    sb: Sandbox | None = None
    ctx: Context | None = None
    met = interrupted = False
    try:
        with _signals_raise():
            sb = Sandbox.create(
                use_netns="netns" in scn.needs,
                use_cgroups="cgroups" in scn.needs,
                keep=keep,
                ttl=scn.timeout + 300,
            )
            ctx = Context(scn, sb, res, report)
            met = _drive(ctx)
    except KeyboardInterrupt:
        interrupted = True
        res.fail("interrupted")
    except Exception as exc:
        res.fail(f"runner error: {type(exc).__name__}: {exc}")
    finally:
        with _shielded():
            report("cleaning up")
            if ctx is not None:
                _teardown(ctx, interrupted)
            elif sb is not None:
                sb.destroy()
    changed = hostcheck.diff(before, hostcheck.read_host_sysctls())
    res.host_untouched = not changed
    res.host_diff = {k: list(v) for k, v in changed.items()}
    if changed:
        res.fail(f"host settings changed: {res.host_diff}")
    res.mttr_seconds = _mttr(ctx) if ctx else None
    res.duration_seconds = round(time.monotonic() - started, 2)
    res.passed = bool(
        met
        and not res.failures
        and res.steady_state_before
        and res.steady_state_after
        and res.host_untouched
    )
    if interrupted:
        raise KeyboardInterrupt
    return res


def _mttr(ctx: Context) -> float | None:
    """Inject -> service healthy again after a fix (or, lacking a probe, the outcome)."""
    if ctx.t_inject is None:
        return None
    end = ctx.t_recovered
    if end is None:
        marks = dict((lbl, t) for t, lbl in ctx.res.timeline.events)
        end = marks.get("verify") or marks.get("rollback")
    return round(end - ctx.t_inject, 3) if end else None


def summarize(results: list[ScenarioResult]) -> dict[str, Any]:
    """Pass rate over the scenarios that ran, p50/p95 detection time and MTTR."""
    ran = [r for r in results if not r.skipped]
    passed = [r for r in ran if r.passed]
    det = [r.detect_seconds for r in ran if r.detect_seconds is not None]
    mttr = [r.mttr_seconds for r in ran if r.mttr_seconds is not None]

    def pct(xs: list[float], q: float) -> float | None:
        v = observe.percentile(xs, q)
        return None if v is None else round(v, 3)

    return {
        "total": len(results),
        "ran": len(ran),
        "passed": len(passed),
        "failed": len(ran) - len(passed),
        "skipped": len(results) - len(ran),
        "pass_rate": round(len(passed) / len(ran), 4) if ran else None,
        "detect_p50_seconds": pct(det, 50),
        "detect_p95_seconds": pct(det, 95),
        "mttr_p50_seconds": pct(mttr, 50),
        "mttr_p95_seconds": pct(mttr, 95),
        "failed_scenarios": [r.label for r in ran if not r.passed],
        "skipped_scenarios": {r.label: r.skip_reason for r in results if r.skipped},
        "note": "skipped scenarios are not failures; pass_rate counts only scenarios that ran",
    }


def run_suite(
    scenarios: list[Scenario],
    *,
    keep: bool = False,
    status: Status | None = None,
    done: Callable[[ScenarioResult], None] | None = None,
) -> list[ScenarioResult]:
    """Run scenarios in order; a Ctrl-C stops the suite after cleaning up the current one."""
    results = []
    for scn in scenarios:
        r = run_scenario(scn, keep=keep, status=status)
        results.append(r)
        if done:
            done(r)
    return results
