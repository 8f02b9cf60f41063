"""A response's head and body leave the control plane in one write (web.protocol), and
everything else HTTP does over that transport still works: keep-alive, streamed and large
bodies, ``Connection: close``, a client that goes away."""

from __future__ import annotations

import asyncio
import http.client
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from tests.web.helpers import serve
from web.protocol import OneWriteHttpToolsProtocol

ANSWER = b'{"wait": {"reason": "hold", "retry_after": 12.5}}'
REQUEST = (b"POST /lease HTTP/1.1\r\nHost: cp\r\nContent-Type: application/json\r\n"
           b"Content-Length: 2\r\n\r\n{}")


async def small(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A lease-sized answer, sent as every ASGI app sends one: head, then body."""
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(ANSWER)).encode())]})
    await send({"type": "http.response.body", "body": ANSWER})


class Recorder(asyncio.Transport):
    """A socket's stand-in: what was written, each write apart, and whether it closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.log: list[str] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))
        self.log.append("write")

    def close(self) -> None:
        self.closed = True
        self.log.append("close")

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8765)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def exchange(protocol_class: type[HttpToolsProtocol], request: bytes) -> Recorder:
    """``request`` through ``protocol_class`` on a Recorder; what it wrote once answered."""
    config = uvicorn.Config(small, http=protocol_class, lifespan="off", log_level="warning")
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={},
                              _loop=asyncio.get_running_loop())
    transport = Recorder()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(100):
        await asyncio.sleep(0)
        if protocol.cycle is not None and protocol.cycle.response_complete \
                and transport.writes:
            break
    await asyncio.sleep(0)  # the turn that writes what the response's turn held
    return transport


def test_a_response_goes_out_in_one_write() -> None:
    one = asyncio.run(exchange(OneWriteHttpToolsProtocol, REQUEST))
    assert len(one.writes) == 1
    head, _, body = one.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and body == ANSWER
    # uvicorn's own protocol writes the head and the body apart: what this module is for
    apart = asyncio.run(exchange(HttpToolsProtocol, REQUEST))
    assert len(apart.writes) == 2 and b"".join(apart.writes) == one.writes[0]


def test_connection_close_writes_the_response_before_closing() -> None:
    closing = REQUEST.replace(b"Host: cp\r\n", b"Host: cp\r\nConnection: close\r\n")
    transport = asyncio.run(exchange(OneWriteHttpToolsProtocol, closing))
    assert transport.log == ["write", "close"]
    assert transport.writes[0].endswith(ANSWER)


def streamed_app() -> FastAPI:
    app = FastAPI()

    @app.get("/small")
    def small_answer() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/large")
    def large() -> PlainTextResponse:
        return PlainTextResponse("x" * 3_000_000)

    @app.get("/stream")
    def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(50):
                await asyncio.sleep(0)
                yield f"{i},".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


def test_keep_alive_streams_large_bodies_and_a_vanished_client() -> None:
    with serve(streamed_app()) as url:
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(20):  # one connection, kept alive throughout
            conn.request("GET", "/small")
            reply = conn.getresponse()
            assert (reply.status, reply.read()) == (200, b"ok")
        conn.request("GET", "/large")
        assert conn.getresponse().read() == b"x" * 3_000_000  # past the write buffer's limits
        conn.request("GET", "/stream")
        assert conn.getresponse().read() == "".join(f"{i}," for i in range(50)).encode()
        # a client that asks for a large body and leaves at once: the server goes on
        with socket.create_connection(("127.0.0.1", port), timeout=10) as gone:
            gone.sendall(b"GET /large HTTP/1.1\r\nHost: cp\r\n\r\n")
        conn.request("GET", "/small")
        assert conn.getresponse().read() == b"ok"
        conn.close()


@pytest.mark.parametrize("path", ["/small", "/large"])
def test_connection_close_over_a_socket(path: str) -> None:
    with serve(streamed_app()) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: cp\r\nConnection: close\r\n\r\n".encode())
            received = b""
            while chunk := s.recv(65536):  # the server closes after the whole response
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert body == (b"ok" if path == "/small" else b"x" * 3_000_000)
