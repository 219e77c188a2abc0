"""An upload's timeline, with the real ffmpeg: media time is the source's time, from 0, with
nothing before it; every window of the upload yields the same init segment and segments
that join without a gap."""

import array
import asyncio
import itertools
import json
import subprocess
from pathlib import Path

import av
import pytest

from chunkcast.adapters.media.ffmpeg import FfmpegEncoder
from chunkcast.domain.ladder import Rendition
from chunkcast.media.inputs import MediaInput
from chunkcast.media.process import ffmpeg_path
from chunkcast.ports.media import ChunkWindow, EncodedRendition
from chunkcast.testing import make_clip

from .fmp4 import TrackRun, timescales, track_runs

R240 = Rendition("240p", 320, 240, 300, 64, 30.0)
AAC_FRAME_S = 1024 / 48000


@pytest.fixture(scope="module")
def windows(tmp_path_factory: pytest.TempPathFactory) -> list[EncodedRendition]:
    """A 3 s clip (test pattern, 440 Hz tone) encoded as the splitter would ask: a window
    from 0 to 2 s and one from 2 s to the end, in segments of 1 s."""
    root = tmp_path_factory.mktemp("timeline")
    clip = make_clip(root / "clip.mp4", seconds=3, size="320x240")
    encoder = FfmpegEncoder(ffmpeg_path())

    async def encode(start: float, duration: float) -> EncodedRendition:
        (out,) = await encoder.encode(
            MediaInput(str(clip), "mov"), [R240], root / f"at{start:g}", kind="vod",
            window=ChunkWindow(start, duration), first_seq=round(start), segment_seconds=1,
            has_audio=True, copy_audio=False, timeout_s=60)
        return out

    return [asyncio.run(encode(0.0, 2.0)), asyncio.run(encode(2.0, 1.0))]


def _runs(out: EncodedRendition, handler: str) -> list[tuple[int, list[TrackRun]]]:
    """(timescale, that track's runs) of every segment of a window."""
    tracks = timescales(out.init.read_bytes())
    ((track_id, (_, scale)),) = [(i, t) for i, t in tracks.items() if t[0] == handler]
    return [(scale, [r for r in track_runs(s.path.read_bytes()) if r.track_id == track_id])
            for s in out.segments]


def test_the_first_picture_is_at_zero_and_decoded_there(
    windows: list[EncodedRendition],
) -> None:
    (_, runs), *_ = _runs(windows[0], "vide")
    first = runs[0]
    # The first fragment's decode time is its first picture's presentation time (composition
    # offsets may be negative): a browser buffers from 0, without a hole before the picture.
    assert first.decode_time == 0 and first.offsets[0] == 0
    assert min(t for run in runs for t in run.presented) == 0
    assert windows[0].start == 0.0


def test_nothing_lies_before_zero_and_the_audio_starts_with_the_tone(
    windows: list[EncodedRendition], tmp_path: Path,
) -> None:
    first = tmp_path / "first.mp4"
    first.write_bytes(windows[0].init.read_bytes() + windows[0].segments[0].path.read_bytes())
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_entries",
                          "packet=codec_type,pts_time,dts_time", str(first)],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    packets = json.loads(out)["packets"]
    audio = [p for p in packets if p["codec_type"] == "audio"]
    video = [p for p in packets if p["codec_type"] == "video"]
    assert min(float(p["dts_time"]) for p in packets) == 0.0
    assert float(audio[0]["pts_time"]) == 0.0 and float(video[0]["dts_time"]) == 0.0
    # ffmpeg's demuxer, lacking an edit list, delays the pictures by the deepest negative
    # offset it has seen: its pts are not the presentation times a browser uses (see above).
    # The encoder's priming packet (near silence, one frame before the first sample) is
    # gone: the packet at 0 already carries the tone.
    with av.open(str(first)) as container:
        frame = next(iter(container.decode(audio=0)))
        assert frame.pts == 0
        samples = array.array("f", bytes(frame.planes[0])[:frame.samples * 4])
        assert max(abs(s) for s in samples) > 0.05


def test_every_window_yields_the_same_init_segment(windows: list[EncodedRendition]) -> None:
    assert windows[0].init.read_bytes() == windows[1].init.read_bytes()
    assert windows[0].codecs == windows[1].codecs
    assert windows[0].codecs.startswith("avc1.64") and windows[0].codecs.endswith(",mp4a.40.2")


def test_segments_follow_each_other_on_the_sources_clock(
    windows: list[EncodedRendition],
) -> None:
    segments = [seg for w in windows for seg in _runs(w, "vide")]
    assert [round(runs[0].decode_time / scale, 6) for scale, runs in segments] == [0, 1, 2]
    for (_, before), (_, after) in itertools.pairwise(segments):
        assert after[0].decode_time == before[-1].end  # no gap, no overlap
    assert [s.duration for w in windows for s in w.segments] == [1.0, 1.0, 1.0]
    # Audio runs on within a window; a later window's encode starts with its priming, one
    # AAC frame before the window.
    (scale, later), *_ = _runs(windows[1], "soun")
    assert later[0].decode_time / scale == pytest.approx(2.0 - AAC_FRAME_S)


def test_the_whole_upload_decodes_cleanly(
    windows: list[EncodedRendition], tmp_path: Path,
) -> None:
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(windows[0].init.read_bytes() + b"".join(
        s.path.read_bytes() for w in windows for s in w.segments))
    proc = subprocess.run([ffmpeg_path(), "-v", "error", "-i", str(whole), "-map", "0",
                           "-f", "null", "-"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr.strip()) == (0, "")
