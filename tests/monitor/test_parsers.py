from __future__ import annotations

import pytest

from healer.errors import ParseError
from healer.monitor.parse_net import parse_snmp, parse_sockstat
from healer.monitor.parse_proc import (
    CpuTimes,
    cpu_percentages,
    parse_file_nr,
    parse_loadavg,
    parse_meminfo,
    parse_psi,
    parse_stat,
    parse_vmstat,
)
from tests.monitor.conftest import PSI_TREE


def _memtotal_kb(text: str) -> int:
    line = next(ln for ln in text.splitlines() if ln.startswith("MemTotal:"))
    return int(line.split()[1])


def test_meminfo_total_bytes_is_memtotal_times_1024_exactly() -> None:
    text = (PSI_TREE / "meminfo").read_text()
    m = parse_meminfo(text)
    assert m["mem.total_bytes"] == _memtotal_kb(text) * 1024
    assert "mem.available_bytes" in m and "mem.active_anon_bytes" in m
    assert m["mem.huge_pages_total_pages"] >= 0  # unitless fields keep their count
    assert 0 < m["mem.available_percent"] <= 100


def test_meminfo_garbage_raises_parse_error_naming_the_path() -> None:
    with pytest.raises(ParseError) as exc:
        parse_meminfo("MemTotal: lots\n", "/x/meminfo")
    assert exc.value.path == "/x/meminfo"


def test_loadavg_gives_load_and_pid_count() -> None:
    m = parse_loadavg("0.50 0.40 0.30 2/345 6789\n")
    assert m == {"load.1m": 0.5, "load.5m": 0.4, "load.15m": 0.3,
                 "procs.runnable": 2.0, "pids.count": 345.0}


def test_cpu_percentages_sum_to_100_and_exclude_guest() -> None:
    prev = CpuTimes(100, 0, 50, 800, 50, 0, 0, 0)
    cur = CpuTimes(150, 0, 75, 900, 75, 0, 0, 0)
    p = cpu_percentages(prev, cur)
    assert p["cpu.user_percent"] == pytest.approx(25.0)
    assert p["cpu.idle_percent"] == pytest.approx(50.0)
    assert p["cpu.busy_percent"] == pytest.approx(37.5)
    parts = [v for k, v in p.items() if k != "cpu.busy_percent"]
    assert sum(parts) == pytest.approx(100.0)


def test_stat_fixture_parses_counters() -> None:
    cpu, m = parse_stat((PSI_TREE / "stat").read_text())
    assert cpu.total > 0
    assert m["cpu.count"] >= 1
    assert m["cpu.context_switches_total"] > 0 and "procs.blocked" in m


def test_vmstat_counters_end_in_total_and_nr_are_gauges() -> None:
    m = parse_vmstat((PSI_TREE / "vmstat").read_text())
    assert "vmstat.pgmajfault_total" in m
    assert "vmstat.nr_free_pages" in m
    assert not any(k.startswith("vmstat.nr_") and k.endswith("_total") for k in m)


def test_psi_converts_total_microseconds_to_seconds() -> None:
    text = "some avg10=1.50 avg60=0.70 avg300=0.10 total=2500000\n" \
           "full avg10=0.25 avg60=0.00 avg300=0.00 total=1000\n"
    m = parse_psi(text, "memory")
    assert m["psi.memory.some_avg10"] == 1.5
    assert m["psi.memory.some_seconds_total"] == 2.5
    assert m["psi.memory.full_seconds_total"] == 0.001


def test_psi_malformed_raises() -> None:
    with pytest.raises(ParseError):
        parse_psi("some avg10=x\n", "io")


def test_netstat_and_snmp_follow_the_naming_contract() -> None:
    m = parse_snmp((PSI_TREE / "net/snmp").read_text())
    parse_snmp((PSI_TREE / "net/netstat").read_text(), into=m)
    for name in ("net.tcp.listen_overflows_total", "net.tcp.listen_drops_total",
                 "net.tcp.backlog_drop_total", "net.tcp.retrans_segs_total",
                 "net.tcp.curr_estab", "net.udp.in_datagrams_total", "net.ip.in_receives_total",
                 "net.ip.in_octets_total", "net.tcp.delayed_acks_total"):
        assert name in m, name
    assert "net.tcp.curr_estab_total" not in m


def test_snmp_counts_every_field_of_every_section() -> None:
    text = (PSI_TREE / "net/netstat").read_text() + (PSI_TREE / "net/snmp").read_text()
    lines = text.splitlines()
    fields = sum(len(h.split()) - 1 for h in lines[::2])
    assert len(parse_snmp(text)) == fields


def test_snmp_folded_name_collision_keeps_its_own_section() -> None:
    text = "Tcp: Foo\nTcp: 1\nTcpExt: TCPFoo\nTcpExt: 2\n"
    m = parse_snmp(text)
    assert m == {"net.tcp.foo_total": 1.0, "net.tcpext.tcp_foo_total": 2.0}


def test_snmp_header_value_mismatch_raises() -> None:
    with pytest.raises(ParseError):
        parse_snmp("Tcp: A B\nTcp: 1\n")


def test_sockstat_units() -> None:
    m = parse_sockstat("sockets: used 17\nTCP: inuse 1 orphan 0 tw 1 alloc 1 mem 117\n"
                       "FRAG: inuse 0 memory 0\n")
    assert m["net.sockstat.sockets_used"] == 17
    assert m["net.sockstat.tcp_mem_pages"] == 117
    assert m["net.sockstat.frag_memory_bytes"] == 0


def test_file_nr() -> None:
    assert parse_file_nr("736\t0\t9223372036854775807\n")["fs.file_nr.max"] == 9.223372036854776e18
    with pytest.raises(ParseError):
        parse_file_nr("1 2\n")
