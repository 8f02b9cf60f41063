"""Unauthenticated clients cannot exhaust the daemon: bodies are limited while they stream,
logins are throttled per address and overall, and argon2 runs at most twice at once."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from healer.store.repository import Repository
from tests.web.helpers import PASSWORD, add_user, csrf_of, serve
from web.security import LoginThrottle, client_address, parse_networks

MB = 1024 * 1024


class PeakRss:
    """Samples this process's RSS every few milliseconds; ``growth`` is peak minus start."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


def _send_chunked(base: str, path: str, total: int) -> bytes:
    """POST ``total`` bytes with chunked encoding over a raw socket; returns the answer."""
    host, port = base.removeprefix("http://").split(":")
    chunk = b"a" * (256 * 1024)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
        sent = 0
        try:
            while sent < total:
                sock.sendall(frame)
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading and closed: what we want
        sock.settimeout(10)
        try:
            return sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return b""


@pytest.mark.parametrize("path", ["/slack/interactions", "/login"])
def test_a_200_mb_chunked_body_is_refused_without_buffering_it(app: FastAPI,
                                                               path: str) -> None:
    with serve(app) as base, PeakRss() as rss:
        answer = _send_chunked(base, path, 200 * MB)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert rss.growth < 40 * MB, f"memory grew by {rss.growth / MB:.0f} MB"


def test_a_declared_oversize_body_is_refused_before_it_is_read(client: TestClient) -> None:
    resp = client.post("/slack/interactions", content=b"x" * (64 * 1024 + 1),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 413
    assert client.post("/api/v1/proposals/1/approve", content=b"{}" + b" " * MB,
                       headers={"Content-Type": "application/json"}).status_code == 413


def test_login_throttle_counts_addresses_and_the_whole_server() -> None:
    now = [0.0]
    throttle = LoginThrottle(per_address=10, overall=100, clock=lambda: now[0])
    assert all(throttle.allow("10.0.0.1") for _ in range(10))
    assert not throttle.allow("10.0.0.1")
    assert sum(throttle.allow(f"10.1.{i // 250}.{i % 250}") for i in range(200)) == 90
    now[0] = 61.0
    assert throttle.allow("10.0.0.1")


def test_forwarded_for_counts_only_from_trusted_proxies() -> None:
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    assert client_address("203.0.113.9", "1.2.3.4", trusted) == "203.0.113.9"  # not a proxy
    assert client_address("127.0.0.1", "198.51.100.7", trusted) == "198.51.100.7"
    assert client_address("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.1.1.1",
                          trusted) == "198.51.100.7"  # the client can prepend what it likes
    assert client_address("127.0.0.1", "not-an-ip", trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "1.2.3.4", ()) == "127.0.0.1"


def test_spoofed_forwarded_for_does_not_escape_the_per_address_limit(
        client: TestClient, repo: Repository) -> None:
    token = csrf_of(client.get("/login").text)
    codes = [client.post("/login", headers={"X-Forwarded-For": f"192.0.2.{i}"},
                         data={"username": "x", "password": "y" * 8, "csrf_token": token}
                         ).status_code for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_at_most_two_password_hashes_run_at_once(app: FastAPI, repo: Repository,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    add_user(repo, "alice", "viewer")
    running, peak, lock = [0], [0], threading.Lock()
    real = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)

    class Slow:
        def hash(self, password: str) -> str:
            return real.hash(password)

        def verify(self, stored: str, password: str) -> bool:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.2)
            with lock:
                running[0] -= 1
            return real.verify(stored, password)

    slow = Slow()
    monkeypatch.setattr("healer.store.credentials._hasher", lambda: slow)
    with serve(app) as base:
        import httpx

        def attempt(i: int) -> int:
            with httpx.Client(base_url=base, timeout=30) as http:
                token = csrf_of(http.get("/login").text)
                return http.post("/login", data={"username": f"u{i}", "password": PASSWORD,
                                                 "csrf_token": token}).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(attempt, range(8)))
    assert codes == [401] * 8
    assert peak[0] == 2
