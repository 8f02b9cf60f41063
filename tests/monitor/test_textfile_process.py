from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from healer.monitor.process import ProcessCollector, parse_limits_nofile, read_cgroup
from healer.monitor.textfile import TextfileCollector, textfile_name


def test_textfile_names_fold_labels() -> None:
    assert textfile_name("app_latency_seconds", {"quantile": "0.99"}) == \
        "textfile.app_latency_seconds.quantile_0_99"
    assert textfile_name("Up", {}) == "textfile.up"


def test_textfile_collector_reads_good_files_and_counts_bad_ones_once(tmp_path: Path) -> None:
    (tmp_path / "slo.prom").write_text(
        "# TYPE probe_latency_seconds gauge\nprobe_latency_seconds 0.25\n"
        'app_latency_seconds{quantile="0.99"} 0.8\n')
    (tmp_path / "bad.prom").write_text("this is { not prometheus\n")
    (tmp_path / "ignored.txt").write_text("x 1\n")
    c = TextfileCollector(tmp_path)
    m = c.collect().metrics
    assert m["textfile.probe_latency_seconds"] == 0.25
    assert m["textfile.app_latency_seconds.quantile_0_99"] == 0.8
    assert m["textfile.files"] == 1 and m["textfile.errors_total"] == 1
    assert c.collect().metrics["textfile.errors_total"] == 1  # unchanged bad file: counted once
    (tmp_path / "slo.prom").write_text("probe_latency_seconds 0.05\n")
    os.utime(tmp_path / "slo.prom", ns=(1, 10**18))
    assert c.collect().metrics["textfile.probe_latency_seconds"] == 0.05


def test_textfile_missing_directory_is_empty_not_an_error(tmp_path: Path) -> None:
    assert TextfileCollector(tmp_path / "nope").collect().metrics["textfile.files"] == 0


def test_process_scan_runs_only_every_interval() -> None:
    now = [0.0]
    c = ProcessCollector(top_n=3, interval=10, clock=lambda: now[0])
    first = c.collect()
    assert first.processes is not None and 1 <= len(first.processes) <= 9
    assert first.metrics["procs.count"] >= 1
    now[0] = 5.0
    assert c.collect().processes is None
    now[0] = 10.0
    assert c.collect().processes is not None


def test_own_process_shows_fds_and_nofile_limits() -> None:
    c = ProcessCollector(top_n=200, interval=10)
    procs = {p.pid: p for p in c.collect().processes or ()}
    me = procs.get(os.getpid())
    assert me is not None and me.num_fds is not None and me.num_fds > 0
    assert me.nofile_soft is not None and me.cgroup is not None


def test_limits_and_cgroup_parsers(tmp_path: Path) -> None:
    (tmp_path / "limits").write_text(
        "Limit                     Soft Limit           Hard Limit           Units\n"
        "Max open files            64                   4096                 files\n")
    assert parse_limits_nofile(tmp_path / "limits") == (64, 4096)
    (tmp_path / "cgroup").write_text("4:memory:/chaos/a\n0::/\n")
    assert read_cgroup(tmp_path / "cgroup") == "/chaos/a"
    (tmp_path / "cgroup").write_text("0::/system.slice/x.service\n")
    assert read_cgroup(tmp_path / "cgroup") == "/system.slice/x.service"
    # hybrid: systemd's unified path differs; the memory controller lives in v1
    (tmp_path / "cgroup").write_text(
        "9:name=systemd:/user.slice/session-3.scope\n4:memory:/healer-chaos-1/batch\n"
        "1:cpu,cpuacct:/healer-chaos-1/batch\n0::/user.slice/session-3.scope\n")
    assert read_cgroup(tmp_path / "cgroup") == "/healer-chaos-1/batch"


def test_textfile_refuses_symlinks_fifos_and_huge_files_and_never_logs_content(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Root reads this directory: a symlink to a secret must be neither followed nor quoted."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "shadow"
    secret.write_text("leaked_metric 42\n")
    prom = tmp_path / "prom"
    prom.mkdir()
    os.symlink(secret, prom / "link.prom")
    os.mkfifo(prom / "pipe.prom")  # a reader that blocks forever, if it were opened blocking
    (prom / "huge.prom").write_text("big_metric 1\n" + "# pad\n" * (1 << 18))
    (prom / "shadowish.prom").write_text("root:$6$s3cr3tHash:19000:0:99999:7:::\n")
    (prom / "good.prom").write_text("good_metric 1\n")
    collector = TextfileCollector(prom)
    with caplog.at_level(logging.WARNING):
        metrics = collector.collect().metrics
    assert "textfile.leaked_metric" not in metrics and "textfile.big_metric" not in metrics
    assert metrics["textfile.good_metric"] == 1 and metrics["textfile.files"] == 1
    assert metrics["textfile.errors_total"] == 4
    assert "s3cr3tHash" not in caplog.text and "leaked_metric" not in caplog.text
    assert "link.prom" in caplog.text and "larger than" in caplog.text
