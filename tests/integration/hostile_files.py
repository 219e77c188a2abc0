"""Hostile media for the ingest paths: files that claim to be a video (an upload, a live
chunk) but are really programs for ffmpeg's demuxers, telling it to read something else:
another video's objects, local files, or a host on the network. Also the things they point
at: a solid red victim (so its frames are recognisable anywhere), private local files, and a
loopback HTTP listener that records every connection it is offered."""

import contextlib
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chunkcast.media.process import ffmpeg_path

RED_SIZE = "320x240"
RED_SECONDS = 4
PASSWD = "root:x:0:0:root:/root:/bin/bash\nchunkcast:x:1000:1000::/home/chunkcast:/bin/sh\n"


def make_red_clip(path: Path, *, seconds: int = RED_SECONDS) -> Path:
    """A solid red clip with a tone (H.264 + AAC 48 kHz, like a broadcaster's chunks, so a
    live transcode that maps the audio of a manifest pointing at it would succeed)."""
    subprocess.run([
        ffmpeg_path(), "-v", "error", "-y",
        "-f", "lavfi", "-i", f"color=c=red:size={RED_SIZE}:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=880:sample_rate=48000:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "60",
        "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-ar", "48000", str(path),
    ], check=True)
    return path


@dataclass(frozen=True)
class PrivateFiles:
    """Files on the server's machine outside every storage: a red fMP4 rendition laid out
    like the platform's (``init.mp4``, ``%08d.m4s``), red PNG frames ``frame-%04d.png`` and a
    passwd-like text file."""

    folder: Path

    @property
    def secret(self) -> Path:
        return self.folder / "passwd"

    @property
    def red_mp4(self) -> Path:
        return self.folder / "red.mp4"


def make_private_files(folder: Path) -> PrivateFiles:
    folder.mkdir(parents=True, exist_ok=True)
    files = PrivateFiles(folder)
    files.secret.write_text(PASSWD)
    make_red_clip(files.red_mp4)
    subprocess.run([
        ffmpeg_path(), "-v", "error", "-y", "-i", str(files.red_mp4), "-c", "copy",
        "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_filename", str(folder / "%08d.m4s"), str(folder / "red.m3u8"),
    ], check=True)
    subprocess.run([
        ffmpeg_path(), "-v", "error", "-y", "-f", "lavfi", "-i",
        f"color=c=red:size={RED_SIZE}:rate=1:duration=3", str(folder / "frame-%04d.png"),
    ], check=True)
    return files


@dataclass(frozen=True)
class Targets:
    """What a hostile file may point at, as the server would have to reach it."""

    victim_id: str
    rendition: str
    victim_file_dir: str
    """``file://`` URL of a red rendition folder on the server's disk (with local storage,
    the victim's own objects), ending in ``/``."""
    storage_dir: str
    """Absolute ``http://`` URL of the victim's rendition folder where storage serves it
    (the bucket, or the API's ``/media/``), ending in ``/``."""
    private: PrivateFiles
    listener: str
    """``http://127.0.0.1:P/``: a loopback host that must never be contacted."""

    @property
    def relative_dir(self) -> str:
        """The victim's folder relative to a source (``sources/ID/source``) or a live chunk
        (``chunks/ID/SEQ.ts``): both are two levels below the storage root."""
        return f"../../media/{self.victim_id}/{self.rendition}/"

    @property
    def private_dir(self) -> str:
        return self.private.folder.as_uri() + "/"


def dash_manifest(base: str, *, media: str = "$Number%08d$.m4s",
                  initialization: str | None = "init.mp4") -> bytes:
    """An MPD whose one representation is a numbered sequence of files under ``base``."""
    init = f' initialization="{initialization}"' if initialization else ""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" minBufferTime="PT2S"
     mediaPresentationDuration="PT{RED_SECONDS}S" profiles="urn:mpeg:dash:profile:isoff-live:2011">
 <Period start="PT0S">
  <BaseURL>{base}</BaseURL>
  <AdaptationSet mimeType="video/mp4" contentType="video" segmentAlignment="true">
   <Representation id="v" bandwidth="400000" width="320" height="240" codecs="avc1.64000d">
    <SegmentTemplate{init} media="{media}" startNumber="0" duration="2" timescale="1"/>
   </Representation>
  </AdaptationSet>
 </Period>
</MPD>
""".encode()


def hls_playlist(base: str, segments: tuple[str, ...] = ("00000000.m4s", "00000001.m4s"),
                 init: str | None = "init.mp4") -> bytes:
    """An fMP4 media playlist listing ``segments`` under ``base``."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2",
             "#EXT-X-MEDIA-SEQUENCE:0", "#EXT-X-PLAYLIST-TYPE:VOD"]
    if init is not None:
        lines.append(f'#EXT-X-MAP:URI="{base}{init}"')
    for name in segments:
        lines += ["#EXTINF:2.000000,", f"{base}{name}"]
    lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


def ffconcat_script(*files: str) -> bytes:
    """``ffconcat version 1.0`` with one ``file`` line per entry."""
    entries = "".join(f"file '{name}'\n" for name in files)
    return f"ffconcat version 1.0\n{entries}".encode()


# Every hostile file, by the name the tests are parametrized with.
CASES: dict[str, Callable[[Targets], bytes]] = {
    # DASH: the BaseURL is another video's folder, a local folder, the storage's own
    # address, or a host on the network; $Number$ walks the victim's numbered segments.
    "dash-relative": lambda t: dash_manifest(t.relative_dir),
    "dash-file-url": lambda t: dash_manifest(t.victim_file_dir),
    "dash-storage-url": lambda t: dash_manifest(t.storage_dir),
    "dash-listener": lambda t: dash_manifest(t.listener + "dash/"),
    # HLS: the same targets as a playlist's init and segment URIs.
    "hls-relative": lambda t: hls_playlist(t.relative_dir),
    "hls-file-url": lambda t: hls_playlist(t.victim_file_dir),
    "hls-listener": lambda t: hls_playlist(t.listener + "hls/"),
    # ffconcat: the victim's objects, local files (plain, file:, concat: and subfile:
    # protocols) and the network.
    "ffconcat-relative": lambda t: ffconcat_script(
        t.relative_dir + "init.mp4", t.relative_dir + "00000000.m4s"),
    "ffconcat-local-files": lambda t: ffconcat_script(
        "/etc/passwd", str(t.private.secret), t.private.secret.as_uri(),
        str(t.private.red_mp4), f"concat:{t.private.red_mp4}|{t.private.red_mp4}",
        f"subfile,,start,0,end,0,,:{t.private.red_mp4}"),
    "ffconcat-listener": lambda t: ffconcat_script(t.listener + "concat/00000000.ts"),
    # Image sequences: printf patterns over the victim's objects and private frames.
    "image-sequence-ffconcat": lambda t: ffconcat_script(
        t.relative_dir + "%08d.m4s", str(t.private.folder / "frame-%04d.png"),
        t.private_dir + "frame-%04d.png"),
    "image-sequence-dash": lambda t: dash_manifest(
        t.private_dir, media="frame-$Number%04d$.png", initialization=None),
}


class Listener:
    """An HTTP server on a free loopback port, in a thread. It records the first line of
    every connection it accepts (or that there was one) and answers 404."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)  # how often the accept loop looks at the stop flag
        self._seen: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="hostile-listener",
                                        daemon=True)

    @property
    def url(self) -> str:
        port: int = self._sock.getsockname()[1]
        return f"http://127.0.0.1:{port}/"

    @property
    def connections(self) -> list[str]:
        with self._lock:
            return list(self._seen)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    first = conn.recv(4096).split(b"\r\n", 1)[0]
                except OSError:
                    first = b""
                with self._lock:
                    self._seen.append(first.decode(errors="replace") or "(connected)")
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")

    @contextlib.contextmanager
    def running(self) -> Iterator["Listener"]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
            self._sock.close()


def mean_colours(media: Path) -> list[tuple[int, int, int]]:
    """The mean RGB colour of every decoded frame of ``media``."""
    raw = subprocess.run([
        ffmpeg_path(), "-v", "error", "-i", str(media), "-an", "-vf", "scale=1:1:flags=area",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-",
    ], check=True, capture_output=True).stdout
    return [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw) - 2, 3)]


def is_red(colour: tuple[int, int, int]) -> bool:
    """A frame of the victim: red throughout (a test pattern averages to something else)."""
    r, g, b = colour
    return r > 150 and g < 80 and b < 80
