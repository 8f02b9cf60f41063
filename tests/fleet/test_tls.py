"""TLS to the control plane is verified: a certificate chained to ``--ca-file`` is
accepted, the same server without that CA is refused, and nothing is sent to it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from healer.store.repository import Repository
from tests.fleet_server import ControlPlane
from tests.tools import require_tool

from .conftest import HOST, TOKEN, LinkFactory


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([str(require_tool("openssl", "Debian's openssl (make system-deps)")),
                    *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def tls_plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, Path]]:
    """A control plane serving https with a certificate for 127.0.0.1 from a test CA."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=healer test CA", cwd=tmp_path)
    _openssl("req", *ec, "-keyout", "cp.key", "-out", "cp.csr", "-subj", "/CN=127.0.0.1",
             cwd=tmp_path)
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "cp.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "cp.pem", "-days", "1", "-extfile", "san.ext",
             cwd=tmp_path)
    plane = ControlPlane(token=TOKEN, host_id=HOST, tls=(tmp_path / "cp.pem",
                                                         tmp_path / "cp.key"))
    with plane:
        yield plane, tmp_path / "ca.pem"


def test_a_certificate_chained_to_the_ca_file_is_accepted(
        tls_plane: tuple[ControlPlane, Path], repo: Repository, make_link: LinkFactory) -> None:
    plane, ca = tls_plane
    link = make_link(plane.url, repo, start=False, config={"ca_file": ca})
    assert 4.0 <= link.sender.heartbeat() <= 6.0
    assert plane.requests("heartbeat")[0].headers["Authorization"] == f"Bearer {TOKEN}"


def test_without_the_ca_the_control_plane_is_refused_and_told_nothing(
        tls_plane: tuple[ControlPlane, Path], repo: Repository, make_link: LinkFactory) -> None:
    plane, _ = tls_plane
    link = make_link(plane.url, repo, start=False)  # the system's store: no test CA in it
    assert link.sender.heartbeat() >= 0.8  # backing off
    assert link.state.unreachable_for() > 0
    assert plane.requests("heartbeat") == []
