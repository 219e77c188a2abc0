"""``wire.settle`` on the installed uvicorn: once a viewer's handshake is done, the server's
connection lets go of the handshake and gets slim stand-ins for its receive queue and
writable event, and still does everything a held connection must: tell the app the viewer
left, and close with 1012 when the server stops."""

import asyncio
from typing import Any

import websockets
from starlette.types import Message, Receive, Scope, Send
from tests.unit.serving import serving

from chunkcast.api.wire import Gate, Inbox, direct_wire, settle


class App:
    """Accepts one WebSocket, settles its connection and reports what ``receive`` gives."""

    def __init__(self) -> None:
        self.settled: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.received: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        wire = direct_wire(send)
        assert wire is not None
        settle(wire)
        self.settled.set_result(wire)
        self.received.set_result(await receive())


async def test_a_settled_connection_lets_go_of_its_handshake_and_hears_a_leaving_viewer(
) -> None:
    app = App()
    async with serving(app) as port:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/v/240p") as client:
            wire: Any = await asyncio.wait_for(app.settled, 5)
            assert isinstance(wire.queue, Inbox) and isinstance(wire.writable, Gate)
            assert wire.request is None and wire.response is None
            assert wire.scope["headers"] == []
            assert wire.writable.is_set()
            await client.close()
        message = await asyncio.wait_for(app.received, 5)
    assert message["type"] == "websocket.disconnect"


async def test_a_settled_connection_is_closed_with_1012_when_the_server_stops() -> None:
    app = App()
    async with serving(app) as port:
        client = await websockets.connect(f"ws://127.0.0.1:{port}/ws/v/240p")
        await asyncio.wait_for(app.settled, 5)
    # serving() has told uvicorn to stop and waited for it: the viewer was told why.
    try:
        await asyncio.wait_for(client.recv(), 5)
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == 1012
    else:
        raise AssertionError("the server stopped without closing the viewer")
    assert (await asyncio.wait_for(app.received, 5))["type"] == "websocket.disconnect"


async def test_stand_ins_behave_like_the_queue_and_event_they_replace() -> None:
    inbox = Inbox([{"type": "a"}])
    assert inbox.qsize() == 1 and not inbox.empty()
    assert await inbox.get() == {"type": "a"}
    later = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait({"type": "b"})
    assert await asyncio.wait_for(later, 1) == {"type": "b"} and inbox.empty()
    gate = Gate(True)
    assert await gate.wait()
    gate.clear()
    waiting = asyncio.create_task(gate.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    gate.set()
    assert await asyncio.wait_for(waiting, 1) and gate.is_set()
