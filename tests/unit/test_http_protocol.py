"""The coalescing httptools protocol, driven through a recording transport: a small response leaves in
one write, a streamed one still streams, a large one is not held back, and nothing is lost on close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.server import ServerState

from overlord.http_protocol import MAX_HELD, CoalescingHttpToolsProtocol

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8090), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def small(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def big(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):  # never yields to the loop: only the size cap lets the writes out early
            yield b"x" * (MAX_HELD // 2)

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def stream(request: Request) -> Response:
    gate: asyncio.Event = request.app.state.gate

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        await gate.wait()
        yield b"second"

    return StreamingResponse(chunks(), media_type="text/plain")


APP = Starlette(routes=[Route("/small", small), Route("/big", big), Route("/stream", stream)])


def _protocol(
    protocol: type[CoalescingHttpToolsProtocol] = CoalescingHttpToolsProtocol,
) -> tuple[CoalescingHttpToolsProtocol, RecordingTransport]:
    config = uvicorn.Config(APP, http=protocol, ws="none", lifespan="off", log_level="warning", log_config=None)
    config.load()
    proto = protocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    proto.connection_made(transport)
    return proto, transport


async def _until(predicate: Any) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_a_small_response_leaves_in_one_write_and_keep_alive_goes_on() -> None:
    proto, transport = _protocol()
    proto.data_received(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
    await _until(lambda: transport.writes)
    assert len(transport.writes) == 1
    head, body = transport.writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b'{"ok":true}'
    proto.data_received(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
    await _until(lambda: len(transport.writes) == 2)
    await asyncio.sleep(0)
    assert len(transport.writes) == 2 and not transport.closed


async def test_a_response_to_a_closing_request_is_written_before_the_close() -> None:
    proto, transport = _protocol()
    proto.data_received(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    await _until(lambda: transport.closed)
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b'{"ok":true}')


async def test_a_streamed_response_sends_what_it_has_without_waiting_for_the_rest() -> None:
    APP.state.gate = asyncio.Event()
    proto, transport = _protocol()
    proto.data_received(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    await _until(lambda: b"first" in b"".join(transport.writes))
    assert b"second" not in b"".join(transport.writes)
    APP.state.gate.set()
    await _until(lambda: b"".join(transport.writes).endswith(b"0\r\n\r\n"))
    assert b"second" in b"".join(transport.writes)


async def test_no_more_than_the_cap_is_held_when_a_producer_never_yields() -> None:
    proto, transport = _protocol()
    proto.data_received(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    await _until(lambda: b"".join(transport.writes).endswith(b"0\r\n\r\n"))
    assert len(transport.writes) >= 5
    assert max(map(len, transport.writes)) < MAX_HELD + MAX_HELD // 2 + 100
    assert b"".join(transport.writes).count(b"x") == 5 * MAX_HELD


async def test_nothing_is_written_after_the_peer_went_away() -> None:
    proto, transport = _protocol()
    APP.state.gate = asyncio.Event()
    proto.data_received(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    await _until(lambda: transport.writes)
    transport.closed = True
    proto.connection_lost(None)
    count = len(transport.writes)
    APP.state.gate.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(transport.writes) == count


# -- requests the protocol answers itself (``answering``) ------------------------------------------

FAST_BODY = b'{"fast":true}'
FAST_HEADERS = [(b"content-length", b"%d" % len(FAST_BODY)), (b"content-type", b"application/json")]


class Fast:
    """What the responder answers, as the ASGI app sends it (an instance: a plain ASGI route)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": FAST_HEADERS})
        await send({"type": "http.response.body", "body": FAST_BODY})


APP.router.routes.append(Route("/fast", Fast()))
OFFERED: list[tuple[str, list[tuple[bytes, bytes]]]] = []


def responder(path: str, headers: list[tuple[bytes, bytes]]) -> Any:
    OFFERED.append((path, headers))
    return (200, FAST_HEADERS, FAST_BODY) if path == "/fast" else None


def _answering() -> tuple[CoalescingHttpToolsProtocol, RecordingTransport, ServerState]:
    OFFERED.clear()
    proto, transport = _protocol(CoalescingHttpToolsProtocol.answering(responder))
    proto.access_log = False  # as the service runs (access_log=False); pytest's handlers would make it True
    proto.server_state.default_headers = [(b"date", b"Tue, 01 Dec 2026 10:00:00 GMT"), (b"server", b"uvicorn")]
    return proto, transport, proto.server_state


async def test_an_answered_request_gets_the_bytes_the_app_would_have_sent() -> None:
    request = b"GET /fast HTTP/1.1\r\nHost: t\r\nX-Trace: 1\r\n\r\n"
    via_app, app_transport = _protocol()
    via_app.server_state.default_headers = [(b"date", b"Tue, 01 Dec 2026 10:00:00 GMT"), (b"server", b"uvicorn")]
    via_app.data_received(request)
    await _until(lambda: app_transport.writes)
    proto, transport, state = _answering()
    proto.data_received(request)
    assert transport.writes == app_transport.writes  # at once: no task, no loop turn
    assert OFFERED == [("/fast", [(b"host", b"t"), (b"x-trace", b"1")])]
    assert state.total_requests == 1 and not state.tasks and proto.timeout_keep_alive_task is not None
    proto.data_received(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")  # declined: the app answers, same connection
    await _until(lambda: len(transport.writes) == 2)
    proto.data_received(request)
    assert len(transport.writes) == 3 and transport.writes[2] == transport.writes[0]
    assert transport.writes[1].endswith(b'{"ok":true}') and not transport.closed


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /fast HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        b"GET /fast?x=1 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /f%61st HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /fast HTTP/1.0\r\nHost: t\r\n\r\n",
        b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /fast HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /fast HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
    ],
    ids=["post", "query", "escape", "http10", "close", "body", "expect"],
)
async def test_what_is_not_a_plain_keep_alive_get_goes_to_the_app(request_bytes: bytes) -> None:
    proto, transport, _ = _answering()
    proto.data_received(request_bytes)
    assert OFFERED == [] and transport.writes == []
    await _until(lambda: transport.writes)
    assert FAST_BODY in transport.writes[0] or b"405" in transport.writes[0].split(b"\r\n")[0]


async def test_a_pipelined_request_is_answered_after_the_one_before_it() -> None:
    APP.state.gate = asyncio.Event()
    proto, transport, _ = _answering()
    proto.data_received(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
    await _until(lambda: transport.writes)
    assert [path for path, _ in OFFERED] == ["/stream"] and FAST_BODY not in b"".join(transport.writes)
    APP.state.gate.set()
    await _until(lambda: b"".join(transport.writes).endswith(FAST_BODY))
    sent = b"".join(transport.writes)
    assert sent.index(b"second") < sent.index(FAST_BODY)
