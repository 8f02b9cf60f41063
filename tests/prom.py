"""Throwaway Prometheus and Alertmanager servers, and a webhook receiver, for tests.

Both servers come from Debian's packages (``prometheus``, ``prometheus-alertmanager``),
listen on a free loopback port, keep their data under a temp dir, and die with the test
process. Configs start from the shipped files in ``deploy/prometheus/`` (``shipped``), so
an integration test exercises what operators install, with only addresses and intervals
changed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.tools import dies_with_parent

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
READY_TIMEOUT_S = 30.0
START_ATTEMPTS = 3  # a free port can be taken between choosing it and the bind


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipped(name: str) -> dict[str, Any]:
    """A shipped YAML file of deploy/prometheus/, parsed."""
    loaded = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


@dataclass
class Service:
    """One running server: ``url`` is its base URL, ``address`` its host:port."""

    name: str
    address: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


ServiceFactory = Callable[[dict[str, Any]], Service]  # the prometheus/alertmanager fixtures


def _start(name: str, argv: Callable[[str], list[str]], workdir: Path) -> Service:
    """Start ``argv(address)`` and wait for ``/-/ready``; retry on a lost port race."""
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, START_ATTEMPTS + 1):
        address = f"127.0.0.1:{free_port()}"
        log = workdir / f"{name}-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(dies_with_parent(argv(address)), cwd=workdir,
                                    stdout=out, stderr=subprocess.STDOUT)
        service = Service(name, address, proc, log)
        if _wait_ready(service):
            return service
        service.stop()
        if "address already in use" not in service.log_tail(50):
            break
    raise RuntimeError(f"{name} did not start:\n{service.log_tail()}")


def _wait_ready(service: Service) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and service.proc.poll() is None:
        try:
            if httpx.get(f"{service.url}/-/ready", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


def _start_with(binary: Path, config: dict[str, Any], workdir: Path,
                flags: Callable[[Path], list[str]]) -> Service:
    """``binary`` with ``config`` written into ``workdir`` and its data below it;
    ``flags(data_dir)`` are the server's own options."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = binary.name
    path = workdir / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    return _start(name, lambda address: [str(binary), f"--config.file={path}",
                                         f"--web.listen-address={address}",
                                         "--log.level=warn", *flags(workdir / "data")],
                  workdir)


def start_prometheus(binary: Path, config: dict[str, Any], workdir: Path) -> Service:
    """Prometheus with ``config`` (relative rule_files resolve against ``workdir``)."""
    return _start_with(binary, config, workdir, lambda data: [f"--storage.tsdb.path={data}"])


def start_alertmanager(binary: Path, config: dict[str, Any], workdir: Path) -> Service:
    """Alertmanager with ``config``, clustering off (it would bind 0.0.0.0:9094)."""
    return _start_with(binary, config, workdir,
                       lambda data: [f"--storage.path={data}", "--cluster.listen-address="])


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class WebhookReceiver:
    """A real HTTP server on a loopback port that records every JSON POST."""

    server: ThreadingHTTPServer
    deliveries: list[Delivery] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls) -> WebhookReceiver:
        receiver: WebhookReceiver

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                self.send_response(200)
                self.end_headers()
                receiver.record(Delivery(self.path, dict(self.headers.items()), body))

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output clean

        receiver = cls(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
        return receiver

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, delivery: Delivery) -> None:
        with self._arrived:
            self.deliveries.append(delivery)
            self._arrived.notify_all()

    def wait_for(self, match: Callable[[Delivery], bool], timeout: float) -> Delivery:
        """The first delivery ``match`` accepts, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = next((d for d in self.deliveries if match(d)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no matching delivery in {timeout} s: "
                                         f"{self.deliveries}")
                self._arrived.wait(left)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
