"""One suite, run on both outboxes (framed once into uvicorn's transport, and the portable
queue) behind a real uvicorn on 127.0.0.1: messages in order; a viewer joining while segments
keep coming gets init, its replay and the live ones without loss or duplicate; a viewer that
stops reading is closed with 4008 once past its bound, and nothing is written after the
close."""

import asyncio
import base64
import json
import os
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from tests.unit.feed_support import add_video, change_status, publish
from tests.unit.serving import serving
from websockets.frames import Close, Frame, Opcode

from chunkcast.adapters.db.repository import SqlVideoRepository
from chunkcast.api.delivery import SLOW_CLIENT, FramedOutbox, Outbox, Outboxes, QueuedOutbox
from chunkcast.api.hub import Hub
from chunkcast.api.wire import ViewerSockets
from chunkcast.domain.videos import VideoStatus
from chunkcast.services.live import LiveFeed
from chunkcast.services.playback import Signer

KINDS = {"framed": FramedOutbox, "queued": QueuedOutbox}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@dataclass
class Harness:
    """An app whose connections each get an outbox, handed to the test."""

    outboxes: Outboxes
    kind: str
    opened: asyncio.Queue[Outbox] = field(default_factory=asyncio.Queue)
    served: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        outbox = self.outboxes(websocket, send)
        assert isinstance(outbox, KINDS[self.kind])
        await self.opened.put(outbox)
        await outbox.serve()
        self.served.set()


class RawViewer:
    """A WebSocket client on a bare socket: it reads only when told to, with a small receive
    buffer, and sees every frame the server wrote, in order, up to the end of the stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 rest: bytes) -> None:
        self._reader, self._writer, self._data = reader, writer, rest

    @classmethod
    async def connect(cls, port: int, path: str = "/") -> "RawViewer":
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer, b"")

    async def frames_to_the_end(self) -> list[tuple[Opcode, bytes]]:
        """Read everything until the server closes the stream (answering its close)."""
        frames: list[tuple[Opcode, bytes]] = []
        answered = False
        while True:
            chunk = await asyncio.wait_for(self._reader.read(1 << 16), 30)
            if not chunk:
                return frames
            self._data += chunk
            while (frame := self._next_frame()) is not None:
                frames.append(frame)
                if frame[0] is Opcode.CLOSE and not answered:
                    answered = True
                    self._writer.write(Frame(Opcode.CLOSE, frame[1]).serialize(mask=True))

    def _next_frame(self) -> tuple[Opcode, bytes] | None:
        data = self._data
        if len(data) < 2:
            return None
        length, at = data[1] & 0x7F, 2
        if length >= 126:
            size = 2 if length == 126 else 8
            if len(data) < 2 + size:
                return None
            length, at = int.from_bytes(data[2:2 + size], "big"), 2 + size
        if len(data) < at + length:
            return None
        self._data = data[at + length:]
        return Opcode(data[0] & 0x0F), data[at:at + length]

    def close(self) -> None:
        self._writer.close()


async def test_messages_arrive_in_order(kind: str) -> None:
    harness = Harness(Outboxes(5000, portable=kind == "queued"), kind)
    async with serving(harness) as port, websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
        outbox = await harness.opened.get()
        await outbox.send("before")
        for n in range(2000):
            outbox.push(f"m{n}")
        assert await ws.recv() == "before"
        assert [await ws.recv() for _ in range(2000)] == [f"m{n}" for n in range(2000)]


async def test_a_viewer_that_stops_reading_is_closed_once_past_its_bound(kind: str) -> None:
    harness = Harness(Outboxes(8, portable=kind == "queued"), kind)
    message = "x" * 40_000
    async with serving(harness) as port:
        viewer = await RawViewer.connect(port)
        outbox = await harness.opened.get()
        pushed = 0
        while not outbox.closed:
            assert pushed < 5000, "never closed"
            outbox.push(f"{pushed:06d}{message}")
            pushed += 1
            await asyncio.sleep(0)  # let the queue's own task drain what it can
        for n in range(5):  # nothing is written after the close
            outbox.push(f"after {n}")
        frames = await viewer.frames_to_the_end()
        viewer.close()
        await harness.served.wait()
    data = [payload for opcode, payload in frames if opcode is Opcode.TEXT]
    assert [int(p[:6]) for p in data] == list(range(len(data)))  # a prefix, in order
    assert len(data) < pushed
    assert frames[-1][0] is Opcode.CLOSE
    assert Close.parse(frames[-1][1]).code == SLOW_CLIENT
    assert sum(opcode is Opcode.CLOSE for opcode, _ in frames) == 1


async def test_a_viewer_that_leaves_ends_its_outbox(kind: str) -> None:
    harness = Harness(Outboxes(8, portable=kind == "queued"), kind)
    async with serving(harness) as port:
        async with websockets.connect(f"ws://127.0.0.1:{port}/"):
            outbox = await harness.opened.get()
        await harness.served.wait()
        assert outbox.closed
        outbox.push("to nobody")  # a no-op


# -- the hub on both outboxes -------------------------------------------------------------


async def _watch(url: str) -> list[dict[str, Any]]:
    """Every message of a viewer until the stream ends."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(30), websockets.connect(url) as ws:
        async for raw in ws:
            messages.append(json.loads(raw))
            if messages[-1] == {"type": "status", "status": "ended"}:
                return messages
    raise AssertionError(f"the stream never ended for {url}: {messages[-3:]}")


async def test_viewers_joining_while_segments_come_get_each_one_once(
    kind: str, repo: SqlVideoRepository,
) -> None:
    """Viewers connect (with and without ``since``) while segments are published one after
    the other; the channel's window (4) is shorter than what most of them replay."""
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, window_segments=4)
    hub = Hub(feed, Signer("p" * 64, 3600), outboxes=Outboxes(64, portable=kind == "queued"),
              start_segments=3)

    async def nothing(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError(scope["path"])

    video_id = await add_video(repo)
    total = 120
    async with serving(ViewerSockets(nothing, hub.endpoint)) as port:
        base = f"ws://127.0.0.1:{port}/ws/{video_id}/240p"
        await publish(feed, repo, video_id, range(10))
        viewers: list[tuple[int | None, asyncio.Task[list[dict[str, Any]]]]] = []
        for seq in range(10, total):
            if seq % 10 == 0:  # a viewer from the start, one from a while ago, one live
                for since in (-1, seq - 9, None):
                    url = base if since is None else f"{base}?since={since}"
                    viewers.append((since, asyncio.create_task(_watch(url))))
            await publish(feed, repo, video_id, [seq])
            await asyncio.sleep(0)  # interleave with the viewers' handshakes and replays
        await change_status(feed, repo, video_id, VideoStatus.ENDED)
        results = [(since, await task) for since, task in viewers]
    for since, messages in results:
        assert messages[0]["type"] == "init" and messages[0]["codecs"]
        seqs = [m["seq"] for m in messages if m["type"] == "segment"]
        if since is not None:  # everything after it
            assert seqs == list(range(since + 1, total)), since
        else:  # the live edge, then contiguous
            assert seqs == list(range(seqs[0], total))
        assert messages[-1] == {"type": "status", "status": "ended"}


async def test_a_server_without_the_fast_path_gets_the_queue(repo: SqlVideoRepository) -> None:
    """The hub on a bare ASGI connection (no uvicorn behind its ``send``): the portable
    outbox serves the viewer."""
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, window_segments=4)
    hub = Hub(feed, Signer("p" * 64, 3600), outboxes=Outboxes(64), start_segments=3)
    video_id = await add_video(repo)
    await publish(feed, repo, video_id, range(10))
    sent: list[Message] = []
    leave = asyncio.Event()
    connected = False

    async def receive() -> Message:
        nonlocal connected
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        await leave.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)
        if message.get("text", "").startswith('{"type":"segment","seq":10,'):
            leave.set()

    scope = {"type": "websocket", "path": f"/ws/{video_id}/240p", "query_string": b"since=2",
             "headers": [], "path_params": {"video_id": video_id, "rendition": "240p"}}
    viewer = asyncio.create_task(hub.endpoint(WebSocket(scope, receive, send), send))
    await publish(feed, repo, video_id, [10])
    await asyncio.wait_for(viewer, 10)
    texts = [json.loads(m["text"]) for m in sent if m["type"] == "websocket.send"]
    assert texts[0]["type"] == "init"
    assert [m["seq"] for m in texts if m["type"] == "segment"] == list(range(3, 11))
