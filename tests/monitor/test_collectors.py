from __future__ import annotations

from pathlib import Path

import pytest

from healer.models import SamplePart
from healer.monitor.base import Collector
from healer.monitor.net import NetCollector
from healer.monitor.registry import Monitor, build_collectors, check_unique
from healer.monitor.system import (
    CpuCollector,
    FsCollector,
    LoadCollector,
    MemoryCollector,
    PsiCollector,
    VmstatCollector,
)
from healer.settings import Settings
from healer.telemetry import Telemetry
from tests.monitor.conftest import NOPSI_TREE, PSI_TREE


def _settings(tmp_path: Path, root: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", procfs_root=root, kmsg_source="none",
                    gpu_backend="none", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("root", [PSI_TREE, NOPSI_TREE], ids=["psi", "nopsi"])
def test_every_proc_collector_reads_the_captured_tree(root: Path, tmp_path: Path) -> None:
    mon = Monitor(build_collectors(_settings(tmp_path, root), processes=False))
    s = mon.sample()
    assert s.collector_errors == ()
    for name in ("mem.total_bytes", "load.1m", "pids.count", "pids.max", "fs.file_nr.allocated",
                 "fs.file_nr.max", "vmstat.pgfault_total", "net.tcp.listen_overflows_total",
                 "net.sockstat.tcp_inuse", "gpu.count"):
        assert name in s.metrics, name
    has_psi = any(k.startswith("psi.") for k in s.metrics)
    assert has_psi == (root == PSI_TREE)


def test_psi_tree_exposes_all_three_resources() -> None:
    m = PsiCollector(PSI_TREE).collect().metrics
    for res in ("cpu", "memory", "io"):
        for key in ("some_avg10", "some_avg60", "some_avg300", "some_seconds_total", "full_avg10"):
            assert f"psi.{res}.{key}" in m


def test_cpu_percent_appears_from_the_second_reading(proc_copy: Path) -> None:
    c = CpuCollector(proc_copy)
    assert "cpu.user_percent" not in c.collect().metrics
    stat = proc_copy / "stat"
    lines = stat.read_text().splitlines()
    f = lines[0].split()
    f[1] = str(int(f[1]) + 30)  # user +30 ticks
    f[4] = str(int(f[4]) + 70)  # idle +70 ticks
    stat.write_text("\n".join([" ".join(f), *lines[1:]]) + "\n")
    m = c.collect().metrics
    assert m["cpu.user_percent"] == pytest.approx(30.0)
    assert m["cpu.busy_percent"] == pytest.approx(30.0)


def test_malformed_file_degrades_only_its_collector_with_a_counter(proc_copy: Path) -> None:
    (proc_copy / "vmstat").write_text("pgfault notanumber\n")
    tel = Telemetry()
    mon = Monitor([MemoryCollector(proc_copy), VmstatCollector(proc_copy)], telemetry=tel)
    s = mon.sample()
    assert s.collector_errors == ("vmstat",)
    assert "mem.total_bytes" in s.metrics
    mon.sample()
    value = tel.agent_registry.get_sample_value("healer_collector_errors_total",
                                                {"collector": "vmstat"})
    assert value == 2.0


def test_missing_file_degrades_one_cycle_then_recovers(proc_copy: Path) -> None:
    saved = (proc_copy / "sys/fs/file-nr").read_text()
    (proc_copy / "sys/fs/file-nr").unlink()
    mon = Monitor([FsCollector(proc_copy), LoadCollector(proc_copy)])
    assert mon.sample().collector_errors == ("file_nr",)
    (proc_copy / "sys/fs/file-nr").write_text(saved)
    s = mon.sample()
    assert s.collector_errors == () and "fs.file_nr.max" in s.metrics


def test_error_log_is_rate_limited_to_once_a_minute(
    proc_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (proc_copy / "meminfo").write_text("garbage\n")
    mon = Monitor([MemoryCollector(proc_copy)])
    for _ in range(5):
        mon.sample()
    assert sum("collector failed" in r.message for r in caplog.records) == 1


def test_net_collector_reads_conntrack_when_present_and_skips_when_absent(tmp_path: Path) -> None:
    m = NetCollector(PSI_TREE).collect().metrics
    if (PSI_TREE / "sys/net/netfilter/nf_conntrack_max").exists():
        assert m["net.conntrack.max"] > 0
    assert "net.conntrack.count" not in NetCollector(NOPSI_TREE).collect().metrics


def test_every_registered_collector_satisfies_the_protocol(tmp_path: Path) -> None:
    prom = tmp_path / "prom"
    prom.mkdir()
    kfile = tmp_path / "k.txt"
    kfile.write_text("")
    s = _settings(tmp_path, PSI_TREE, textfile_dir=prom).model_copy(
        update={"kmsg_source": str(kfile), "gpu_backend": "simulated"})
    collectors = build_collectors(s)
    names = {c.name for c in collectors}
    assert {"meminfo", "stat", "vmstat", "psi", "net", "processes", "textfile", "kmsg",
            "gpu"} <= names
    for c in collectors:
        assert isinstance(c, Collector)
        assert isinstance(c.collect(), SamplePart)


def test_duplicate_collector_names_are_an_error() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        check_unique([MemoryCollector(PSI_TREE), MemoryCollector(PSI_TREE)])
