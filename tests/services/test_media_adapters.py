"""The production media adapters, without running a real ffmpeg for the encode: the encoder
runs a stand-in script that writes what ffmpeg's muxers would (an HLS playlist and segments
for a VOD window, a fragmented MP4 for a live chunk), so what it runs (the golden argv
builders) and what it reads back are checked quickly. ``test_parts`` and the integration
tests run the real ffmpeg."""

import subprocess
from pathlib import Path

import pytest

from chunkcast.adapters.media.ffmpeg import FfmpegEncoder
from chunkcast.adapters.media.probe import PyavProber
from chunkcast.domain.errors import MediaError
from chunkcast.domain.ladder import Rendition
from chunkcast.domain.playlists import part_target
from chunkcast.media.argv import EncodeOptions, InputRange, ladder_argv, live_chunk_argv
from chunkcast.media.hls import WrittenSegment
from chunkcast.media.inputs import MediaInput
from chunkcast.media.process import FfmpegFailed, ffmpeg_path
from chunkcast.ports.media import ChunkKind, ChunkWindow, EncodedRendition

R240 = Rendition("240p", 426, 240, 400, 96, 30.0)
R360 = Rendition("360p", 640, 360, 800, 128, 30.0)
SOURCE = MediaInput("/objects/sources/x/source", "mov")

# Writes, for every output playlist on its command line, an init segment (with the avcC
# box of H.264 High level 3.1 and an AAC track), two segments and the playlist naming them.
WRITES_HLS = r"""
printf '%s\n' "$@" > "$0.argv"
for arg in "$@"; do
  case "$arg" in
    */index.m3u8)
      dir="${arg%/index.m3u8}"
      printf 'ftyp avcC\001\144\000\037 mp4a' > "$dir/init.mp4"
      printf 'a' > "$dir/00000005.m4s"
      printf 'b' > "$dir/00000006.m4s"
      printf '#EXTM3U\n#EXTINF:2.000000,\n00000005.m4s\n' > "$arg"
      printf '#EXTINF:1.500000,\n00000006.m4s\n#EXT-X-ENDLIST\n' >> "$arg";;
  esac
done
"""


# Copies a fragmented MP4 (its path follows) to every live output on its command line.
COPIES_FRAGMENTED = r"""
printf '%s\n' "$@" > "$0.argv"
for arg in "$@"; do
  case "$arg" in
    */chunk.mp4) cp "$FRAGMENTED" "$arg";;
  esac
done
"""


@pytest.fixture(scope="module")
def fragmented(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of a tiny picture and a tone as fragments of a third of a second, init first."""
    path = tmp_path_factory.mktemp("fragmented") / "chunk.mp4"
    subprocess.run([
        ffmpeg_path(), "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=30:duration=1",
        "-f", "lavfi", "-i", "sine=sample_rate=48000:duration=1",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-g", "300",
        "-c:a", "aac",
        "-f", "mp4", "-movflags", "+empty_moov+delay_moov+default_base_moof+skip_trailer",
        "-frag_duration", "333333", str(path)], check=True, timeout=60)
    return path


# The chunk encoded: an upload's 4 s from 8 s, or a 1 s live chunk at 8 s.
WINDOWS = {"vod": ChunkWindow(8.0, 4.0), "live": ChunkWindow(8.0, 1.0)}

def _stand_in(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "ffmpeg"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


async def _encode(ffmpeg: Path, out: Path, kind: ChunkKind = "vod",
                  timeout_s: float = 10.0) -> list[EncodedRendition]:
    return await FfmpegEncoder(str(ffmpeg), preset="ultrafast").encode(
        SOURCE, [R240, R360], out, kind=kind, window=WINDOWS[kind], first_seq=5,
        segment_seconds=2, has_audio=True, copy_audio=kind == "live", timeout_s=timeout_s)


async def test_a_vod_chunk_runs_the_ladder_command_and_reads_back_what_it_wrote(
    tmp_path: Path,
) -> None:
    ffmpeg = _stand_in(tmp_path, WRITES_HLS)
    out = tmp_path / "out"
    encoded = await _encode(ffmpeg, out)
    ran = (tmp_path / "ffmpeg.argv").read_text().splitlines()
    assert [str(ffmpeg), *ran] == ladder_argv(
        str(ffmpeg), SOURCE, [R240, R360], out, has_audio=True,
        opts=EncodeOptions(preset="ultrafast", segment_seconds=2),
        window=InputRange(8.0, 4.0), first_seq=5)
    assert encoded == [EncodedRendition(
        r, out / r / "init.mp4", "avc1.64001f,mp4a.40.2",
        [WrittenSegment(out / r / "00000005.m4s", 2.0),
         WrittenSegment(out / r / "00000006.m4s", 1.5)],
        8.0) for r in ("240p", "360p")]  # the window's start: the source's clock


async def test_a_live_chunk_runs_the_live_command_and_reads_back_init_segment_and_parts(
    tmp_path: Path, fragmented: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAGMENTED", str(fragmented))
    ffmpeg = _stand_in(tmp_path, COPIES_FRAGMENTED)
    out = tmp_path / "out"
    encoded = await _encode(ffmpeg, out, kind="live")
    ran = (tmp_path / "ffmpeg.argv").read_text().splitlines()
    assert [str(ffmpeg), *ran] == live_chunk_argv(
        str(ffmpeg), SOURCE, [R240, R360], out, has_audio=True, copy_audio=True,
        opts=EncodeOptions(preset="ultrafast", segment_seconds=2,
                           part_seconds=part_target(0.334, WINDOWS["live"].duration)))
    whole = fragmented.read_bytes()
    for e, name in zip(encoded, ("240p", "360p"), strict=True):
        assert (e.rendition, e.start, e.codecs) == (name, 8.0, "avc1.64000a,mp4a.40.2")
        (segment,) = e.segments
        assert segment.path == out / name / "00000005.m4s"  # numbered like the chunk
        init, media = e.init.read_bytes(), segment.path.read_bytes()
        assert init + media == whole and init[4:8] == b"ftyp" and media[4:8] == b"moof"
        assert segment.duration == pytest.approx(1.0, abs=0.001)
        assert [p.independent for p in segment.parts] == [True, False, False]
        assert sum(p.length for p in segment.parts) == len(media)


async def test_a_live_chunk_written_as_something_else_is_a_failure(tmp_path: Path) -> None:
    script = COPIES_FRAGMENTED.replace('cp "$FRAGMENTED" "$arg"', "printf 'not an mp4' > \"$arg\"")
    with pytest.raises(FfmpegFailed, match="not a fragmented MP4"):
        await _encode(_stand_in(tmp_path, script), tmp_path / "out", kind="live")


@pytest.mark.parametrize("kind", ["vod", "live"])
async def test_nothing_written_is_an_empty_result_for_the_service_to_judge(
    tmp_path: Path, kind: ChunkKind,
) -> None:
    encoded = await _encode(_stand_in(tmp_path, "exit 0\n"), tmp_path / "out", kind)
    assert [(e.rendition, e.segments, e.codecs) for e in encoded] == [
        ("240p", [], ""), ("360p", [], "")]


async def test_segments_without_an_init_segment_are_a_failure(tmp_path: Path) -> None:
    script = WRITES_HLS.replace("printf 'ftyp avcC\\001\\144\\000\\037 mp4a' > \"$dir/init.mp4\"",
                                ":")
    with pytest.raises(FfmpegFailed, match="without an init segment"):
        await _encode(_stand_in(tmp_path, script), tmp_path / "out")


async def test_a_failed_or_slow_ffmpeg_is_reported_without_its_paths(tmp_path: Path) -> None:
    failing = _stand_in(tmp_path, f"echo '{tmp_path}/secret.mp4: Invalid data' >&2\nexit 1\n")
    with pytest.raises(FfmpegFailed) as failed:
        await _encode(failing, tmp_path / "out")
    assert failed.value.message == ("ffmpeg failed: the media could not be decoded or "
                                    "encoded (exit code 1)")
    slow = _stand_in(tmp_path, "exec sleep 30\n")
    with pytest.raises(FfmpegFailed, match="took longer than its limit") as late:
        await _encode(slow, tmp_path / "out2", timeout_s=0.2)
    assert str(tmp_path) not in late.value.message


@pytest.mark.parametrize("kind", ["source", "live"])
async def test_the_prober_refuses_what_is_not_video_and_names_no_path(
    tmp_path: Path, kind: str,
) -> None:
    path = tmp_path / "not-a-video"
    path.write_bytes(b"#EXTM3U\nhttp://169.254.169.254/latest/meta-data\n" * 50)
    prober = PyavProber()
    with pytest.raises(MediaError) as refused:
        if kind == "source":
            await prober.probe_source(str(path))
        else:
            await prober.probe_live_chunk(str(path))
    assert str(tmp_path) not in refused.value.message
