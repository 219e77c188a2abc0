"""Live segments as Low-Latency HLS parts, with the real ffmpeg: two consecutive chunks cut by
a broadcaster-like encode (H.264 with B-frames, AAC, MPEG-TS) go through the encoder and
come back as an init segment, a segment each, and parts a player can fetch one by one."""

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from chunkcast.adapters.media.ffmpeg import FfmpegEncoder
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.playlists import part_target
from chunkcast.media.argv import TIMELINE_OFFSET_S
from chunkcast.media.inputs import MediaInput
from chunkcast.media.process import ffmpeg_path
from chunkcast.ports.media import ChunkWindow, EncodedRendition
from tests.integration.media_checks import continuity_problems

from .fmp4 import TrackRun, timescales, track_runs

PART_S = 0.334
R30 = Rendition("180p", 320, 180, 300, 64, 30.0)
R25 = Rendition("144p", 256, 144, 200, 64, 25.0)


@dataclass(frozen=True)
class Chunk:
    path: Path
    first_picture: float  # on the broadcaster's clock
    length: float  # of its pictures


def _broadcast(folder: Path) -> list[Chunk]:
    """3 s of test pattern and tone, cut like the broadcaster cuts it (at keyframes, 1 s
    apart, the timeline starting at its offset), but with B-frames as other encoders send."""
    folder.mkdir()
    subprocess.run([
        ffmpeg_path(), "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=3",
        "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000:duration=3",
        "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-g", "30", "-keyint_min", "30",
        "-sc_threshold", "0", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000",
        "-f", "segment", "-segment_format", "mpegts",
        "-segment_format_options", "mpegts_copyts=1", "-initial_offset", str(TIMELINE_OFFSET_S),
        "-segment_time", "1", "-reset_timestamps", "0", str(folder / "%08d.ts"),
    ], check=True, timeout=60)
    chunks = []
    for path in sorted(folder.glob("*.ts")):
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
             "packet=pts_time", "-of", "csv=p=0", str(path)],
            check=True, capture_output=True, text=True, timeout=30).stdout
        pts = sorted(float(line.split(",")[0]) for line in out.split())
        chunks.append(Chunk(path, pts[0], pts[-1] + 1 / 30 - pts[0]))
    return chunks


@dataclass(frozen=True)
class Encoded:
    chunk: Chunk
    renditions: dict[str, EncodedRendition]


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> list[Encoded]:
    """The first two chunks, each encoded into both renditions."""
    root = tmp_path_factory.mktemp("parts")
    chunks = _broadcast(root / "chunks")[:2]
    encoder = FfmpegEncoder(ffmpeg_path(), part_seconds=PART_S)

    async def encode(seq: int, chunk: Chunk) -> Encoded:
        out = await encoder.encode(
            MediaInput(str(chunk.path), "mpegts"), [R30, R25], root / f"out{seq}",
            kind="live", window=ChunkWindow(chunk.first_picture, chunk.length), first_seq=seq,
            segment_seconds=2, has_audio=True, copy_audio=True, timeout_s=60)
        return Encoded(chunk, {r.rendition: r for r in out})

    return [asyncio.run(encode(seq, chunk)) for seq, chunk in enumerate(chunks)]


def _decode_errors(data: bytes, path: Path) -> str:
    """What ffmpeg reports decoding every stream of ``data`` ('' when clean)."""
    path.write_bytes(data)
    proc = subprocess.run([ffmpeg_path(), "-v", "error", "-i", str(path), "-map", "0",
                           "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    return proc.stderr.strip() if proc.returncode == 0 else f"exit {proc.returncode}"


def _video_runs(r: EncodedRendition) -> tuple[int, list[TrackRun]]:
    """(timescale, the video track's runs) of a rendition's segment."""
    tracks = timescales(r.init.read_bytes())
    ((video_id, (_, scale)),) = [(i, t) for i, t in tracks.items() if t[0] == "vide"]
    segment = r.segments[0].path.read_bytes()
    return scale, [run for run in track_runs(segment) if run.track_id == video_id]


@pytest.mark.parametrize("rendition", ["180p", "144p"])
def test_parts_cover_the_segment_in_whole_fragments(
    encoded: list[Encoded], rendition: str,
) -> None:
    for e in encoded:
        (segment,) = e.renditions[rendition].segments
        data = segment.path.read_bytes()
        assert segment.parts, "a live segment is published as parts"
        at = 0
        for i, part in enumerate(segment.parts):
            assert part.offset == at
            assert data[part.offset + 4:part.offset + 8] in ((b"moof", b"styp") if i == 0
                                                             else (b"moof",))
            at += part.length
        assert at == len(data)


@pytest.mark.parametrize("rendition", ["180p", "144p"])
def test_parts_last_at_most_the_part_target_and_nearly_as_long(
    encoded: list[Encoded], rendition: str,
) -> None:
    for e in encoded:
        (segment,) = e.renditions[rendition].segments
        durations = [p.duration for p in segment.parts]
        # Half the chunk when that is more than the configured part length (part_target).
        target = part_target(PART_S, e.chunk.length)
        assert all(d <= target for d in durations), durations
        assert all(d >= 0.85 * target for d in durations[:-1]), durations
        assert abs(sum(durations) - segment.duration) < 0.001
        # As long as the chunk, on the rendition's frame grid.
        assert segment.duration == pytest.approx(e.chunk.length, abs=0.041)


def test_only_the_first_part_starts_with_a_keyframe(encoded: list[Encoded]) -> None:
    for e in encoded:
        for r in e.renditions.values():
            assert [p.independent for p in r.segments[0].parts] == [
                True] + [False] * (len(r.segments[0].parts) - 1)


def test_every_chunk_has_the_same_init_segment(encoded: list[Encoded]) -> None:
    first, second = encoded
    for name, r in first.renditions.items():
        assert r.init.read_bytes() == second.renditions[name].init.read_bytes()
        assert r.codecs == second.renditions[name].codecs
        assert r.codecs.startswith("avc1.64") and r.codecs.endswith(",mp4a.40.2")


def test_segments_and_a_first_part_alone_decode_cleanly(
    encoded: list[Encoded], tmp_path: Path,
) -> None:
    for e in encoded:
        for r in e.renditions.values():
            init, segment = r.init.read_bytes(), r.segments[0].path.read_bytes()
            assert _decode_errors(init + segment, tmp_path / "whole.mp4") == ""
            first = r.segments[0].parts[0]
            part = segment[first.offset:first.offset + first.length]
            assert _decode_errors(init + part, tmp_path / "part.mp4") == ""


def test_a_segment_starts_at_its_first_picture_on_the_broadcasters_clock(
    encoded: list[Encoded],
) -> None:
    for e in encoded:
        scale, runs = _video_runs(e.renditions["180p"])
        presented = [t for run in runs for t in run.presented]
        # Decode time = presentation time of the first picture (composition offsets may be
        # negative): a player sees no hole before it.
        assert runs[0].offsets[0] == 0 and min(presented) == runs[0].decode_time
        assert abs(runs[0].decode_time / scale - e.chunk.first_picture) < 1 / R30.fps


def test_consecutive_segments_join_without_a_gap_or_an_overlap(
    encoded: list[Encoded], tmp_path: Path,
) -> None:
    first, second = (e.renditions["180p"] for e in encoded)
    _, before = _video_runs(first)
    _, after = _video_runs(second)
    assert after[0].decode_time == before[-1].end
    # As ffmpeg's demuxer reads them one after the other, like a player of the playlist.
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(first.init.read_bytes() + first.segments[0].path.read_bytes()
                       + second.segments[0].path.read_bytes())
    assert continuity_problems(str(joined)) == []
