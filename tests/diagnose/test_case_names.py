"""Eval cases speak the collectors' metric names, so they test what the daemon would see."""

from __future__ import annotations

import re

from healer.diagnose.evalcases import load_cases
from healer.host.gpu.nvml import NvmlBackend
from healer.monitor.gpu import GpuCollector
from playbooks.loader import load_library
from tests.monitor.conftest import PSI_TREE
from tests.monitor.fake_nvml import FakeNvml

_TEMPLATE = re.compile(r"\{[a-z_]+\}")


def _playbook_metric_patterns() -> list[re.Pattern[str]]:
    names: set[str] = set()
    for pb in load_library():
        text = pb.model_dump_json()
        # every dotted name the playbook mentions: signal metrics, divisors, evidence
        names.update(re.findall(r'"([a-z][a-z0-9_]*(?:\.[A-Za-z0-9_{}/-]+)+)"', text))
    return [re.compile("^" + _TEMPLATE.sub(r"[^.]+", re.escape(n).replace(r"\{", "{")
                                           .replace(r"\}", "}")) + "$") for n in names]


def test_every_case_metric_is_one_a_playbook_reads() -> None:
    patterns = _playbook_metric_patterns()
    stray = {(case.id, name) for case in load_cases() for name in case.metrics
             if not any(p.match(name) for p in patterns)}
    assert stray == set()


def test_every_case_gpu_metric_is_one_the_gpu_collector_emits() -> None:
    emitted = set(GpuCollector(NvmlBackend(nvml=FakeNvml(), procfs_root=PSI_TREE))
                  .collect().gpus[0].metrics)
    stray = {(case.id, name) for case in load_cases() for gpu in case.gpus
             for name in gpu.get("metrics", {}) if name not in emitted}
    assert stray == set()
