"""The workloads make the real fault happen (no healer involved)."""

from __future__ import annotations

import time

from chaos import netns
from chaos.faults import NetnsSysctl
from chaos.proc import python_module
from chaos.sandbox import Sandbox


def test_reloading_server_overflows_only_under_a_small_somaxconn(sandbox: Sandbox) -> None:
    from chaos.faults import Workload

    ns = sandbox.ns or ""
    server = Workload(
        "server",
        python_module("chaos.workloads.slow_server", "--port", "8080", "--accept-rate", "400"),
        ns=ns,
    )
    sandbox.add(server)
    sandbox.add(
        Workload(
            "client",
            python_module(
                "chaos.workloads.burst_client", "--port", "8080", "--burst", "120", "--hold", "0.3"
            ),
            ns=ns,
        )
    )
    time.sleep(2.0)

    def overflows() -> int:
        return netns.netstat(server.pid).get("TcpExt.ListenOverflows", 0)

    a = overflows()
    time.sleep(2.0)
    assert overflows() == a, "no overflow with the namespace's default somaxconn"
    sandbox.add(NetnsSysctl(ns, "net.core.somaxconn", "16", ttl=60))
    time.sleep(3.0)
    assert overflows() > a + 50, "the server re-called listen() and now overflows"
