"""The SRT front-end, on libsrt (Haivision's SRT library, which Debian's ffmpeg is built
with) through ctypes: many callers on one UDP port, each authenticated by its streamid
during the handshake.

Callers use ``srt://HOST:PORT?streamid=KEY`` (or ``streamid=publish:KEY``) and send MPEG-TS,
as OBS and ffmpeg do. A wrong key is rejected in the handshake (the caller is told
"forbidden"); an accepted caller's packets are read by a thread of its own and fed, in
batches, to its publication's chunk cutter on the event loop.
"""

import asyncio
import ctypes
import ctypes.util
import logging
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from chunkcast.ingest.publication import Publication, Refused
from chunkcast.ingest.registry import Ingest

log = logging.getLogger(__name__)

_LIBRARIES = ("srt-gnutls", "srt-openssl", "srt")
# From srt.h (libsrt 1.5).
_SRTO_RCVSYN, _SRTO_RCVTIMEO, _SRTO_STREAMID = 2, 14, 46
_SRT_ERROR, _SRT_INVALID_SOCK = -1, -1
_SRT_ETIMEOUT = 6003  # SRT_EMN(AGAIN, XMTIMEOUT)
_REJECT_BAD_REQUEST, _REJECT_FORBIDDEN, _REJECT_CONFLICT, _REJECT_UNAVAILABLE = (
    1400, 1403, 1409, 1503)  # SRT_REJC_PREDEFINED + HTTP-like codes
_REJECTIONS = {"key": _REJECT_FORBIDDEN, "ended": _REJECT_CONFLICT,
               "duplicate": _REJECT_CONFLICT, "busy": _REJECT_UNAVAILABLE,
               "unavailable": _REJECT_UNAVAILABLE}
MAX_PACKET = 1500
READ_TIMEOUT_MS = 500  # how often a reader looks at whether it should stop
IDLE_S = 10.0  # a caller silent this long is dropped (as libsrt would, later)
BATCH_BYTES, BATCH_S = 32 * 1316, 0.02  # what a reader hands over at once, at most this late
CHECK_S = 3.0  # the catalogue check of a handshake waits at most this long

_ListenCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                   ctypes.c_void_p, ctypes.c_char_p)


def stream_key_of(streamid: str) -> str:
    """The key in a streamid: ``KEY`` or ``publish:KEY`` (the access-control form's
    ``#!::r=KEY,m=publish`` too)."""
    if streamid.startswith("#!::"):
        fields = dict(item.partition("=")[::2] for item in streamid[4:].split(","))
        return fields.get("r", "") if fields.get("m", "publish") == "publish" else ""
    if streamid.startswith("publish:"):
        return streamid[len("publish:"):]
    return "" if streamid.startswith(("request:", "play:")) else streamid


def _load() -> Any:
    for name in _LIBRARIES:
        path = ctypes.util.find_library(name)
        if path:
            lib = ctypes.CDLL(path)
            lib.srt_getlasterror_str.restype = ctypes.c_char_p
            lib.srt_listen_callback.argtypes = [ctypes.c_int, _ListenCallback, ctypes.c_void_p]
            return lib
    raise ImportError("libsrt is not installed (Debian: libsrt1.5-gnutls, which ffmpeg "
                      "depends on)")


def _sockaddr_in(host: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_aton(host) + bytes(8))


class SrtListener:
    """One listening SRT socket: a thread that accepts callers, one reader thread per
    caller. Stopped with :meth:`close`."""

    def __init__(self, ingest: Ingest, loop: asyncio.AbstractEventLoop) -> None:
        self._lib = _load()
        self._ingest = ingest
        self._loop = loop
        self._stopping = threading.Event()
        self._callback = _ListenCallback(self._on_handshake)  # kept: libsrt holds a pointer
        self._socket = _SRT_INVALID_SOCK
        self._readers: set[threading.Thread] = set()  # owned here; each removes itself
        self._lock = threading.Lock()

    def _error(self) -> str:
        return str(self._lib.srt_getlasterror_str().decode(errors="replace"))

    def listen(self, host: str, port: int) -> int:
        lib = self._lib
        lib.srt_startup()
        sock = lib.srt_create_socket()
        address = _sockaddr_in(socket.gethostbyname(host), port)
        if lib.srt_bind(sock, address, len(address)) == _SRT_ERROR or \
                lib.srt_listen(sock, 64) == _SRT_ERROR:
            message = self._error()
            lib.srt_close(sock)
            raise OSError(f"SRT cannot listen on {host}:{port}: {message}")
        lib.srt_listen_callback(sock, self._callback, None)
        self._socket = sock
        bound = ctypes.create_string_buffer(16)
        size = ctypes.c_int(16)
        lib.srt_getsockname(sock, bound, ctypes.byref(size))
        threading.Thread(target=self._accept, name="srt-accept", daemon=True).start()
        return int(struct.unpack("!H", bound.raw[2:4])[0])

    def _on_handshake(self, opaque: Any, ns: int, version: int, peer: Any,
                      streamid: bytes | None) -> int:
        """libsrt's thread, during the handshake: refuse a wrong key before anything is
        accepted. Never raises into C."""
        try:
            key = stream_key_of((streamid or b"").decode(errors="replace"))
            check = asyncio.run_coroutine_threadsafe(self._ingest.check(key), self._loop)
            check.result(CHECK_S)
            return 0
        except Refused as exc:
            self._lib.srt_setrejectreason(ns, _REJECTIONS.get(exc.reason, _REJECT_BAD_REQUEST))
        except Exception as exc:
            log.warning("srt handshake failed: %s: %s", type(exc).__name__, exc)
            self._lib.srt_setrejectreason(ns, _REJECT_UNAVAILABLE)
        return -1

    def _accept(self) -> None:
        lib = self._lib
        while not self._stopping.is_set():
            peer = ctypes.create_string_buffer(128)
            size = ctypes.c_int(128)
            caller = lib.srt_accept(self._socket, peer, ctypes.byref(size))
            if caller == _SRT_INVALID_SOCK:
                if not self._stopping.is_set():
                    log.warning("srt accept failed: %s", self._error())
                    time.sleep(0.1)
                continue
            host = socket.inet_ntoa(peer.raw[4:8])
            port = struct.unpack("!H", peer.raw[2:4])[0]
            reader = threading.Thread(target=self._read, args=(caller, f"{host}:{port}"),
                                      name=f"srt-{caller}", daemon=True)
            with self._lock:
                self._readers.add(reader)
            reader.start()

    def _streamid(self, sock: int) -> str:
        buffer = ctypes.create_string_buffer(600)
        size = ctypes.c_int(600)
        if self._lib.srt_getsockflag(sock, _SRTO_STREAMID, buffer, ctypes.byref(size)) != 0:
            return ""
        return buffer.raw[:size.value].decode(errors="replace")

    def _run(self, coroutine: Awaitable[Any], timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def _read(self, sock: int, peer: str) -> None:
        """One caller's thread: open its publication, then feed it until the caller leaves,
        goes silent, is refused, or the listener stops."""
        lib = self._lib
        publication: Publication | None = None
        try:
            timeout = ctypes.c_int(READ_TIMEOUT_MS)
            lib.srt_setsockflag(sock, _SRTO_RCVTIMEO, ctypes.byref(timeout), 4)
            key = stream_key_of(self._streamid(sock))
            publication = self._run(self._ingest.open("srt", key, peer, "mpegts"), CHECK_S * 2)
            self._pump(sock, publication)
        except Refused as exc:
            log.info("srt publisher %s cut off: %s", peer, exc.message)
        except Exception as exc:
            log.warning("srt publisher %s dropped: %s: %s", peer, type(exc).__name__, exc)
        finally:
            lib.srt_close(sock)
            if publication is not None and not self._loop.is_closed():
                try:
                    self._run(self._ingest.close(publication))
                except Exception as exc:
                    log.warning("srt publisher %s: %s", peer, exc)
            with self._lock:
                self._readers.discard(threading.current_thread())

    def _pump(self, sock: int, publication: Publication) -> None:
        lib = self._lib
        packet = ctypes.create_string_buffer(MAX_PACKET)
        batch = bytearray()
        flushed = last_data = time.monotonic()
        while not self._stopping.is_set():
            got = lib.srt_recvmsg(sock, packet, MAX_PACKET)
            now = time.monotonic()
            if got > 0:
                batch += packet.raw[:got]
                last_data = now
            elif got == _SRT_ERROR and lib.srt_getlasterror(None) != _SRT_ETIMEOUT:
                break  # the caller left
            elif now - last_data > IDLE_S:
                break
            if batch and (len(batch) >= BATCH_BYTES or now - flushed >= BATCH_S):
                self._run(publication.feed(bytes(batch)))
                batch.clear()
                flushed = now
        if batch:
            self._run(publication.feed(bytes(batch)))

    def close(self) -> list[threading.Thread]:
        """Stop accepting and reading; returns the readers still finishing."""
        self._stopping.set()
        if self._socket != _SRT_INVALID_SOCK:
            self._lib.srt_close(self._socket)
        with self._lock:
            return list(self._readers)


async def serve_srt(ingest: Ingest, host: str, port: int
                    ) -> tuple[int, Callable[[], Awaitable[None]]]:
    """Listen for SRT callers; returns the bound port and how to stop."""
    listener = SrtListener(ingest, asyncio.get_running_loop())
    bound = await asyncio.to_thread(listener.listen, host, port)

    async def close() -> None:
        readers = listener.close()

        def join() -> None:
            for reader in readers:
                reader.join(30)

        await asyncio.to_thread(join)

    return bound, close
