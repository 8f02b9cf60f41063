"""Property: under the default policy a convergence step never goes past the ceiling (the
cgroup budget, 0.75 x RAM, the hard limit, the rule's range), every step it sizes is one
the guard allows without a person, and where it stops no higher value was allowed.

The ceilings are written out here from the default policy's text, not taken from the
code that sizes the steps."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardrails import CheckContext, check, load_policy, parse_action
from guardrails.bounds import subject
from guardrails.policy import Rule
from healer.act.converge import next_value, with_value
from playbooks.loader import load_library
from playbooks.schema import Converge, Demand

from .conftest import Clock

POLICY = load_policy()
GiB = 2**30
NOW = Clock().now

# The knobs the library's convergent remedies step, and the default policy's ceiling on each.
CEILINGS: dict[str, Any] = {
    "memory.max": lambda f: min(f["cgroup_budget_bytes"], 0.75 * f["host_memory_bytes"]),
    "pids.max": lambda f: 4194304,
    "nofile": lambda f: f["hard_limit"],
    "net.core.somaxconn": lambda f: 65535,
    "net.ipv4.tcp_max_syn_backlog": lambda f: 262144,
    "net.netfilter.nf_conntrack_max": lambda f: 2097152,
    "fs.file-max": lambda f: 104857600,
    "kernel.pid_max": lambda f: 4194304,
}
SAMPLES: dict[str, dict[str, Any]] = {
    # a system service: under the default policy's cgroup_auto_roots
    "cgroup_limit": {"kind": "cgroup_limit", "scope": "cgroup:/system.slice/app.service",
                     "path": "/system.slice/app.service", "knob": "memory.max", "value": "1"},
    "process_rlimit": {"kind": "process_rlimit", "scope": "pid:4242", "pid": 4242,
                       "resource": "nofile", "soft": 1},
    "sysctl_write": {"kind": "sysctl_write", "scope": "host", "key": "", "value": "1"},
}


def _plans() -> list[tuple[dict[str, Any], Converge]]:
    """(an action of the remedy's knob, its plan) for every convergent remedy shipped."""
    out = []
    for pb in load_library().playbooks:
        for remedy in pb.remedies:
            if remedy.converge is None:
                continue
            data = dict(SAMPLES[remedy.action.kind])
            for name in ("key", "knob", "resource"):
                if name in remedy.action.fields:
                    data[name] = remedy.action.fields[name]
            out.append((data, remedy.converge))
    return out


PLANS = _plans()
facts = st.fixed_dictionaries({
    "host_memory_bytes": st.integers(GiB // 4, 4096 * GiB).map(float),
    "cgroup_budget_bytes": st.integers(2**24, 8192 * GiB).map(float),
    "hard_limit": st.one_of(st.integers(64, 2**24).map(float), st.just(math.inf)),
})
numbers = st.dictionaries(st.sampled_from(["target.after_max", "kmsg.max.anon_rss_kb"]),
                          st.floats(0, 1e9, allow_nan=False), max_size=2)


def test_every_capacity_playbook_the_issue_names_converges() -> None:
    knobs = {d.get("key") or d.get("knob") or d.get("resource") for d, _ in PLANS}
    assert knobs == set(CEILINGS)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(PLANS) - 1), current=st.integers(1, 2**34), done=st.integers(1, 8),
       facts=facts, numbers=numbers)
def test_a_step_never_passes_the_ceiling_and_the_guard_allows_every_step(
        which: int, current: int, done: int, facts: dict[str, float],
        numbers: dict[str, float]) -> None:
    data, plan = PLANS[which]
    action = parse_action(data)
    rule = POLICY.rule_for(action.kind, subject(action))
    facts["cgroup_budget_bytes"] = min(facts["cgroup_budget_bytes"], facts["host_memory_bytes"])
    ceiling = CEILINGS[subject(action)](facts)
    nxt = next_value(plan, done, float(current), rule, facts, numbers)
    if nxt.value is None:
        assert nxt.stop in ("ceiling", "unbounded")
        if nxt.stop == "ceiling":
            assert ceiling < current + 1  # no higher whole value was within the ceiling
        else:
            assert math.isinf(ceiling)  # only an unknown fact leaves the ceiling unknown
        return
    assert current < nxt.value <= ceiling
    ctx = CheckContext(now=NOW, current=str(current), facts=facts, in_playbook=True)
    decision = check(with_value(action, nxt.value), ctx, POLICY)
    assert decision.verdict == "allow", (current, nxt, decision)


MEMORY = Converge(demand=(Demand(number="kmsg.max.anon_rss_kb", scale=1024, kind="usage"),))
MEMORY_RULE = POLICY.rule_for("cgroup_limit", "memory.max")
ROOMY = {"host_memory_bytes": 64.0 * GiB, "cgroup_budget_bytes": 64.0 * GiB}
MiB = 2**20


def test_a_killed_tasks_rss_capped_by_the_limit_does_not_size_the_step() -> None:
    # 95 MB of a 100 MB limit: the limit capped it, so it says nothing of the demand.
    capped = next_value(MEMORY, 1, 100.0 * MiB, MEMORY_RULE, ROOMY,
                        {"kmsg.max.anon_rss_kb": 95 * 1024})
    assert capped.value == 200 * MiB and "x2^1" in capped.reason


def test_an_uncapped_usage_sizes_the_step_when_it_asks_for_more() -> None:
    # 85 MB of 100 MB was not pinned at the limit: 85 MB x 1.25 headroom, past x1.05
    plan = MEMORY.model_copy(update={"factor": 1.05})
    seen = next_value(plan, 1, 100.0 * MiB, MEMORY_RULE, ROOMY,
                      {"kmsg.max.anon_rss_kb": 85 * 1024})
    assert seen.value == math.floor(85 * MiB * 1.25) and "evidence" in seen.reason


def test_without_a_rule_or_a_fact_the_ceiling_is_unknown_and_nothing_steps() -> None:
    assert next_value(MEMORY, 1, 100.0 * MiB, None, ROOMY, {}).stop == "unbounded"
    no_budget = next_value(MEMORY, 1, 100.0 * MiB, MEMORY_RULE,
                           {"host_memory_bytes": 64.0 * GiB}, {})
    assert (no_budget.value, no_budget.stop) == (None, "unbounded")
    boundless = Rule(id="X-any", approval="auto", max_step_percent=100)  # no range, no facts
    assert next_value(MEMORY, 1, 100.0 * MiB, boundless, ROOMY, {}).stop == "unbounded"


def test_steps_grow_geometrically_until_the_step_bound_holds_them() -> None:
    plan, rule = Converge(), POLICY.rule_for("cgroup_limit", "pids.max")
    values, current = [], 64.0
    for done in range(1, 5):
        nxt = next_value(plan, done, current, rule, {}, {})
        assert nxt.value is not None
        values.append(nxt.value)
        current = float(nxt.value)
    # x2, x4, then x8 held to the rule's bound max(current x 4, 1024)
    assert values == [128, 512, 2048, 8192]
