"""The RTMP front-end, on pyrtmp (an asyncio RTMP server library): many publishers on one
port, each authenticated by its stream key when it sends ``publish``.

OBS and ffmpeg publish to ``rtmp://HOST:PORT/live/KEY`` (OBS: server
``rtmp://HOST:PORT/live``, stream key ``KEY``). A wrong key gets an ``onStatus`` error
naming the reason and the connection is closed before anything is stored. Media messages
are framed as FLV tags, exactly as they came, and fed to the publication's chunk cutter;
only H.264 video and AAC audio are taken (what OBS sends by default).
"""

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from bitstring import BitStream
from pyrtmp import StreamClosedException
from pyrtmp.amf.serializers import AMF0Serializer
from pyrtmp.messages import Chunk
from pyrtmp.messages.command import (
    NCConnect,
    NCCreateStream,
    NSCloseStream,
    NSDeleteStream,
    NSPublish,
)
from pyrtmp.messages.factory import MessageFactory
from pyrtmp.messages.protocol_control import SetChunkSize
from pyrtmp.rtmp import RTMPProtocol, SimpleRTMPController
from pyrtmp.session_manager import SessionManager

from chunkcast.ingest import flv
from chunkcast.ingest.publication import Publication, Refused
from chunkcast.ingest.registry import Ingest

log = logging.getLogger(__name__)
# pyrtmp logs every connection (DEBUG, on a logger it sets to DEBUG itself) and every
# command it has no class for (WARNING: releaseStream, FCPublish…).
logging.getLogger("pyrtmp").setLevel(logging.ERROR)

APP = "live"
HANDSHAKE_S = 10.0  # a client that connects and says nothing is dropped after this
IDLE_S = 10.0  # a connection silent this long (a publisher gone without a word) is dropped
_COMMAND = 0x14


@dataclass
class _Connection:
    peer: str
    app_ok: bool = False
    publication: Publication | None = None
    last_keyframe_ms: int | None = None


def _status(stream_id: int, level: str, code: str, description: str) -> Chunk:
    data = BitStream()
    for value in ("onStatus", 0, None, {"level": level, "code": code,
                                        "description": description}):
        AMF0Serializer.create_object(data, value)
    payload: bytes = data.bytes
    return Chunk(chunk_type=0, chunk_id=5, timestamp=0, msg_length=len(payload),
                 msg_type_id=_COMMAND, msg_stream_id=stream_id, payload=payload)


class RtmpIngest(SimpleRTMPController):  # type: ignore[misc]
    """One controller for every connection of the port (the state of each lives in its
    own callback)."""

    def __init__(self, ingest: Ingest) -> None:
        super().__init__()
        self._ingest = ingest

    async def client_callback(self, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        session = SessionManager(reader=reader, writer=writer)
        conn = _Connection(peer=session.peername)
        try:
            async with asyncio.timeout(HANDSHAKE_S):
                await session.handshake()
            messages = session.read_chunks_from_stream()
            while True:
                chunk = await asyncio.wait_for(anext(messages), IDLE_S)
                if not await self._on_chunk(session, conn, chunk):
                    break
        except Refused as exc:  # mid-stream: a codec it cannot take, the key rotated…
            log.info("rtmp publisher %s cut off: %s", conn.peer, exc.message)
            with contextlib.suppress(Exception):
                session.write_chunk_to_stream(_status(1, "error", "NetStream.Publish.Denied",
                                                      exc.message))
                await session.drain()
        except (StreamClosedException, TimeoutError, ConnectionError, StopAsyncIteration):
            pass
        except Exception as exc:  # garbage from the client: it alone is dropped
            log.info("rtmp connection %s dropped: %s: %s", conn.peer, type(exc).__name__, exc)
        finally:
            if conn.publication is not None:
                await self._ingest.close(conn.publication)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _on_chunk(self, session: SessionManager, conn: _Connection, chunk: Any) -> bool:
        """Handle one message; False when the connection is over."""
        kind = chunk.msg_type_id
        if kind in (flv.VIDEO, flv.AUDIO):
            if conn.publication is not None:
                await self._media(conn, kind, chunk.timestamp, chunk.payload)
            return True
        message = MessageFactory.from_chunk(chunk)
        if isinstance(message, NCConnect):
            app = str((message.command_object or {}).get("app", "")).strip("/")
            if app != APP:
                log.info("rtmp connection %s refused: application %r (not %r)", conn.peer,
                         app, APP)
                return False
            await self.on_nc_connect(session, message)
        elif isinstance(message, NCCreateStream):
            await self.on_nc_create_stream(session, message)
        elif isinstance(message, SetChunkSize):
            session.reader_chunk_size = message.chunk_size
        elif isinstance(message, NSPublish):
            return await self._publish(session, conn, message)
        elif isinstance(message, NSCloseStream | NSDeleteStream):
            return conn.publication is None
        return True

    async def _publish(self, session: SessionManager, conn: _Connection,
                       message: NSPublish) -> bool:
        if conn.publication is not None:
            return False  # one publication per connection
        key = str(message.publishing_name or "").split("?", 1)[0]
        try:
            conn.publication = await self._ingest.open("rtmp", key, conn.peer, "flv")
        except Refused as exc:
            session.write_chunk_to_stream(_status(message.msg_stream_id, "error",
                                                  "NetStream.Publish.BadName", exc.message))
            await session.drain()
            return False
        await self.on_ns_publish(session, message)
        await conn.publication.feed(flv.HEADER)
        return True

    @staticmethod
    async def _media(conn: _Connection, kind: int, timestamp: int, payload: bytes) -> None:
        publication = conn.publication
        assert publication is not None
        if kind == flv.VIDEO:
            tag = flv.video_tag(payload)
            if not tag.codec_ok:
                raise Refused("only H.264 video is taken over RTMP (OBS: x264 or a hardware "
                              "H.264 encoder)", "codec")
            if tag.keyframe and not tag.config:
                if conn.last_keyframe_ms is not None and timestamp > conn.last_keyframe_ms:
                    publication.keyframe_interval((timestamp - conn.last_keyframe_ms) / 1000)
                conn.last_keyframe_ms = timestamp
        elif not flv.audio_codec_ok(payload):
            raise Refused("only AAC audio is taken over RTMP", "codec")
        await publication.feed(flv.tag(kind, timestamp, payload))


async def serve_rtmp(ingest: Ingest, host: str, port: int) -> asyncio.Server:
    """Listen for publishers; the server is returned serving."""
    controller = RtmpIngest(ingest)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: RTMPProtocol(controller), host=host, port=port)
