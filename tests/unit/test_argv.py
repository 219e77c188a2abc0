"""Golden tests of the ffmpeg argv: the whole command is compared with a saved one.

An upload's output timestamps are its source's clock, so a window starting at 10 s is
written at 10 s; a live chunk keeps the broadcaster's timestamps.
"""

from pathlib import Path

import pytest

from chunkcast.domain.ladder import Rendition
from chunkcast.media.argv import (
    EncodeOptions,
    InputRange,
    fragment_us,
    ladder_argv,
    live_chunk_argv,
)
from chunkcast.media.inputs import MediaInput

SOURCE = MediaInput("in.mp4", "mov")

R240 = Rendition("240p", 426, 240, 400, 96, 30.0)
R360 = Rendition("360p", 640, 360, 800, 128, 30.0)

EXPECTED_WITH_AUDIO = [
    "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
    "-ss", "10", "-t", "10",
    "-f", "mov", "-protocol_whitelist", "file",
    "-i", "in.mp4",
    "-filter_complex",
    "[0:v:0]split=2[s0][s1];"
    "[s0]scale=426:240,setsar=1,fps=30,format=yuv420p[v0];"
    "[s1]scale=640:360,setsar=1,fps=30,format=yuv420p[v1]",
    # 240p
    "-map", "[v0]",
    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
    "-b:v", "400k", "-maxrate", "428k", "-bufsize", "600k", "-b_strategy", "0",
    "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
    "-force_key_frames", "expr:gte(t,n_forced*2)",
    "-map", "0:a:0", "-c:a", "aac", "-b:a", "96k", "-ac", "2", "-ar", "48000",
    "-output_ts_offset", "10", "-avoid_negative_ts", "disabled",
    "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
    "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
    "-hls_segment_options",
    "use_editlist=0:avoid_negative_ts=disabled:movflags=+frag_discont+negative_cts_offsets",
    "-start_number", "5",
    "-hls_segment_filename", "/out/240p/%08d.m4s",
    "/out/240p/index.m3u8",
    # 360p
    "-map", "[v1]",
    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
    "-b:v", "800k", "-maxrate", "856k", "-bufsize", "1200k", "-b_strategy", "0",
    "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
    "-force_key_frames", "expr:gte(t,n_forced*2)",
    "-map", "0:a:0", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-ar", "48000",
    "-output_ts_offset", "10", "-avoid_negative_ts", "disabled",
    "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
    "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
    "-hls_segment_options",
    "use_editlist=0:avoid_negative_ts=disabled:movflags=+frag_discont+negative_cts_offsets",
    "-start_number", "5",
    "-hls_segment_filename", "/out/360p/%08d.m4s",
    "/out/360p/index.m3u8",
]

EXPECTED_WITHOUT_AUDIO = [
    "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
    "-ss", "10", "-t", "10",
    "-f", "mov", "-protocol_whitelist", "file",
    "-i", "in.mp4",
    "-filter_complex",
    "[0:v:0]split=2[s0][s1];"
    "[s0]scale=426:240,setsar=1,fps=30,format=yuv420p[v0];"
    "[s1]scale=640:360,setsar=1,fps=30,format=yuv420p[v1]",
    # 240p
    "-map", "[v0]",
    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
    "-b:v", "400k", "-maxrate", "428k", "-bufsize", "600k", "-b_strategy", "0",
    "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
    "-force_key_frames", "expr:gte(t,n_forced*2)",
    "-output_ts_offset", "10", "-avoid_negative_ts", "disabled",
    "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
    "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
    "-hls_segment_options",
    "use_editlist=0:avoid_negative_ts=disabled:movflags=+frag_discont+negative_cts_offsets",
    "-start_number", "5",
    "-hls_segment_filename", "/out/240p/%08d.m4s",
    "/out/240p/index.m3u8",
    # 360p
    "-map", "[v1]",
    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
    "-b:v", "800k", "-maxrate", "856k", "-bufsize", "1200k", "-b_strategy", "0",
    "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
    "-force_key_frames", "expr:gte(t,n_forced*2)",
    "-output_ts_offset", "10", "-avoid_negative_ts", "disabled",
    "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
    "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
    "-hls_segment_options",
    "use_editlist=0:avoid_negative_ts=disabled:movflags=+frag_discont+negative_cts_offsets",
    "-start_number", "5",
    "-hls_segment_filename", "/out/360p/%08d.m4s",
    "/out/360p/index.m3u8",
]


def golden_argv(*, has_audio: bool) -> list[str]:
    return ladder_argv("ffmpeg", SOURCE, [R240, R360], Path("/out"), has_audio=has_audio,
                       opts=EncodeOptions(), window=InputRange(10, 10), first_seq=5)


def values_of(argv: list[str], flag: str) -> list[str]:
    """Every value given to ``flag`` (once per output for per-rendition options)."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def test_golden_argv_with_audio() -> None:
    assert golden_argv(has_audio=True) == EXPECTED_WITH_AUDIO


def test_golden_argv_without_audio() -> None:
    assert golden_argv(has_audio=False) == EXPECTED_WITHOUT_AUDIO


def test_no_audio_arguments_without_audio() -> None:
    argv = golden_argv(has_audio=False)
    assert "0:a:0" not in argv
    for flag in ("-c:a", "-b:a", "-ac", "-ar"):
        assert flag not in argv


def test_the_source_is_decoded_once() -> None:
    argv = golden_argv(has_audio=True)
    assert argv.count("-i") == 1
    assert argv.count("-filter_complex") == 1


@pytest.mark.parametrize(
    ("fps", "segment_seconds", "gop"),
    [(30.0, 2, 60), (25.0, 2, 50), (29.97, 2, 60), (60.0, 1, 60), (24.0, 4, 96),
     (23.976, 2, 48)],
)
def test_gop_is_one_segment_long(fps: float, segment_seconds: int, gop: int) -> None:
    r = Rendition("720p", 1280, 720, 2800, 128, fps)
    argv = ladder_argv("ffmpeg", SOURCE, [r], Path("/out"), has_audio=True,
                       opts=EncodeOptions(segment_seconds=segment_seconds))
    assert values_of(argv, "-g") == [str(gop)]
    assert values_of(argv, "-keyint_min") == [str(gop)]
    assert values_of(argv, "-sc_threshold") == ["0"]
    assert values_of(argv, "-force_key_frames") == [f"expr:gte(t,n_forced*{segment_seconds})"]
    assert values_of(argv, "-hls_time") == [str(segment_seconds)]


@pytest.mark.parametrize(
    ("video_kbps", "maxrate", "bufsize"),
    [(400, "428k", "600k"), (800, "856k", "1200k"), (1400, "1498k", "2100k"),
     (2800, "2996k", "4200k"), (5000, "5350k", "7500k")],
)
def test_rate_control(video_kbps: int, maxrate: str, bufsize: str) -> None:
    r = Rendition("720p", 1280, 720, video_kbps, 128, 30.0)
    argv = ladder_argv("ffmpeg", SOURCE, [r], Path("/out"), has_audio=False,
                       opts=EncodeOptions())
    assert values_of(argv, "-b:v") == [f"{video_kbps}k"]
    assert values_of(argv, "-maxrate") == [maxrate]
    assert values_of(argv, "-bufsize") == [bufsize]


@pytest.mark.parametrize(
    ("window", "first_seq", "seek"),
    [
        (InputRange(10, 10), 5, ["10", "10"]),
        (InputRange(12.5, 2), 6, ["12.5", "2"]),
        (InputRange(3598, 2.04), 1799, ["3598", "2.04"]),
    ],
)
def test_window_sets_seek_timestamps_and_numbering(
    window: InputRange, first_seq: int, seek: list[str]
) -> None:
    argv = ladder_argv("ffmpeg", SOURCE, [R240, R360], Path("/out"), has_audio=True,
                       opts=EncodeOptions(), window=window, first_seq=first_seq)
    assert [*values_of(argv, "-ss"), *values_of(argv, "-t")] == seek
    assert argv.index("-ss") < argv.index("-i"), "input seeking: -ss before -i"
    # Consecutive windows keep the source clock.
    offsets = [float(v) for v in values_of(argv, "-output_ts_offset")]
    assert offsets == [pytest.approx(window.start)] * 2
    assert values_of(argv, "-start_number") == [str(first_seq)] * 2
    assert values_of(argv, "-bsf:a") == [], "a later window keeps its AAC priming"


def test_the_first_window_starts_at_zero_without_a_seek_or_the_aac_priming() -> None:
    argv = ladder_argv("ffmpeg", SOURCE, [R240, R360], Path("/out"), has_audio=True,
                       opts=EncodeOptions(), window=InputRange(0, 10), first_seq=0)
    assert "-ss" not in argv and values_of(argv, "-t") == ["10"]
    assert [float(v) for v in values_of(argv, "-output_ts_offset")] == [0.0, 0.0]
    # The priming packet would lie before 0, which an fMP4 decode time cannot hold.
    assert values_of(argv, "-bsf:a") == ["noise=drop=lt(pts\\,0)"] * 2
    silent = ladder_argv("ffmpeg", SOURCE, [R240], Path("/out"), has_audio=False,
                         opts=EncodeOptions(), window=InputRange(0, 10))
    assert "-bsf:a" not in silent


def test_whole_source_without_window() -> None:
    source = MediaInput("https://s3.example.com/bucket/src?X-Amz-Signature=x", "matroska")
    argv = ladder_argv("/opt/ffmpeg", source, [R240], Path("/tmp/job"),
                       has_audio=True, opts=EncodeOptions(preset="medium", loglevel="warning"))
    assert argv[0] == "/opt/ffmpeg"
    assert "-ss" not in argv and "-t" not in argv
    assert values_of(argv, "-i") == [source.url]
    # Read only as the container the probe found, over https and nothing else.
    assert values_of(argv, "-f")[0] == "matroska"
    assert values_of(argv, "-protocol_whitelist") == ["https,tls,tcp"]
    assert [float(v) for v in values_of(argv, "-output_ts_offset")] == [0.0]
    assert values_of(argv, "-start_number") == ["0"]
    assert values_of(argv, "-preset") == ["medium"]
    assert values_of(argv, "-loglevel") == ["warning"]
    assert argv[-1] == "/tmp/job/240p/index.m3u8"


def test_fractional_frame_rate_in_filter() -> None:
    r = Rendition("480p", 854, 480, 1400, 128, 29.97)
    argv = ladder_argv("ffmpeg", SOURCE, [r], Path("/out"), has_audio=False,
                       opts=EncodeOptions())
    assert values_of(argv, "-filter_complex") == [
        "[0:v:0]split=1[s0];[s0]scale=854:480,setsar=1,fps=29.97,format=yuv420p[v0]"
    ]


@pytest.mark.parametrize(("url", "protocols"), [
    ("/data/objects/chunks/abc/00000001.ts", "file"),
    ("http://127.0.0.1:8333/b/chunks/abc/00000001.ts?sig=1", "http,tcp"),
    ("https://s3.example.com/b/k?sig=1", "https,tls,tcp"),
])
def test_a_live_chunk_is_read_as_mpegts_with_its_storage_protocols_only(
    url: str, protocols: str
) -> None:
    argv = live_chunk_argv("ffmpeg", MediaInput(url, "mpegts"), [R240], Path("/out"),
                           has_audio=True, copy_audio=True, opts=EncodeOptions())
    before_input = argv[:argv.index("-i")]
    assert before_input[-5:] == ["-f", "mpegts", "-protocol_whitelist", protocols, "-copyts"]
    assert values_of(argv, "-i") == [url]


LIVE_FMP4_FLAGS = ("+frag_discont+negative_cts_offsets+empty_moov+delay_moov"
                   "+default_base_moof+skip_sidx+skip_trailer")

EXPECTED_LIVE = [
    "ffmpeg", "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y",
    "-f", "mpegts", "-protocol_whitelist", "file", "-copyts",
    "-i", "/objects/chunks/x/00000007.ts",
    "-filter_complex",
    "[0:v:0]split=2[s0][s1];"
    "[s0]scale=426:240,setsar=1,fps=30,format=yuv420p[v0];"
    "[s1]scale=640:360,setsar=1,fps=30,format=yuv420p[v1]",
    # 240p: one keyframe (a GOP far longer than the chunk), the broadcaster's AAC copied
    "-map", "[v0]",
    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
    "-b:v", "400k", "-maxrate", "428k", "-bufsize", "600k", "-b_strategy", "0",
    "-g", "1800", "-sc_threshold", "0",
    "-map", "0:a:0", "-c:a", "copy", "-bsf:a", "aac_adtstoasc", "-b:a", "96k",
    "-avoid_negative_ts", "disabled",
    "-f", "mp4", "-use_editlist", "0", "-movflags", LIVE_FMP4_FLAGS,
    "-frag_duration", "333333",
    "/out/240p/chunk.mp4",
    # 360p
    "-map", "[v1]",
    "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high",
    "-b:v", "800k", "-maxrate", "856k", "-bufsize", "1200k", "-b_strategy", "0",
    "-g", "1800", "-sc_threshold", "0",
    "-map", "0:a:0", "-c:a", "copy", "-bsf:a", "aac_adtstoasc", "-b:a", "128k",
    "-avoid_negative_ts", "disabled",
    "-f", "mp4", "-use_editlist", "0", "-movflags", LIVE_FMP4_FLAGS,
    "-frag_duration", "333333",
    "/out/360p/chunk.mp4",
]


def test_golden_live_argv() -> None:
    argv = live_chunk_argv("ffmpeg", MediaInput("/objects/chunks/x/00000007.ts", "mpegts"),
                           [R240, R360], Path("/out"), has_audio=True, copy_audio=True,
                           opts=EncodeOptions())
    assert argv == EXPECTED_LIVE


def test_a_live_chunk_whose_audio_does_not_fit_has_it_encoded() -> None:
    argv = live_chunk_argv("ffmpeg", MediaInput("c.ts", "mpegts"), [R240], Path("/out"),
                           has_audio=True, copy_audio=False, opts=EncodeOptions())
    assert values_of(argv, "-c:a") == ["aac"] and "-bsf:a" not in argv
    no_audio = live_chunk_argv("ffmpeg", MediaInput("c.ts", "mpegts"), [R240], Path("/out"),
                               has_audio=False, copy_audio=True, opts=EncodeOptions())
    assert "0:a:0" not in no_audio


@pytest.mark.parametrize(
    ("part_seconds", "fps", "frames"),
    [(0.334, 30.0, 10), (0.334, 25.0, 8), (0.334, 29.97, 10), (0.334, 60.0, 20),
     (0.334, 23.976, 8), (0.5, 30.0, 15), (0.2, 50.0, 10), (1.0, 24.0, 24)],
)
def test_fragments_hold_the_whole_frames_that_fit_in_a_part(
    part_seconds: float, fps: float, frames: int,
) -> None:
    us = fragment_us(part_seconds, fps)
    # The muxer cuts at the first frame at least this long after the fragment's first: the
    # frame after the last that fits, never one before it.
    assert (frames - 1) / fps * 1e6 < us <= frames / fps * 1e6 <= part_seconds * 1e6
    live = live_chunk_argv("ffmpeg", MediaInput("c.ts", "mpegts"),
                           [Rendition("360p", 640, 360, 800, 128, fps)], Path("/out"),
                           has_audio=False, copy_audio=False,
                           opts=EncodeOptions(part_seconds=part_seconds))
    assert values_of(live, "-frag_duration") == [str(us)]


def test_a_part_holds_a_frame_even_when_a_frame_lasts_longer() -> None:
    assert fragment_us(0.334, 2.0) == 500_000
