"""The test suite's local OpenAI-compatible server (tests/llm_server.py), run for a scenario."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

from chaos.faults import Workload
from chaos.sandbox import Sandbox, free_port


def llm_server_script() -> Path:
    """Where the repository keeps the test LLM server: beside this package in a checkout,
    else in the checkout the suite runs from (an installed copy carries no tests)."""
    beside = Path(__file__).resolve().parents[1] / "tests" / "llm_server.py"
    here = Path.cwd() / "tests" / "llm_server.py"
    return beside if beside.is_file() or not here.is_file() else here


def start_llm_server(sb: Sandbox, mode: str, timeout: float = 20.0) -> str:
    """Start the server in mode on a free port; return its base URL once it listens."""
    port = free_port()
    argv = [sys.executable, str(llm_server_script()), "--port", str(port), "--mode", mode]
    w = Workload(
        f"llm-server-{mode}", argv, out=sb.logs / "llm-server.log", log=sb.logs / "watchdog.log"
    )
    sb.add(w)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not w.is_active():
            raise RuntimeError(f"test LLM server exited; see {sb.logs / 'llm-server.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"test LLM server not listening on {port} after {timeout:.0f}s")
