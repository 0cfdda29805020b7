"""The coalescing transport under ``arledger serve``: a response's head and body leave in
one write, nothing is reordered, held or lost."""

from __future__ import annotations

import asyncio

from services.api.transport import CoalescingTransport


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def test_head_and_body_leave_in_one_write_and_a_lone_write_at_the_end_of_the_step():
    async def scenario() -> list[list[bytes]]:
        raw = Recorder()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())
        seen = []
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        seen.append(list(raw.writes))  # held
        transport.write(b'{"ok":true}')
        seen.append(list(raw.writes))  # both, once
        transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # nothing follows it
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(list(raw.writes))
        assert transport.get_extra_info("peername") == ("127.0.0.1", 5)  # the rest is delegated
        return seen

    held, joined, flushed = asyncio.run(scenario())
    assert held == []
    assert joined == [b'HTTP/1.1 200 OK\r\n\r\n{"ok":true}']
    assert flushed == [*joined, b"HTTP/1.1 204 No Content\r\n\r\n"]


def test_close_sends_what_is_held_first():
    async def scenario() -> Recorder:
        raw = Recorder()
        transport = CoalescingTransport(raw, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
        transport.close()
        await asyncio.sleep(0)  # the scheduled flush finds nothing left and the socket closed
        return raw

    raw = asyncio.run(scenario())
    assert raw.writes == [b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n"] and raw.closed
