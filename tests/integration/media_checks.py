"""What a viewer would notice, checked with ffprobe and ffmpeg from Debian."""

import itertools
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx

from chunkcast.media.process import ffmpeg_path

SEGMENT_TARGET_S = 2.0


def ffprobe(*args: str) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", *args], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def source_facts(path: Path) -> tuple[float, bool]:
    """(video duration, has audio) of a source file."""
    info = ffprobe("-show_entries", "stream=codec_type,duration", str(path))
    streams = info["streams"]
    video = next(s for s in streams if s["codec_type"] == "video")
    return float(video["duration"]), any(s["codec_type"] == "audio" for s in streams)


def played_duration(playlist_url: str) -> tuple[float, set[str]]:
    """End of the last video packet minus start of the first, and the stream types seen."""
    info = ffprobe("-show_entries", "packet=codec_type,pts_time,duration_time", playlist_url)
    video = [p for p in info["packets"] if p["codec_type"] == "video"]
    start = min(float(p["pts_time"]) for p in video)
    end = max(float(p["pts_time"]) + float(p.get("duration_time", 0)) for p in video)
    return end - start, {p["codec_type"] for p in info["packets"]}


def decodes_cleanly(playlist_url: str) -> str:
    """Decode every stream of the playlist; returns ffmpeg's error output ('' when clean)."""
    proc = subprocess.run([ffmpeg_path(), "-v", "error", "-i", playlist_url, "-map", "0",
                           "-f", "null", "-"], capture_output=True, text=True, timeout=120)
    return proc.stderr.strip() if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr}"


def media_segments(playlist: str) -> tuple[str, list[tuple[float, str]]]:
    """(init URL, [(EXTINF, URL)]) of a media playlist."""
    init = playlist.split('#EXT-X-MAP:URI="', 1)[1].split('"', 1)[0]
    items: list[tuple[float, str]] = []
    lines = playlist.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#EXTINF:"):
            items.append((float(line[8:].rstrip(",")), lines[i + 1]))
    return init, items


def starts_with_keyframe(init: bytes, segment: bytes) -> bool:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(init + segment)
        f.flush()
        info = ffprobe("-select_streams", "v:0", "-read_intervals", "%+#1",
                       "-show_entries", "frame=key_frame,pict_type", f.name)
    first = info["frames"][0]
    return bool(first["key_frame"] == 1 and first.get("pict_type") == "I")


def check_rendition(client: httpx.Client, playlist_url: str, source: Path) -> None:
    """Assert the rendition plays like the source: length, audio, keyframes, segment sizes."""
    duration, has_audio = source_facts(source)
    played, kinds = played_duration(playlist_url)
    assert abs(played - duration) <= 0.1, (played, duration)
    assert ("audio" in kinds) == has_audio
    assert decodes_cleanly(playlist_url) == ""
    init_url, segments = media_segments(client.get(playlist_url).text)
    init = client.get(init_url).content
    for extinf, url in segments:
        assert extinf <= SEGMENT_TARGET_S + 0.5, (url, extinf)
        assert starts_with_keyframe(init, client.get(url).content), url


def continuity_problems(playlist_url: str) -> list[str]:
    """Jumps in the decoded timeline of a playlist: for each stream, packets (in presentation
    order) must follow each other within one frame duration, with no overlap. The first two
    packets of each stream are left out: an AAC encoder's priming at the very start of a
    broadcast is not a join between segments."""
    info = ffprobe("-show_entries", "packet=codec_type,pts_time,duration_time", playlist_url)
    problems = []
    for kind in ("video", "audio"):
        packets = sorted((float(p["pts_time"]), float(p.get("duration_time", 0)))
                         for p in info["packets"] if p["codec_type"] == kind)
        for (pts, dur), (next_pts, _) in itertools.pairwise(packets[2:]):
            step = next_pts - (pts + dur)
            if abs(step) > max(dur, 1e-3) * 0.5 + 1e-4:
                problems.append(f"{kind}: {pts + dur:.4f} -> {next_pts:.4f}")
    return problems
