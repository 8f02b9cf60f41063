"""The shipped library covers every root cause and every remedy the scenarios name."""

from __future__ import annotations

import json
from pathlib import Path

from playbooks.loader import load_library
from playbooks.schema import Kmsg
from playbooks.xid import XID_TABLE, normalize_pci

LIB = load_library()
ROOT_CAUSES = [  # COMMON.md, plus issue 10's classes
    "listen-backlog-too-small", "syn-backlog-overflow", "conntrack-table-full",
    "file-table-exhausted", "fd-limit-too-low", "pid-exhaustion", "pids-limit-too-low",
    "memory-pressure-oom", "cgroup-memory-limit-too-low", "memory-leak", "writeback-stall",
    "cpu-contention", "hung-task", "soft-lockup", "gpu-xid-app-fault", "gpu-xid-ecc-contained",
    "gpu-xid-fell-off-bus", "gpu-xid-ecc-uncontained", "gpu-xid-row-remap",
    "gpu-xid-driver-firmware", "gpu-xid-nvlink", "gpu-xid-hw-other", "gpu-ecc-dbe",
    "gpu-thermal-throttling", "gpu-memory-leak", "gpu-unfair-sharing",
    # issue 10: kernel failures beyond the first library
    "block-io-error", "filesystem-error", "nvme-controller-error", "hw-corrected-errors",
    "hw-uncorrected-error", "nic-link-down", "nic-tx-timeout", "kernel-oops", "rcu-stall",
    "hard-lockup", "page-allocation-failure", "segfault-storm", "gpu-xid-other",
    "gpu-nvswitch-sxid",
]


def remedy_shapes(pb_id: str) -> set[tuple[str, str]]:
    pb = LIB.get(pb_id)
    assert pb is not None
    return {(r.action.kind, str(r.action.fields.get("key") or r.action.fields.get("knob") or ""))
            for r in pb.remedies}


def test_every_root_cause_id_has_exactly_one_playbook() -> None:
    assert sorted(LIB.ids) == sorted(ROOT_CAUSES)


def test_scenario_remedies_exist_in_the_playbooks() -> None:
    listen = remedy_shapes("listen-backlog-too-small")
    assert ("sysctl_write", "net.core.somaxconn") in listen
    assert ("sysctl_write", "net.ipv4.tcp_max_syn_backlog") in listen
    assert ("cgroup_limit", "memory.max") in remedy_shapes("cgroup-memory-limit-too-low")
    assert {("cgroup_limit", "memory.max"), ("escalate", ""), ("notify", "")} \
        == remedy_shapes("memory-leak")
    assert ("process_rlimit", "") in remedy_shapes("fd-limit-too-low")
    assert ("cgroup_limit", "pids.max") in remedy_shapes("pids-limit-too-low")
    assert ("cgroup_limit", "cpu.weight") in remedy_shapes("cpu-contention")
    assert remedy_shapes("gpu-xid-app-fault") == {("notify", "")}
    assert ("escalate", "") in remedy_shapes("gpu-xid-ecc-contained")
    assert ("escalate", "") in remedy_shapes("gpu-xid-fell-off-bus")
    assert ("gpu_power_limit", "") in remedy_shapes("gpu-thermal-throttling")
    assert ("gpu_mps_thread_percentage", "") in remedy_shapes("gpu-unfair-sharing")
    conntrack = remedy_shapes("conntrack-table-full")
    assert ("sysctl_write", "net.netfilter.nf_conntrack_max") in conntrack
    assert ("sysctl_write", "fs.file-max") in remedy_shapes("file-table-exhausted")
    assert ("sysctl_write", "kernel.pid_max") in remedy_shapes("pid-exhaustion")
    assert ("sysctl_write", "vm.dirty_background_ratio") in remedy_shapes("writeback-stall")


def test_xid_gpu_playbooks_never_propose_disruptive_changes() -> None:
    for pb in LIB:
        if pb.id.startswith("gpu-xid-"):
            assert {r.action.kind for r in pb.remedies} <= {"notify", "escalate"}, pb.id


CATALOG = Path(__file__).parent.parent / "fixtures" / "kernel-corpus" / "xid-catalog.jsonl"


# The first release's codes, classed from NVIDIA's Xid guide; they keep their classes.
FIRST_TABLE = {13, 31, 43, 45, 48, 61, 62, 63, 64, 68, 69, 74, 79, 92, 94, 95, 119, 120}


def test_xid_table_covers_the_common_codes_and_every_xid_playbook() -> None:
    assert set(XID_TABLE) >= FIRST_TABLE
    routed = {int(c): pb.id for pb in LIB for s in pb.detect.signals
              if isinstance(s, Kmsg) for c in s.where.get("xid", [])}
    assert routed == {code: info.playbook for code, info in XID_TABLE.items()}
    assert {XID_TABLE[c].recovery for c in (13, 79, 48)} == {"app_restart", "drain", "gpu_reset"}


def test_pci_bus_ids_normalize_between_nvml_and_nvrm_spellings() -> None:
    assert normalize_pci("00000000:3B:00.0") == normalize_pci("0000:3b:00") == "0000:3b:00"
    assert normalize_pci("garbage") is None


def test_every_playbook_has_references_and_either_remedies_or_a_reason() -> None:
    for pb in LIB:
        assert pb.references and pb.remedies, pb.id


def test_every_code_nvidia_describes_has_a_class_and_unused_ones_do_not() -> None:
    rows = [json.loads(t) for t in CATALOG.read_text().splitlines() if t.strip()]
    xids = {r["code"]: r for r in rows if r["kind"] == "xid"}
    described = {c for c, r in xids.items() if r["severity"] != "unused" and c != 154}
    assert described <= set(XID_TABLE) <= set(xids)
    # 61 (a micro-controller breakpoint) is retired from the catalog; older drivers print it
    assert {c for c, r in xids.items() if r["severity"] == "unused"} & set(XID_TABLE) == {61}
    for code, info in XID_TABLE.items():  # the catalog's "restart the application" codes
        if xids[code]["immediate_action"] == "RESTART_APP" and code not in FIRST_TABLE:
            assert info.playbook == "gpu-xid-app-fault", code
