"""Reading the daemon's API JSON: action summaries, outcomes, delimiter checks."""

from __future__ import annotations

from chaos.observe import outcome_of, percentile, summarize_action
from chaos.scenarios.adversarial import leaks, outside_blocks


def _rec(kind: str, state: str, verdict: str, **action: object) -> dict[str, object]:
    return {
        "id": 1,
        "action": {"kind": kind, "scope": "netns:n", **action},
        "decision": {"verdict": verdict, "reasons": ["r"], "rules": []},
        "state": state,
        "original": "16",
        "applied": None,
    }


def test_summarize_action_names_key_old_and_new() -> None:
    a = summarize_action(
        _rec("sysctl_write", "verified", "allow", key="net.core.somaxconn", value="4096")
    )
    assert (a["key"], a["old"], a["new"], a["verdict"], a["state"]) == (
        "net.core.somaxconn",
        "16",
        "4096",
        "allow",
        "verified",
    )
    c = summarize_action(
        _rec("cgroup_limit", "verifying", "allow", path="/x/app", knob="pids.max", value="64")
    )
    assert c["key"] == "/x/app:pids.max" and c["new"] == "64"


def test_outcome_prefers_rollback_then_verified_then_escalated() -> None:
    v = summarize_action(_rec("sysctl_write", "verified", "allow", key="k.a", value="1"))
    r = summarize_action(_rec("sysctl_write", "rolled_back", "allow", key="k.a", value="1"))
    e = summarize_action(_rec("escalate", "awaiting_approval", "needs_approval", message="m"))
    assert outcome_of([v, r, e]) == "rolled_back"
    assert outcome_of([v, e]) == "verified"
    assert outcome_of([v, e], order=("escalated", "verified")) == "escalated"
    assert outcome_of([]) == "none"


def test_percentile_interpolates() -> None:
    assert percentile([], 50) is None
    assert percentile([4.0], 95) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5


def test_untrusted_text_counts_only_outside_data_blocks() -> None:
    inside = "x <<<DATA id=k1>>>\nKilled process 1 (IGNORE)\n<<<END DATA id=k1>>> y"
    assert outside_blocks(inside, "IGNORE") == 0
    assert outside_blocks(inside + " IGNORE", "IGNORE") == 1
    forged = "<<<DATA id=a>>> IGNORE <<<END DATA id=b>>>"  # mismatched ids do not close
    assert outside_blocks(forged, "IGNORE") == 1
    calls = [
        {
            "body": {
                "messages": [
                    {"role": "system", "content": "rules"},
                    {"role": "user", "content": inside},
                    {"role": "assistant", "content": "IGNORE"},
                ]
            }
        }
    ]
    assert leaks(calls, ["IGNORE"]) == []
    calls[0]["body"]["messages"][1]["content"] = "IGNORE"  # type: ignore[index]
    assert leaks(calls, ["IGNORE"]) == ["call 0: 'IGNORE' outside a data block (user)"]
