"""Golden tests of the broadcaster's ffmpeg argv: each whole command is written out.

Every variant reads in real time (``-re`` without the initial burst) unless the source is
live, encodes H.264 with one keyframe per chunk and AAC, and cuts MPEG-TS chunks announced on
stdout as CSV; the chunk files carry the list's times plus a 1 s timeline offset.
"""

from pathlib import Path

import pytest

from chunkcast.media.broadcast_argv import (
    AUDIO_PRIMING_S,
    BroadcastOptions,
    SourceKind,
    broadcast_argv,
    resumed_timeline_start,
    source_kind,
    video_kbps,
)

OUT = Path("/out")
FONT = Path("/fonts/DejaVuSans.ttf")


def _encode(vf: str, kbps: str, gop: str, chunk: str) -> list[str]:
    return [
        "-map", "0:v:0", "-map", "0:a:0?",
        "-vf", vf,
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-b:v", kbps, "-maxrate", kbps, "-bufsize", kbps,
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
        "-force_key_frames", f"expr:gte(t,n_forced*{chunk})",
        "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000",
    ]


HEAD = ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
SCALE = "scale=trunc(iw*min(1\\,1080/ih)/2)*2:trunc(min(ih\\,1080)/2)*2,format=yuv420p"
TESTSRC_GRAPH = ("testsrc2=size=1280x720:rate=30[out0];"
                 "sine=frequency=1000:sample_rate=48000[out1]")
CLOCK = ("drawtext='fontfile=/fonts/DejaVuSans.ttf"
         ":text=%{localtime\\:%H\\\\\\:%M\\\\\\:%S.%3N}"
         ":fontsize=64:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=16"
         ":x=(w-text_w)/2:y=h-text_h-48'")


def _tail(chunk: str, offset: str = "1") -> list[str]:
    return [
        "-progress", "pipe:2", "-stats_period", "0.1",
        "-f", "segment", "-segment_format", "mpegts",
        "-segment_format_options", "mpegts_copyts=1", "-initial_offset", offset,
        "-segment_time", chunk, "-reset_timestamps", "0",
        "-segment_list", "pipe:1", "-segment_list_type", "csv",
        "/out/%08d.ts",
    ]


def test_file_once_with_one_second_chunks() -> None:
    opts = BroadcastOptions(chunk_seconds=1, fps=25.0, height=1080)
    assert broadcast_argv("ffmpeg", "/videos/talk.mp4", OUT, opts) == [
        *HEAD,
        "-re", "-readrate_initial_burst", "0.001", "-i", "/videos/talk.mp4",
        *_encode(SCALE, "7000k", "25", "1"),
        *_tail("1"),
    ]


def test_file_in_a_loop_with_two_second_chunks() -> None:
    opts = BroadcastOptions(chunk_seconds=2, loop=True, fps=30.0, height=720)
    assert broadcast_argv("ffmpeg", "/videos/talk.mp4", OUT, opts) == [
        *HEAD,
        "-re", "-readrate_initial_burst", "0.001", "-stream_loop", "-1",
        "-i", "/videos/talk.mp4",
        *_encode(SCALE, "4500k", "60", "2"),
        *_tail("2"),
    ]


def test_testsrc_with_a_font_burns_in_the_clock() -> None:
    opts = BroadcastOptions(chunk_seconds=1, font=FONT)
    assert broadcast_argv("ffmpeg", "testsrc", OUT, opts) == [
        *HEAD,
        "-re", "-readrate_initial_burst", "0.001", "-f", "lavfi", "-i", TESTSRC_GRAPH,
        *_encode(f"{CLOCK},format=yuv420p", "4500k", "30", "1"),
        *_tail("1"),
    ]


def test_testsrc_without_a_font_has_no_clock() -> None:
    opts = BroadcastOptions(chunk_seconds=2)
    assert broadcast_argv("ffmpeg", "testsrc", OUT, opts) == [
        *HEAD,
        "-re", "-readrate_initial_burst", "0.001", "-f", "lavfi", "-i", TESTSRC_GRAPH,
        *_encode("format=yuv420p", "4500k", "60", "2"),
        *_tail("2"),
    ]


def test_a_resumed_stream_s_timeline_goes_on_where_it_ended() -> None:
    opts = BroadcastOptions(chunk_seconds=1, timeline_start_s=734.042667)
    assert broadcast_argv("ffmpeg", "testsrc", OUT, opts) == [
        *HEAD,
        "-re", "-readrate_initial_burst", "0.001", "-f", "lavfi", "-i", TESTSRC_GRAPH,
        *_encode("format=yuv420p", "4500k", "30", "1"),
        *_tail("1", offset="734.042667"),
    ]


@pytest.mark.parametrize(("next_pts", "has_audio", "start"), [
    (0.0, True, 1.0),  # a new stream: the usual timeline offset
    (0.0, False, 1.0),
    # its first picture right after the stream's last one; with audio, the AAC priming
    # (the first packet) comes one audio frame before it
    (13.042667, True, 13.042667 - AUDIO_PRIMING_S),
    (13.042667, False, 13.042667),
])
def test_a_resumed_broadcast_s_first_picture_lands_where_the_stream_ended(
        next_pts: float, has_audio: bool, start: float) -> None:
    assert resumed_timeline_start(next_pts, has_audio=has_audio) == pytest.approx(start)


def test_rtmp_url_is_read_as_it_arrives_with_a_timeout() -> None:
    opts = BroadcastOptions(chunk_seconds=1, input_options=("-fflags", "nobuffer"))
    assert broadcast_argv("ffmpeg", "rtmp://127.0.0.1/live/cam", OUT, opts) == [
        *HEAD,
        "-rw_timeout", "10000000", "-fflags", "nobuffer", "-i", "rtmp://127.0.0.1/live/cam",
        *_encode(SCALE, "7000k", "30", "1"),
        *_tail("1"),
    ]


def test_device_has_no_network_timeout_and_keeps_its_input_options() -> None:
    opts = BroadcastOptions(chunk_seconds=2, input_options=("-f", "v4l2"))
    argv = broadcast_argv("ffmpeg", "/dev/video0", OUT, opts)
    assert argv[7:11] == ["-f", "v4l2", "-i", "/dev/video0"]
    assert "-re" not in argv and "-rw_timeout" not in argv


@pytest.mark.parametrize(("source", "kind"), [
    ("testsrc", SourceKind.TESTSRC),
    ("clip.mp4", SourceKind.FILE),
    ("/videos/my talk.mov", SourceKind.FILE),
    ("file:///videos/talk.mp4", SourceKind.FILE),
    ("rtmp://host/live/key", SourceKind.LIVE),
    ("srt://127.0.0.1:9000?mode=listener", SourceKind.LIVE),
    ("https://example.com/live.m3u8", SourceKind.LIVE),
    ("/dev/video0", SourceKind.LIVE),
])
def test_source_kind(source: str, kind: SourceKind) -> None:
    assert source_kind(source) is kind


@pytest.mark.parametrize(("height", "kbps"), [
    (240, 1200), (360, 1200), (480, 2000), (720, 4500), (1080, 7000), (2160, 12000),
    (None, 7000),
])
def test_bitrate_follows_the_source_height(height: int | None, kbps: int) -> None:
    assert video_kbps(height) == kbps
