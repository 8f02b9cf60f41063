"""Undo steps: small JSON values that put one thing back, each idempotent.

A fault records its undo steps *before* it changes anything, and hands the same steps to
its watchdog (``chaos.watchdog``). The runner and the watchdog run them through this one
function, so the in-process revert and the revert after a crash are the same code.

Steps never touch the host's settings: sysctls are written only inside a named network
namespace, files only under a chaos scratch dir or a cgroup chaos made.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from chaos import netns
from chaos.cgroups import CgroupFS
from chaos.proc import kill_group

log = logging.getLogger("chaos.undo")

Step = dict[str, Any]
SCRATCH_PREFIX = "healer-chaos-"


def _safe_path(path: str) -> Path:
    p = Path(path).resolve()
    tmp = Path(tempfile.gettempdir()).resolve()
    ok = (p.is_relative_to(tmp) and SCRATCH_PREFIX in str(p)) or (
        p.is_relative_to("/sys/fs/cgroup") and SCRATCH_PREFIX in str(p)
    )
    if not ok:
        raise ValueError(f"undo refuses a path outside chaos scratch space: {path}")
    return p


def _step_sysctl(step: Step) -> None:
    if not step.get("netns"):
        raise ValueError("undo never writes a host sysctl")
    if netns.exists(step["netns"]):
        netns.write_sysctl(step["netns"], step["key"], step["value"])


def _step_write(step: Step) -> None:
    p = _safe_path(step["path"])
    if p.exists():
        p.write_text(step["value"])


def _step_unlink(step: Step) -> None:
    _safe_path(step["path"]).unlink(missing_ok=True)


def _step_json_patch(step: Step) -> None:
    from chaos import gpusim  # local: gpusim imports nothing of ours but keep undo light

    p = _safe_path(step["path"])
    if p.exists():
        gpusim.patch_device(p, int(step["index"]), step["fields"])


def _step_gpu_proc_rm(step: Step) -> None:
    from chaos import gpusim

    p = _safe_path(step["path"])
    if p.exists():
        gpusim.remove_process(p, int(step["index"]), int(step["pid"]))


def _step_cgroup_rm(step: Step) -> None:
    if not step["path"].strip("/").startswith(SCRATCH_PREFIX):
        raise ValueError(f"undo removes only chaos cgroups, not {step['path']}")
    CgroupFS(int(step["version"]), {k: Path(v) for k, v in step["roots"].items()}).remove(
        step["path"]
    )


def _step_netns_rm(step: Step) -> None:
    netns.delete(step["name"])


def _step_rmtree(step: Step) -> None:
    shutil.rmtree(_safe_path(step["path"]), ignore_errors=True)


def _step_kill(step: Step) -> None:
    kill_group(int(step["pid"]), step.get("ctime"))


OPS = {
    "sysctl": _step_sysctl,
    "write": _step_write,
    "gpu_patch": _step_json_patch,
    "gpu_proc_rm": _step_gpu_proc_rm,
    "cgroup_rm": _step_cgroup_rm,
    "netns_rm": _step_netns_rm,
    "rmtree": _step_rmtree,
    "unlink": _step_unlink,
    "kill": _step_kill,
}


def run_steps(steps: list[Step]) -> list[str]:
    """Run every step, in order, even after one fails; return the failures."""
    errors = []
    for step in steps:
        try:
            OPS[step["op"]](step)
        except Exception as exc:
            errors.append(f"{step.get('op')}: {exc}")
            log.warning("undo step failed op=%s error=%s", step.get("op"), exc)
    return errors


def dumps(steps: list[Step]) -> str:
    """Steps as one JSON line."""
    return json.dumps(steps, separators=(",", ":"))
