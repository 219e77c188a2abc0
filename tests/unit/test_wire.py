"""The fan-out's fast path: frames built once, written straight to the socket, a viewer
whose socket stops draining is dropped; and the real uvicorn offers it."""

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import websockets
from starlette.types import Receive, Scope, Send
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from chunkcast.api.hub import (
    SLOW_CLIENT,
    WRITE_BUFFER_PER_MESSAGE,
    SignedViewer,
    TokenFill,
    Viewer,
)
from chunkcast.api.wire import Frames, direct_wire
from chunkcast.services.live import SIGNATURE_SLOT
from chunkcast.testing import free_port


@dataclass
class StuckTransport:
    """A socket whose peer reads nothing: everything written stays buffered."""

    written: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written))

    def is_closing(self) -> bool:
        return False


@dataclass
class Conn:
    state: State = State.OPEN
    extensions: list[Any] = field(default_factory=list)


@dataclass
class FakeWire:
    transport: StuckTransport = field(default_factory=StuckTransport)
    conn: Conn = field(default_factory=Conn)
    close_sent: bool = False
    disconnected: bool = False


class ClosingSocket:
    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def close(self, code: int, reason: str = "") -> None:
        self.closed_with = code


def test_a_message_is_framed_once_for_every_viewer() -> None:
    frames = Frames()
    text = '{"type":"segment","seq":1}'
    first = frames.of(text)
    assert frames.of(text) is first
    assert first == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def _frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


async def test_viewers_of_a_private_video_get_their_own_token_and_share_frames() -> None:
    """Each viewer's URLs carry its own token; viewers with the same token get the very
    same frame (framed once), and a public viewer the shared message untouched."""
    frames, tokens = Frames(), TokenFill()
    a1, a2, b, public = (FakeWire() for _ in range(4))

    def signed(wire: FakeWire, query: str) -> Viewer:
        return SignedViewer(ClosingSocket(), 8, query, tokens, wire, frames)  # type: ignore[arg-type]

    viewers = [signed(a1, "e=100&st=A"), signed(a2, "e=100&st=A"), signed(b, "e=200&st=B"),
               Viewer(ClosingSocket(), 8, public, frames)]  # type: ignore[arg-type]
    message = f'{{"type":"segment","url":"http://cdn/private/k?{SIGNATURE_SLOT}"}}'
    for viewer in viewers:
        viewer.deliver(message)
    assert a1.transport.written[0] is a2.transport.written[0]
    assert a1.transport.written == [_frame('{"type":"segment","url":"http://cdn/private/k?'
                                           'e=100&st=A"}')]
    assert b.transport.written == [_frame('{"type":"segment","url":"http://cdn/private/k?'
                                          'e=200&st=B"}')]
    assert public.transport.written == [_frame(message)]
    status = '{"type":"status","status":"ended"}'  # nothing to sign: shared as it is
    assert viewers[0].own(status) is status


async def test_a_viewer_whose_socket_stops_draining_is_closed_as_too_slow() -> None:
    wire, socket = FakeWire(), ClosingSocket()
    viewer = Viewer(socket, limit=2, wire=wire)  # type: ignore[arg-type]
    message = "x" * 300
    for _ in range(20):
        viewer.deliver(message)
    await asyncio.sleep(0)
    assert viewer.closed and socket.closed_with == SLOW_CLIENT
    assert wire.transport.get_write_buffer_size() <= 2 * WRITE_BUFFER_PER_MESSAGE + 310


async def test_nothing_is_written_to_a_closed_connection() -> None:
    wire = FakeWire(conn=Conn(state=State.CLOSING))
    viewer = Viewer(ClosingSocket(), limit=2, wire=wire)  # type: ignore[arg-type]
    viewer.deliver("hello")
    assert viewer.closed and wire.transport.written == []


async def test_uvicorn_offers_the_fast_path_and_its_frames_arrive() -> None:
    offered: list[bool] = []
    frames = Frames()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        wire = direct_wire(send)
        offered.append(wire is not None)
        if wire is not None:
            wire.transport.write(frames.of("framed once"))
        while (await receive())["type"] != "websocket.disconnect":
            pass

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           ws_per_message_deflate=False, lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
            assert await asyncio.wait_for(ws.recv(), 5) == "framed once"
        assert offered == [True]
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
