"""``healer policy check`` through the real console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import FIXTURES

HEALER = Path(sys.executable).parent / "healer"
SOMAXCONN = (
    '{"kind": "sysctl_write", "scope": "host", "key": "net.core.somaxconn", "value": "4096"}'
)


def run(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HEALER_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(HEALER), "policy", "check", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        check=False,
    )


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_one_action_prints_one_compact_decision() -> None:
    proc = run("--current", "16", SOMAXCONN)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('{"verdict":"allow","reasons":[')
    (d,) = lines(proc.stdout)
    assert list(d) == ["verdict", "reasons", "rules"]  # no "approval" unless one is needed
    assert d["rules"] == ["S-somaxconn"]


def test_unknown_current_value_needs_approval_with_approval_field() -> None:
    (d,) = lines(run(SOMAXCONN).stdout)
    assert d["verdict"] == "needs_approval" and d["approval"] == "approve"
    assert any("current value unknown" in r for r in d["reasons"])


def test_json_lines_on_stdin_give_one_decision_each_and_exit_zero() -> None:
    stdin = (
        "\n".join(
            [
                '{"kind": "sysctl_write", "key": "kernel.panic", "value": "1"}',
                "this is not json",
                "",
                '{"kind": "notify", "message": "hello"}',
            ]
        )
        + "\n"
    )
    proc = run("-", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    assert [d["verdict"] for d in out] == ["deny", "deny", "allow"]
    assert out[0]["rules"] == ["P-protected"] and out[1]["rules"] == ["P-parse"]


def test_mode_flag_observe_denies() -> None:
    (d,) = lines(run("--mode", "observe", "--current", "16", SOMAXCONN).stdout)
    assert d["verdict"] == "deny" and d["rules"] == ["M-observe"]


def test_facts_and_approvers_flags_reach_the_context() -> None:
    action = '{"kind": "process_rlimit", "pid": 4242, "resource": "nofile", "soft": 4096}'
    (d,) = lines(run("--current", "64", "--fact", "hard_limit=4096", action).stdout)
    assert d["verdict"] == "allow"
    nice = '{"kind": "process_nice", "pid": 4242, "nice": 5}'
    (d,) = lines(run("--approver", "alice", nice).stdout)
    assert d["verdict"] == "allow"


def test_read_current_reads_sysctl_and_limits_from_proc_tree() -> None:
    env = {"HEALER_PROCFS_ROOT": str(FIXTURES / "proc")}
    (d,) = lines(run("--read-current", SOMAXCONN, env=env).stdout)  # fixture somaxconn is 16
    assert d["verdict"] == "allow"
    missing = '{"kind": "sysctl_write", "key": "net.core.no_such_key", "value": "1"}'
    (d,) = lines(run("--read-current", missing, env=env).stdout)
    assert d["verdict"] == "deny" and "P-key-missing" in d["rules"]
    # /proc/4242/limits: nofile soft 64, hard 4096.
    ok = '{"kind": "process_rlimit", "pid": 4242, "resource": "nofile", "soft": 4096}'
    too_far = '{"kind": "process_rlimit", "pid": 4242, "resource": "nofile", "soft": 8192}'
    assert lines(run("--read-current", ok, env=env).stdout)[0]["verdict"] == "allow"
    assert lines(run("--read-current", too_far, env=env).stdout)[0]["verdict"] == "deny"


def test_bad_policy_file_exits_two_naming_file_and_key() -> None:
    bad = FIXTURES / "policies" / "typo_key.yaml"
    proc = run("--policy", str(bad), SOMAXCONN)
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{bad}: rules.sysctl_write.0.maxx" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_missing_action_and_bad_fact_are_usage_errors() -> None:
    assert run().returncode == 2
    proc = run("--fact", "hard_limit", SOMAXCONN)
    assert proc.returncode == 2 and "--fact" in proc.stderr
    assert run("--mode", "sometimes", SOMAXCONN).returncode == 2
