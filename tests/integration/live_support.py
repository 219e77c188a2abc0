"""Helpers for live tests: MPEG-TS chunks as a broadcaster cuts them, and a viewer."""

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

from chunkcast.media.process import ffmpeg_path
from chunkcast.testing import Server


def ws_url(server: Server, stream_id: str, rendition: str, since: int | None = None) -> str:
    """The viewer socket of one rendition (``since``: replay everything after that seq)."""
    query = "" if since is None else f"?since={since}"
    return server.url.replace("http", "ws", 1) + f"/ws/{stream_id}/{rendition}{query}"


def start_broadcast(server: Server, stream: dict[str, Any], source: Path, log: Path,
                    *args: str) -> subprocess.Popen[bytes]:
    """``chunkcast broadcast`` in its own process group; its output goes to ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "chunkcast", "broadcast", str(source), "--stream",
             stream["id"], f"--key={stream['stream_key']}", "--server", server.url, *args],
            stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)


def make_chunks(folder: Path, *, seconds: int = 6, size: str = "640x360") -> list[Path]:
    """1 s MPEG-TS chunks with continuous timestamps, cut at keyframes."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([
        ffmpeg_path(), "-v", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30",
        "-keyint_min", "30", "-sc_threshold", "0", "-c:a", "aac", "-b:a", "128k", "-ac", "2",
        "-ar", "48000", "-f", "segment", "-segment_time", "1", "-segment_format", "mpegts",
        "-reset_timestamps", "0", str(folder / "%08d.ts"),
    ], check=True)
    return sorted(folder.glob("*.ts"))


def create_stream(server: Server) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1/streams", json={"title": "live test"},
                          headers={"Authorization": f"Bearer {server.token}"})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def push_chunk(server: Server, stream: dict[str, Any], seq: int, data: bytes,
               key: str | None = None) -> httpx.Response:
    """Ask for the upload URL, PUT the chunk, report it complete; returns the last answer."""
    headers = {"X-Stream-Key": key or stream["stream_key"]}
    body = {"seq": seq, "duration": 1.0, "pts_start": float(seq),
            "captured_at": "2026-11-24T10:00:00.000Z"}
    base = f"{server.url}/api/v1/streams/{stream['id']}"
    asked = httpx.post(f"{base}/chunks", json=body, headers=headers)
    if asked.status_code != 201:
        return asked
    upload = asked.json()["upload"]
    assert httpx.put(upload["url"], content=data, headers=upload["headers"]).status_code == 200
    return httpx.post(f"{base}/chunks/{seq}/complete", json=body, headers=headers)


async def watch(url: str, *, until_seq: int | None = None, until_status: str | None = None,
                timeout_s: float = 60) -> list[dict[str, Any]]:
    """Collect messages from a viewer socket until ``until_seq`` was delivered (as a
    segment or a gap) or the status becomes ``until_status``."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s), websockets.connect(url) as ws:
        async for raw in ws:
            message = json.loads(raw)
            messages.append(message)
            if until_seq is not None and message.get("seq") == until_seq:
                break
            if until_status is not None and message.get("status") == until_status:
                break
    return messages


def wait_for_renditions(server: Server, stream_id: str, timeout_s: float = 30) -> list[str]:
    """A stream's ladder is known once its first chunk is transcoded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        video = httpx.get(f"{server.url}/api/v1/videos/{stream_id}").json()
        if video["renditions"]:
            return [r["name"] for r in video["renditions"]]
        time.sleep(0.1)
    raise AssertionError("the first chunk was never transcoded")


def seqs(messages: list[dict[str, Any]], kind: str = "segment") -> list[int]:
    return [m["seq"] for m in messages if m["type"] == kind]


def viewers_served(server: Server) -> int:
    """The WebSocket viewers ``server`` serves itself: its own series of ``chunkcast_viewers``
    (set every second; a stream's resource counts the whole cluster's viewers)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(rf'^chunkcast_viewers{{process="[^"]*-{server.pid}"}} (\S+)$', text,
                      re.MULTILINE)
    return int(float(found[1])) if found else 0
