"""Fixtures for the fleet agent's tests: a control plane over real HTTP, links to it, and
the engine tests' journal, clock, window and network namespace."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from healer.fleet.config import FleetConfig
from healer.fleet.link import FleetLink
from healer.store.repository import Repository
from tests.act.conftest import clock, netns, repo, window
from tests.fleet_server import ControlPlane

__all__ = ["clock", "netns", "repo", "window"]

TOKEN = "hlr_test_host_token"
HOST = "test-host"  # the act fixtures' repository host


@pytest.fixture
def cp() -> Iterator[ControlPlane]:
    with ControlPlane(token=TOKEN, host_id=HOST) as plane:
        yield plane


LinkFactory = Callable[..., FleetLink]


@pytest.fixture
def make_link() -> Iterator[LinkFactory]:
    """``make_link(url, repo, start=True, **link_kw)``: a link, stopped after the test."""
    links: list[FleetLink] = []

    def make(url: str, repo: Repository, *, start: bool = True, labels: dict[str, str] | None
             = None, config: dict[str, Any] | None = None, **kw: Any) -> FleetLink:
        settings = {"sample_seconds": 1.0, **(config or {})}
        link = FleetLink(FleetConfig(url=url, host_id=repo.host_id, token=TOKEN,
                                     labels=labels or {"rack": "r1"}, **settings), repo, **kw)
        links.append(link)
        if start:
            link.start()
        return link

    yield make
    for link in links:
        link.stop()


def until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """``check()``'s first truthy value, polling until ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")
