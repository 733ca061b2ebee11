"""uvicorn's httptools protocol with each response's writes coalesced into one ``send()``.

uvicorn writes a response's head as soon as the app sends ``http.response.start`` and its body on
``http.response.body``: two syscalls, two TCP segments (uvloop sets TCP_NODELAY) and two wake-ups of
the client for every small JSON answer, such as the status polls. Here the writes of one event-loop
turn are held and leave together: when the response completes, when the loop turns, or once 64 KiB
are held (a streamed log still streams).

A protocol made with ``answering(responder)`` also answers some requests itself, before any ASGI
machinery (scope, cycle, task, middleware): the responder sees a plain GET's path and headers and
returns the whole answer, or None to let the app answer. Only a keep-alive HTTP/1.1 GET without a
body, query or percent-escape, on a connection with no response in flight, is offered; the bytes
written are those uvicorn writes for the same ASGI messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_HELD = 64 * 1024

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]
"""status, headers (with content-length) and body: the ASGI app's two messages in one."""
Responder = Callable[[str, Headers], Answer | None]
"""(path, request headers) of a plain GET -> its answer, or None for the app to answer."""


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

    def write_now(self, data: bytes) -> None:
        """Write what is held and ``data`` at once (a complete response)."""
        self.flush()
        if not self._transport.is_closing():
            self._transport.write(data)

    def is_closing(self) -> bool:  # asked on every response: spare __getattr__'s failed lookup
        return self._transport.is_closing()

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

    responder: ClassVar[Responder | None] = None

    @classmethod
    def answering(cls, responder: Responder) -> type[CoalescingHttpToolsProtocol]:
        """This protocol, with ``responder`` offered the plain GETs first (see the module's docstring)."""
        return type("AnsweringHttpToolsProtocol", (cls,), {"responder": staticmethod(responder)})

    def on_headers_complete(self) -> None:
        answer = self._answer_now() if type(self).responder is not None else None
        if answer is None:
            super().on_headers_complete()
            return
        status, headers, body = answer
        default = self.server_state.default_headers  # a new list each second (the date)
        if default is not self._default_source:
            self._default_source = default
            self._default_bytes = b"".join(name.lower() + b": " + value + b"\r\n" for name, value in default)
        head = [STATUS_LINE[status], self._default_bytes]
        for name, value in headers:
            head += (name.lower(), b": ", value, b"\r\n")
        head += (b"\r\n", body)
        self.transport.write_now(b"".join(head))  # type: ignore[attr-defined]
        self.cycle = _ANSWERED  # type: ignore[assignment]
        self.on_response_complete()

    _default_source: Headers | None = None
    _default_bytes = b""

    def _answer_now(self) -> Answer | None:
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.flow.write_paused or self.expect_100_continue:
            return None
        parser = self.parser
        url = self.url
        if (
            parser.get_method() != b"GET"
            or not url.startswith(b"/")
            or b"?" in url
            or b"%" in url
            or b"#" in url
            or not url.isascii()
            or parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or self.root_path
            or self.access_log
            or self.limit_concurrency is not None
        ):
            return None
        for name, value in self.headers:
            if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
                return None
        responder = type(self).responder
        return responder(url.decode("ascii"), self.headers) if responder is not None else None


class _NoEvent:
    def set(self) -> None:
        """uvicorn sets the cycle's event when the connection is lost: nothing waits here."""


class _Answered:
    """What ``cycle`` holds after a request the protocol answered itself: a complete response."""

    response_complete = True
    disconnected = False
    keep_alive = True
    message_event = _NoEvent()


_ANSWERED = _Answered()
