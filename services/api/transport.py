"""uvicorn's httptools protocol, sending each response's head and body in one write.

uvicorn writes the status line and headers when the app sends ``http.response.start``
and the body when it sends ``http.response.body``: two ``send()`` system calls and two
TCP segments per response (the socket has ``TCP_NODELAY``), each of which also wakes
the client. For the API's small JSON answers that second write was about a sixth of
the server's CPU per command. :class:`CoalescingHttpToolsProtocol` gives uvicorn a
transport that holds a write until the next one (the body) and sends both together;
a write nothing follows (streamed or empty responses) goes out at the end of the
event-loop step, and before the connection closes. Selected by ``arledger serve``
through uvicorn's ``http`` option.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Wraps an asyncio transport: a write waits for the next one, or for the end of
    the current loop step, whichever comes first; everything else is delegated."""

    __slots__ = ("_transport", "_loop", "_held", "_scheduled")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._scheduled = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            if not self._scheduled:
                self._scheduled = True
                self._loop.call_soon(self._flush)
            return
        self._held = None
        self._transport.write(held + data)

    def _flush(self) -> None:
        self._scheduled = False
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
