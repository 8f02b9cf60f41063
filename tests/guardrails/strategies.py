"""Hypothesis strategies: arbitrary JSON, action-shaped dicts, well-formed actions, contexts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import strategies as st

from guardrails import CheckContext, HistoryEntry
from guardrails.actions import ACTION_KINDS

from .conftest import NOW
from .oracle import RAW

RULE_KEYS = [r["match"].replace("*", "ratio") for r in RAW["rules"]["sysctl_write"]]
PROTECTED_KEYS = [
    "kernel.panic",
    "kernel.sysrq",
    "kernel.yama.ptrace_scope",
    "vm.overcommit_memory",
    "net.ipv4.ip_forward",
    "fs.suid_dumpable",
    "kernel.core_pattern",
    "user.max_x",
]
SCOPES = [
    "host",
    "netns:chaos-1",
    "netns:chaos-10",
    "cgroup:/healer-chaos-1/a",
    "cgroup:/x",
    "pid:4242",
    "gpu:0",
    "gpu:1",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
numberish = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.just("max"),
    st.text(max_size=12),
    st.lists(st.integers(-5, 10**7), min_size=1, max_size=4).map(lambda xs: " ".join(map(str, xs))),
)
sysctl_keys = st.one_of(
    st.sampled_from(RULE_KEYS + PROTECTED_KEYS),
    st.from_regex(r"[a-z][a-z0-9_]{0,6}(\.[A-Za-z0-9_-]{1,8}){1,3}", fullmatch=True),
    st.text(max_size=30),
)
action_dicts = st.fixed_dictionaries(
    {"kind": st.sampled_from([*ACTION_KINDS, "shell", "", "SYSCTL_WRITE"])},
    optional={
        "scope": st.sampled_from(SCOPES) | st.text(max_size=20),
        "key": sysctl_keys,
        "value": numberish,
        "path": st.sampled_from(["/healer-chaos-1/a", "/", "/x/../y"]) | st.text(max_size=15),
        "knob": st.sampled_from(["memory.max", "pids.max", "cpu.weight", "cpu.shares", "x"]),
        "pid": st.integers(-3, 2**23),
        "resource": st.sampled_from(["nofile", "nproc", "core", "cpu"]),
        "soft": st.integers(-1, 2**64),
        "nice": st.integers(-25, 25),
        "index": st.integers(-1, 70),
        "watts": st.floats(allow_nan=True, allow_infinity=True),
        "min_mhz": st.integers(-1, 6000),
        "max_mhz": st.integers(-1, 6000),
        "mode": st.sampled_from(["default", "exclusive_process", "weird"]),
        "client": st.integers(0, 10),
        "percent": st.integers(-1, 101),
        "level": st.sampled_from(["short", "long", "x"]),
        "message": st.text(max_size=40),
        "extra": json_values,
    },
)
ints = st.integers(0, 2**22)
power_w = st.floats(1, 2000, allow_nan=False)
_KIND_FIELDS: dict[str, dict[str, Any]] = {
    "sysctl_write": {
        "key": st.sampled_from(RULE_KEYS + PROTECTED_KEYS) | sysctl_keys,
        "value": st.integers(-10, 2**23).map(str) | numberish,
        "scope": st.sampled_from(SCOPES),
    },
    "cgroup_limit": {
        "path": st.sampled_from(["/healer-chaos-1/a", "/x", "/"]),
        "knob": st.sampled_from(["memory.max", "memory.high", "pids.max", "cpu.weight"]),
        "value": ints.map(str) | st.just("max"),
        "scope": st.sampled_from(SCOPES),
    },
    "process_rlimit": {
        "pid": st.integers(1, 5000),
        "resource": st.sampled_from(["nofile", "nproc"]),
        "soft": ints,
        "scope": st.sampled_from(SCOPES),
    },
    "process_nice": {"pid": st.integers(1, 5000), "nice": st.integers(-20, 19)},
    "gpu_power_limit": {
        "index": st.integers(0, 2),
        "watts": power_w,
        "scope": st.sampled_from(SCOPES),
    },
    "gpu_locked_clocks": {
        "index": st.integers(0, 2),
        "min_mhz": st.integers(0, 3000),
        "max_mhz": st.integers(0, 3000),
    },
    "gpu_compute_mode": {
        "index": st.integers(0, 2),
        "mode": st.sampled_from(["default", "prohibited"]),
    },
    "gpu_mps_thread_percentage": {
        "index": st.integers(0, 2),
        "client": st.integers(1, 9),
        "percent": st.integers(1, 100),
    },
    "gpu_timeslice": {"index": st.integers(0, 2), "level": st.sampled_from(["short", "long"])},
    "notify": {"message": st.text(max_size=40)},
    "escalate": {"message": st.text(max_size=40)},
}
well_formed = st.one_of(
    *(st.fixed_dictionaries({"kind": st.just(k), **f}) for k, f in _KIND_FIELDS.items())
)
contexts = st.builds(
    CheckContext,
    now=st.just(NOW),
    mode=st.sampled_from(["observe", "advise", "auto"]),
    provenance=st.sampled_from(["playbook", "llm", "operator"]),
    in_playbook=st.booleans(),
    current=st.none() | numberish,
    facts=st.dictionaries(
        st.sampled_from(
            [
                "hard_limit",
                "gpu_min_watts",
                "gpu_max_watts",
                "host_memory_bytes",
                "cgroup_budget_bytes",
            ]
        ),
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(0, 2**40),
    ),
    key_exists=st.none() | st.booleans(),
    history=st.lists(
        st.builds(
            HistoryEntry,
            target=st.text(max_size=20),
            ts=st.integers(-7200, 7200).map(lambda s: NOW + timedelta(seconds=s)),
            state=st.sampled_from(["verified", "rolled_back", "denied"]),
            value=st.none() | numberish,
            convergence=st.none() | st.just("convergence:1"),
        ),
        max_size=4,
    ),
    convergence=st.none() | st.just("convergence:1"),
    changes_this_cycle=st.integers(0, 5),
    changes_last_hour=st.integers(0, 30),
    approvals=st.lists(st.sampled_from(["alice", "bob", " ", ""]), max_size=3).map(tuple),
    confine=st.lists(st.sampled_from([*SCOPES, "cgroup:/healer-chaos-1"]), max_size=2).map(tuple),
    root=st.booleans(),
)


favourable = st.builds(
    CheckContext,
    now=st.just(NOW),
    provenance=st.sampled_from(["playbook", "llm", "operator"]),
    in_playbook=st.booleans(),
    current=st.none() | st.integers(0, 2**22).map(str) | st.floats(1, 2000).map(str),
    facts=st.fixed_dictionaries(
        {},
        optional={
            "hard_limit": st.integers(0, 2**22),
            "gpu_min_watts": st.floats(0, 500),
            "gpu_max_watts": st.floats(100, 2000),
            "host_memory_bytes": st.integers(0, 2**36),
            "cgroup_budget_bytes": st.integers(0, 2**34),
        },
    ),
    approvals=st.lists(st.sampled_from(["alice", "bob"]), max_size=2).map(tuple),
    confine=st.sampled_from([(), ("netns:chaos-1", "cgroup:/healer-chaos-1", "pid:42", "gpu:0")]),
)


@st.composite
def near_bounds(draw: st.DrawFn) -> tuple[dict[str, Any], CheckContext]:
    """An auto-class change whose value sits near its bounds, so the bounds decide."""
    cur = draw(st.integers(0, 2**22))
    new = draw(st.integers(0, 2**23) | st.integers(0, 4 * cur + 4097) | st.just(cur))
    kind = draw(st.sampled_from(["sysctl", "memory", "pids", "nofile", "power"]))
    facts: dict[str, float] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "hard_limit": st.integers(0, 2**23),
                "cgroup_budget_bytes": st.integers(0, 2**25),
                "host_memory_bytes": st.integers(0, 2**26),
                "gpu_min_watts": st.integers(50, 300),
                "gpu_max_watts": st.integers(200, 700),
            },
        )
    )
    scope = draw(st.sampled_from(["host", "netns:chaos-1"]))
    if kind == "sysctl":
        data: dict[str, Any] = {
            "kind": "sysctl_write",
            "scope": scope,
            "key": draw(st.sampled_from(RULE_KEYS)),
            "value": str(new),
        }
    elif kind in ("memory", "pids"):
        knob = "memory.max" if kind == "memory" else "pids.max"
        data = {
            "kind": "cgroup_limit",
            "path": "/healer-chaos-1/w",
            "knob": knob,
            "value": str(new),
            "scope": "cgroup:/healer-chaos-1/w",
        }
    elif kind == "nofile":
        data = {"kind": "process_rlimit", "pid": 42, "resource": "nofile", "soft": new}
    else:
        cur, new = cur % 800 + 1, new % 800 + 1
        data = {"kind": "gpu_power_limit", "index": 0, "watts": new}
    prov = draw(st.sampled_from(["playbook", "llm"]))
    return data, CheckContext(now=NOW, current=str(cur), facts=facts, provenance=prov)
