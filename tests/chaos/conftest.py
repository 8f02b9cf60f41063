"""Shared fixtures for chaos framework tests (no full scenarios here)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from chaos import netns
from chaos.cgroups import CgroupFS
from chaos.sandbox import Sandbox


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and scratch cgroups")
    if not shutil.which("ip"):
        pytest.skip("needs iproute2 (ip netns)")


def leftovers(sb_id: str) -> dict[str, list[str]]:
    """Kernel objects of one sandbox still present on the host."""
    name = f"healer-chaos-{sb_id}"
    cg = CgroupFS.detect()
    return {
        "netns": [n for n in netns.list_chaos() if n == name],
        "cgroups": [n for n in cg.list_chaos() if n == name],
    }


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    need_root()
    sb = Sandbox.create(ttl=120)
    try:
        yield sb
    finally:
        sb.destroy()
