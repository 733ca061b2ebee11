"""uvicorn's httptools protocol with each response's writes coalesced into one ``send()``.

uvicorn writes a response's head as soon as the app sends ``http.response.start`` and its body on
``http.response.body``: two syscalls, two TCP segments (uvloop sets TCP_NODELAY) and two wake-ups of
the client for every small JSON answer, such as the status polls. Here the writes of one event-loop
turn are held and leave together: when the response completes, when the loop turns, or once 64 KiB
are held (a streamed log still streams).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HELD = 64 * 1024


class _CoalescingTransport:
    """A transport that holds writes until ``flush``; everything else goes to the real transport."""

    __slots__ = ("_held", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)
        self._size += len(data)
        if self._size >= MAX_HELD:
            self.flush()

    def flush(self) -> None:
        held = self._held
        if held:
            data = held[0] if len(held) == 1 else b"".join(held)
            held.clear()
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held.clear()
        self._size = 0
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """Pass as uvicorn's ``http=``; websocket upgrades are not served (``ws="none"``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()
