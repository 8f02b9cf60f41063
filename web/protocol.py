"""uvicorn's httptools protocol, with each response's head written together with its body.

uvicorn writes a response's head (the status line and headers) when the app starts the
response, and its body when the app sends it: two writes, so two TCP segments, and on
the client two wake-ups, for every small response. For a control plane most responses
are small (a lease answer, a heartbeat's, an event) and many (hundreds a second at a
fleet's storm). On a loaded host the second wake-up is not free for the server either:
the woken reader may take the core while the replica's event loop, which holds the
interpreter, waits its turn.

``OneWriteHttpToolsProtocol`` gives uvicorn a transport that keeps what is written during
one turn of the event loop and writes it, as one, when the turn ends. uvicorn's ``send``
does not yield between the head and the body, so a response that fits in one send goes
out in one write. aiohttp does the same for small responses; nginx gathers a response's
head and body with ``writev``. A long or streamed body still goes out as the app sends
it, each chunk a turn later at most.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class TurnWriter(asyncio.Transport):
    """A transport that holds the writes of one event-loop turn, then writes them as one.

    Everything else goes to the wrapped transport. Closing writes what is held first;
    aborting drops it, as the wrapped transport drops its own buffer."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(bytes(data))  # a bytearray may be reused by its writer

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Write what is held now (the end of the turn, a close, an EOF)."""
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def abort(self) -> None:
        self._held.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``TurnWriter``: a small response in one write."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(TurnWriter(transport, self.loop))
