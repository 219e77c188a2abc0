"""The fast path of the fan-out: frames built once and shared by viewers (those of a private
video holding the same token included); the installed uvicorn offers its connection to the
framed outbox, except with compression, which gets the portable queue."""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from tests.unit.serving import serving
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from chunkcast.api.delivery import FramedOutbox, Frames, Outbox, Outboxes, QueuedOutbox
from chunkcast.api.hub import SignedViewer, TokenFill, Viewer
from chunkcast.services.live_messages import SIGNATURE_SLOT


@dataclass
class Transport:
    written: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


@dataclass
class Conn:
    state: State = State.OPEN
    extensions: list[Any] = field(default_factory=list)


@dataclass
class FakeWire:
    transport: Transport = field(default_factory=Transport)
    conn: Conn = field(default_factory=Conn)
    close_sent: bool = False
    disconnected: bool = False


def _frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def test_a_message_is_framed_once_for_every_viewer() -> None:
    frames = Frames()
    text = '{"type":"segment","seq":1}'
    first = frames.of(text)
    assert frames.of(text) is first
    assert first == _frame(text)


async def test_viewers_of_a_private_video_get_their_own_token_and_share_frames() -> None:
    """Each viewer's URLs carry its own token; viewers with the same token get the very
    same frame (framed once), and a public viewer the shared message untouched."""
    frames, tokens = Frames(), TokenFill()
    a1, a2, b, public = (FakeWire() for _ in range(4))

    def outbox(wire: FakeWire) -> FramedOutbox:
        return FramedOutbox(None, wire, 8, frames)  # type: ignore[arg-type]

    viewers = [SignedViewer(outbox(a1), "e=100&st=A", tokens),
               SignedViewer(outbox(a2), "e=100&st=A", tokens),
               SignedViewer(outbox(b), "e=200&st=B", tokens), Viewer(outbox(public))]
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


async def test_nothing_is_written_to_a_connection_the_server_is_closing() -> None:
    wire = FakeWire(conn=Conn(state=State.CLOSING))
    outbox = FramedOutbox(None, wire, 8, Frames())  # type: ignore[arg-type]
    outbox.push("hello")
    assert outbox.closed and wire.transport.written == []


@pytest.mark.parametrize(("deflate", "expected"), [(False, FramedOutbox),
                                                    (True, QueuedOutbox)])
async def test_uvicorn_s_connection_is_framed_into_unless_compressed(
    deflate: bool, expected: type,
) -> None:
    chosen: asyncio.Queue[Outbox] = asyncio.Queue()
    outboxes = Outboxes(8)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        outbox = outboxes(websocket, send)
        await chosen.put(outbox)
        outbox.push("pushed")
        await outbox.serve()

    async with serving(app, deflate=deflate) as port, \
            websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
        assert await asyncio.wait_for(ws.recv(), 5) == "pushed"
        assert isinstance(await chosen.get(), expected)
