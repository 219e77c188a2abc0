"""Child processes of ``bench/fanout.py``: the WebSocket load and the raw baseline server.

    python bench/fanout_load.py viewers URL --viewers N [--concurrency C] [--source ADDR,...]
    python bench/fanout_load.py raw-server --port P

``viewers`` opens N ``websockets`` client connections (no compression, no client pings) in
batches of at most C concurrent handshakes, each from one of the ``--source`` loopback
addresses in turn (127.0.0.2, 127.0.0.3, …: one source address has ~28k ephemeral ports
towards the server's one port; ``bench/fanout.py`` gives each load process its own), then
follows line commands on stdin and answers with one JSON line each on stdout:

- at start, unprompted: ``{"type": "connected", "viewers", "failed", "seconds", ...}``
- ``{"cmd": "expect", "seq": S}`` -> ``{"type": "armed", "seq": S, "open": n}``: from now on
  the first ``segment`` message with seq ``S`` on each connection is timed
- ``{"cmd": "wait", "timeout": T}`` -> ``{"type": "event", "seq", "expected", "received",
  "delays_ms": [...], "open"}`` once every open connection has it or after T seconds
- ``{"cmd": "quit"}`` -> exits at once (the kernel closes the sockets)

Receive times are taken when the frame is parsed in the connection's ``data_received``
callback, not after a task wake-up per viewer: the client side should add as little as
possible to what is measured. ``--client frames`` (the default) is a bare asyncio protocol
that does the opening handshake itself and parses the server's (unmasked, unfragmented)
frames as they come, answering pings and the close (~4 us a message); ``--client
websockets`` is a ``websockets`` ``ClientConnection`` subclass (~15 us a message, which on a
small machine makes the load, not the server, what the time until the last viewer measures).
Delivery time = receive wall clock - the send wall clock carried by the message (``sent_at``
seconds since the epoch, or chunkcast's ``ready_at``, ISO 8601 with milliseconds).

``raw-server`` is the baseline: a bare ``websockets`` server (compression off) that keeps
every connection in a set and, on ``GET /broadcast?seq=S``, sends one segment-like JSON
message carrying ``sent_at`` to all of them with ``websockets.broadcast``. ``GET /healthz``
answers 200 once it listens. It exits on ``{"cmd": "quit"}`` or at the end of stdin.
"""

import argparse
import asyncio
import base64
import contextlib
import gc
import itertools
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Coroutine
from datetime import datetime
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State


def raise_nofile_limit() -> int:
    """Soft open-files limit up to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run(main: Coroutine[Any, Any, None], loop: str) -> None:
    """Run ``main`` on uvloop (what ``chunkcast up`` uses through uvicorn) or asyncio."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            loop = "asyncio"
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- viewers -------------------------------------------------------------------------------


class Recorder:
    """Times the expected segment message on every connection."""

    def __init__(self) -> None:
        self.expect: int | None = None
        self.delays: list[float] = []
        self.target = 0
        self.complete = asyncio.Event()
        self.greeted = 0  # connections that received their first text message
        self.viewers_count: int | None = None  # last chunkcast "viewers" message seen
        self._sent: dict[str, float] = {}  # ready_at string -> epoch seconds

    def arm(self, seq: int, target: int) -> None:
        self.expect = seq
        self.delays = []
        self.target = target
        self.complete.clear()

    def on_text(self, conn: "Viewer", data: bytes, now: float) -> None:
        if not conn.greeted:
            conn.greeted = True
            self.greeted += 1
        if b'"segment"' not in data:
            if b'"viewers"' in data:
                self.viewers_count = json.loads(data).get("count")
            return
        if self.expect is None or conn.last_seq >= self.expect:
            return
        message = json.loads(data)
        seq = message.get("seq")
        if message.get("type") != "segment" or not isinstance(seq, int) or seq < self.expect:
            return
        conn.last_seq = seq
        self.delays.append(now - self._sent_at(message))
        if len(self.delays) >= self.target:
            self.complete.set()

    def _sent_at(self, message: dict[str, Any]) -> float:
        sent = message.get("sent_at")
        if isinstance(sent, int | float):
            return float(sent)
        ready = str(message["ready_at"])
        if ready not in self._sent:
            self._sent[ready] = datetime.fromisoformat(ready.replace("Z", "+00:00")).timestamp()
        return self._sent[ready]


RECORDER: Recorder | None = None


class Viewer(Protocol):
    """A connection as the recorder sees it."""

    greeted: bool
    last_seq: int

    def is_open(self) -> bool: ...


class FramesViewer(asyncio.Protocol):
    """A viewer on a bare connection (``--client frames``): sends the opening handshake,
    checks for ``101``, then parses the server's frames in ``data_received``: text ones go to
    the recorder, pings are answered, a close is answered and the connection closed."""

    __slots__ = ("_buffer", "_opened", "_request", "_state", "_transport", "greeted",
                 "last_seq")

    def __init__(self, request: bytes, opened: asyncio.Future[bool]) -> None:
        self._request = request
        self._opened = opened
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._state = State.CONNECTING
        self.greeted = False
        self.last_seq = -1

    def is_open(self) -> bool:
        return self._state is State.OPEN

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._transport.write(self._request)
        self._request = b""

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = State.CLOSED
        if not self._opened.done():
            self._opened.set_result(False)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self._buffer + data if self._buffer else data
        if self._state is State.CONNECTING:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self._fail()
                return
            self._state = State.OPEN
            self._opened.set_result(True)
            buffer = buffer[end + 4:]
        at, size = 0, len(buffer)
        while size - at >= 2 and self._state is State.OPEN:
            head, length = buffer[at], buffer[at + 1] & 0x7F
            start = at + 2
            if length >= 126:
                width = 2 if length == 126 else 8
                if size - start < width:
                    break
                length = int.from_bytes(buffer[start:start + width], "big")
                start += width
            if size - start < length:
                break
            payload = buffer[start:start + length]
            at = start + length
            opcode = head & 0x0F
            if opcode == Opcode.TEXT and head & 0x80 and RECORDER is not None:
                RECORDER.on_text(self, payload, now)
            elif opcode == Opcode.PING:
                self._send(Opcode.PONG, payload)
            elif opcode == Opcode.CLOSE:
                self._send(Opcode.CLOSE, payload[:2])
                self._fail()
        self._buffer = buffer[at:]

    def _send(self, opcode: Opcode, payload: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(Frame(opcode, payload).serialize(mask=True))

    def _fail(self) -> None:
        self._state = State.CLOSED
        if not self._opened.done():
            self._opened.set_result(False)
        if self._transport is not None:
            self._transport.close()


def handshake(url: str) -> bytes:
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


class TimedConnection(ClientConnection):
    """A ``websockets`` client connection (``--client websockets``) that hands complete text
    frames straight to the recorder."""

    greeted = False
    last_seq = -1

    def is_open(self) -> bool:
        return self.protocol.state is State.OPEN

    def process_event(self, event: Event) -> None:
        if (self.response is not None and RECORDER is not None and isinstance(event, Frame)
                and event.opcode is Opcode.TEXT and event.fin):
            RECORDER.on_text(self, bytes(event.data), time.time())
            return
        super().process_event(event)


# Linux: bind() to an address with port 0 leaves the port to connect(), which then only needs
# the 4-tuple to be unique (not in the socket module before Python 3.12).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


async def tcp_from(source: str | None, url: str, timeout: float) -> socket.socket | None:
    """A TCP connection to ``url``'s host and port from the address ``source`` (None: the
    kernel's choice of source); None to let websockets connect by itself."""
    if source is None:
        return None
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
            sock, (parts.hostname or "127.0.0.1", parts.port or 80)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_frames(url: str, open_timeout: float, source: str | None) -> Viewer | None:
    """One ``--client frames`` viewer, once its handshake is done; None if it failed."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[bool] = loop.create_future()
    viewer = FramesViewer(handshake(url), opened)
    sock = await tcp_from(source, url, open_timeout)
    if sock is None:
        parts = urlsplit(url)
        await asyncio.wait_for(loop.create_connection(
            lambda: viewer, parts.hostname or "127.0.0.1", parts.port or 80), open_timeout)
    else:
        await loop.create_connection(lambda: viewer, sock=sock)
    try:
        ok = await asyncio.wait_for(opened, open_timeout)
    except TimeoutError:
        viewer._fail()
        raise
    return viewer if ok else None


async def open_websockets(url: str, open_timeout: float, source: str | None) -> Viewer:
    """One ``--client websockets`` viewer."""
    sock = await tcp_from(source, url, open_timeout)
    try:
        conn = await connect(url, create_connection=TimedConnection, compression=None,
                             open_timeout=open_timeout, ping_interval=None,
                             ping_timeout=None, close_timeout=1, proxy=None,
                             user_agent_header=None, max_size=1 << 20, sock=sock)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    assert isinstance(conn, TimedConnection)
    return conn


async def open_viewer(url: str, gate: asyncio.Semaphore, open_timeout: float,
                      source: str | None = None, client: str = "frames",
                      attempts: int = 4) -> Viewer | None:
    opener = open_frames if client == "frames" else open_websockets
    for attempt in range(attempts):
        async with gate:
            try:
                conn = await opener(url, open_timeout, source)
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                conn = None
        if conn is not None:
            return conn
        await asyncio.sleep(0.2 * (attempt + 1))
    return None


async def viewers_main(args: argparse.Namespace) -> None:
    global RECORDER
    recorder = RECORDER = Recorder()
    limit = raise_nofile_limit()
    if limit < args.viewers + 64:
        emit({"type": "error", "message": f"open-files limit {limit} < {args.viewers} + 64"})
        return
    gate = asyncio.Semaphore(args.concurrency)
    sources = itertools.cycle([s for s in (args.source or "").split(",") if s] or [None])
    started = time.perf_counter()
    opened = await asyncio.gather(*(open_viewer(args.url, gate, args.open_timeout,
                                                next(sources), args.client)
                                    for _ in range(args.viewers)))
    conns = [c for c in opened if c is not None]
    connect_s = time.perf_counter() - started
    deadline = time.monotonic() + args.greet_timeout
    while recorder.greeted < len(conns) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    gc.collect()
    gc.freeze()  # 10k long-lived connections: keep the collector's full passes short
    emit({"type": "connected", "viewers": len(conns), "failed": args.viewers - len(conns),
          "seconds": connect_s, "greeted": recorder.greeted, "nofile": limit})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def open_count() -> int:
        return sum(1 for c in conns if c.is_open())

    while line := await reader.readline():
        command = json.loads(line)
        match command["cmd"]:
            case "expect":
                recorder.arm(int(command["seq"]), open_count())
                emit({"type": "armed", "seq": recorder.expect, "open": recorder.target})
            case "wait":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(recorder.complete.wait(), float(command["timeout"]))
                delays = [round(d * 1000.0, 3) for d in recorder.delays]
                emit({"type": "event", "seq": recorder.expect, "expected": recorder.target,
                      "received": len(delays), "delays_ms": delays, "open": open_count(),
                      "viewers_count": recorder.viewers_count})
                recorder.expect = None
            case "quit":
                break
    sys.stdout.flush()
    os._exit(0)  # closing 10k sockets one by one buys nothing here


# -- raw baseline server ---------------------------------------------------------------------


async def raw_server_main(args: argparse.Namespace) -> None:
    raise_nofile_limit()
    viewers: set[ServerConnection] = set()

    def control(conn: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/healthz":
            return conn.respond(HTTPStatus.OK, "ok\n")
        if parts.path == "/broadcast":
            seq = int(parse_qs(parts.query)["seq"][0])
            sent_at = time.time()
            text = json.dumps({
                "type": "segment", "seq": seq,
                "url": f"http://127.0.0.1:{args.port}/media/media/raw/240p/{seq:08d}.m4s",
                "duration": 1.0, "pts_start": float(seq), "captured_at": None,
                "sent_at": sent_at}, separators=(",", ":"))
            websockets.broadcast(viewers, text)
            return conn.respond(HTTPStatus.OK, f"{len(viewers)}\n")
        return None

    async def handler(conn: ServerConnection) -> None:
        viewers.add(conn)
        try:
            await conn.send('{"type":"init","rendition":"240p"}')
            await conn.wait_closed()
        finally:
            viewers.discard(conn)

    server: Server = await serve(handler, "127.0.0.1", args.port, compression=None,
                                 process_request=control, max_size=1 << 16, backlog=2048)
    # Runs until "quit" or the end of stdin (the parent went away).
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if json.loads(line).get("cmd") == "quit":
            break
    server.close(close_connections=False)
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    load = sub.add_parser("viewers")
    load.add_argument("url")
    load.add_argument("--viewers", type=int, required=True)
    load.add_argument("--concurrency", type=int, default=100)
    load.add_argument("--client", choices=("frames", "websockets"), default="frames",
                      help="the viewers' client (see the module's docstring)")
    load.add_argument("--source", default="",
                      help="comma-separated local addresses to connect from, in turn "
                           "(default: the kernel's choice)")
    load.add_argument("--open-timeout", type=float, default=120.0)
    load.add_argument("--greet-timeout", type=float, default=60.0)
    load.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    raw = sub.add_parser("raw-server")
    raw.add_argument("--port", type=int, required=True)
    raw.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.role == "viewers":
        run(viewers_main(args), args.loop)
    else:
        with contextlib.suppress(KeyboardInterrupt):
            run(raw_server_main(args), args.loop)


if __name__ == "__main__":
    main()
