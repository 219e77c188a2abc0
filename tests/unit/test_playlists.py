"""HLS playlist rendering (RFC 8216)."""

import pytest

from chunkcast.domain.playlists import PlaylistSegment, Variant, render_master, render_media


def seg(seq: int, duration: float = 2.0, pdt: str | None = None) -> PlaylistSegment:
    return PlaylistSegment(seq, duration, f"{seq:08d}.m4s", pdt)


def tag_values(text: str, tag: str) -> list[str]:
    prefix = f"#{tag}:"
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def test_master_playlist_golden() -> None:
    variants = [
        Variant("720p/index.m3u8", 3100000, 2900000, 1280, 720, "avc1.64001f,mp4a.40.2", 30.0),
        Variant("240p/index.m3u8", 520000, 480000, 426, 240, "avc1.640015,mp4a.40.2", 29.97),
    ]
    assert render_master(variants) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=520000,AVERAGE-BANDWIDTH=480000,RESOLUTION=426x240,"
        'FRAME-RATE=29.970,CODECS="avc1.640015,mp4a.40.2"\n'
        "240p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=3100000,AVERAGE-BANDWIDTH=2900000,RESOLUTION=1280x720,"
        'FRAME-RATE=30.000,CODECS="avc1.64001f,mp4a.40.2"\n'
        "720p/index.m3u8\n"
    )


def test_master_lists_variants_by_bandwidth() -> None:
    variants = [
        Variant(f"{h}p/index.m3u8", bw, bw, h * 16 // 9, h, "avc1.64001f", 30.0)
        for h, bw in [(720, 3000), (240, 500), (1080, 5400), (480, 1500), (360, 900)]
    ]
    text = render_master(variants)
    assert tag_values(text, "EXT-X-STREAM-INF")[0].startswith("BANDWIDTH=500,")
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris == ["240p/index.m3u8", "360p/index.m3u8", "480p/index.m3u8",
                    "720p/index.m3u8", "1080p/index.m3u8"]


def test_master_video_only_codecs() -> None:
    text = render_master([Variant("a.m3u8", 1, 1, 2, 2, "avc1.42c01e", 25.0)])
    assert tag_values(text, "EXT-X-STREAM-INF") == [
        'BANDWIDTH=1,AVERAGE-BANDWIDTH=1,RESOLUTION=2x2,FRAME-RATE=25.000,CODECS="avc1.42c01e"'
    ]


def test_media_playlist_golden() -> None:
    text = render_media([seg(3), seg(4), seg(5, 1.48)], "init.mp4", ended=True, vod=True)
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
        '#EXT-X-MAP:URI="init.mp4"\n'
        "#EXTINF:2.000000,\n"
        "00000003.m4s\n"
        "#EXTINF:2.000000,\n"
        "00000004.m4s\n"
        "#EXTINF:1.480000,\n"
        "00000005.m4s\n"
        "#EXT-X-ENDLIST\n"
    )


def test_extinf_is_exact_to_six_decimals() -> None:
    durations = [2.0, 1.966667, 2.033333, 0.5, 10.2, 1.0000004]
    text = render_media([seg(i, d) for i, d in enumerate(durations)], "init.mp4",
                        ended=False, vod=False)
    assert tag_values(text, "EXTINF") == ["2.000000,", "1.966667,", "2.033333,", "0.500000,",
                                          "10.200000,", "1.000000,"]


@pytest.mark.parametrize(
    ("durations", "target"),
    [([2.0, 2.0, 1.5], 2), ([2.0, 2.5, 1.0], 3), ([1.2], 1), ([4.0, 3.9], 4), ([2.01], 2),
     ([0.3], 1), ([6.006, 6.006], 6), ([1.0, 1.033333, 0.966667], 1), ([1.5], 2)],
)
def test_target_duration_is_the_longest_rounded_to_the_nearest_integer(
    durations: list[float], target: int
) -> None:
    text = render_media([seg(i, d) for i, d in enumerate(durations)], "init.mp4",
                        ended=True, vod=True)
    assert tag_values(text, "EXT-X-TARGETDURATION") == [str(target)]
    # RFC 8216 section 4.3.3.1: each EXTINF rounded to the nearest integer is at most it.
    assert all(round(d + 1e-9) <= target for d in durations)


def test_declared_target_duration_is_kept_when_longer() -> None:
    text = render_media([seg(0, 1.0)], "init.mp4", ended=False, vod=False, target_duration=2)
    assert tag_values(text, "EXT-X-TARGETDURATION") == ["2"]


def test_empty_live_playlist() -> None:
    text = render_media([], "init.mp4", ended=False, vod=False, target_duration=2)
    assert tag_values(text, "EXT-X-TARGETDURATION") == ["2"]
    assert tag_values(text, "EXT-X-MEDIA-SEQUENCE") == ["0"]
    assert tag_values(text, "EXTINF") == []
    assert "#EXT-X-ENDLIST" not in text


@pytest.mark.parametrize("first", [0, 1, 17, 99_999_999])
def test_media_sequence_is_the_first_seq(first: int) -> None:
    text = render_media([seg(first), seg(first + 1)], "init.mp4", ended=False, vod=False)
    assert tag_values(text, "EXT-X-MEDIA-SEQUENCE") == [str(first)]


@pytest.mark.parametrize(("ended", "vod"), [(False, False), (True, False), (False, True),
                                            (True, True)])
def test_endlist_and_playlist_type(ended: bool, vod: bool) -> None:
    text = render_media([seg(0), seg(1)], "init.mp4", ended=ended, vod=vod)
    lines = text.splitlines()
    assert ("#EXT-X-ENDLIST" in lines) == ended
    assert (lines[-1] == "#EXT-X-ENDLIST") == ended
    assert tag_values(text, "EXT-X-PLAYLIST-TYPE") == (["VOD"] if vod else [])


def test_map_names_the_init_segment_before_the_first_segment() -> None:
    text = render_media([seg(0)], "/media/abcdefghijklmnop/720p/init.mp4", ended=True, vod=True)
    lines = text.splitlines()
    map_line = '#EXT-X-MAP:URI="/media/abcdefghijklmnop/720p/init.mp4"'
    assert lines.count(map_line) == 1
    assert lines.index(map_line) < lines.index("#EXTINF:2.000000,")


def test_discontinuity_on_a_gap_in_seq() -> None:
    text = render_media([seg(0), seg(1), seg(3), seg(4), seg(7)], "init.mp4",
                        ended=False, vod=False)
    lines = text.splitlines()
    assert lines.count("#EXT-X-DISCONTINUITY") == 2
    for uri in ("00000003.m4s", "00000007.m4s"):
        at = lines.index(uri)
        assert lines[at - 2 : at] == ["#EXT-X-DISCONTINUITY", "#EXTINF:2.000000,"]


def test_a_hole_keeps_its_place_in_the_media_sequence_as_gaps() -> None:
    text = render_media([seg(4), seg(5), seg(8)], "init.mp4", ended=False, vod=False,
                        gap_uri=lambda seq: f"{seq:08d}.m4s")
    lines = text.splitlines()
    assert "#EXT-X-VERSION:8" in lines and "#EXT-X-MEDIA-SEQUENCE:4" in lines
    assert "#EXT-X-DISCONTINUITY" not in lines
    entries = [line for line in lines if line.endswith(".m4s")]
    assert entries == [f"{seq:08d}.m4s" for seq in range(4, 9)]
    for seq in (6, 7):
        at = lines.index(f"{seq:08d}.m4s")
        assert lines[at - 2 : at] == ["#EXT-X-GAP", "#EXTINF:2.000000,"]
    assert "#EXT-X-GAP" not in render_media([seg(4), seg(5)], "init.mp4", ended=False,
                                            vod=False, gap_uri=str)


def test_no_discontinuity_without_a_gap() -> None:
    text = render_media([seg(i) for i in range(5, 10)], "init.mp4", ended=True, vod=True)
    assert "#EXT-X-DISCONTINUITY" not in text


def test_program_date_time_when_given() -> None:
    segments = [seg(0, pdt="2024-05-01T12:00:00.000Z"), seg(1),
                seg(2, pdt="2024-05-01T12:00:04.000Z")]
    lines = render_media(segments, "init.mp4", ended=False, vod=False).splitlines()
    assert [line for line in lines if line.startswith("#EXT-X-PROGRAM-DATE-TIME")] == [
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.000Z",
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:04.000Z",
    ]
    at = lines.index("00000002.m4s")
    assert lines[at - 2] == "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:04.000Z"


def test_no_program_date_time_when_absent() -> None:
    text = render_media([seg(0), seg(1)], "init.mp4", ended=True, vod=True)
    assert "PROGRAM-DATE-TIME" not in text


def test_discontinuity_comes_before_program_date_time() -> None:
    lines = render_media([seg(0), seg(2, pdt="2024-05-01T12:00:04.000Z")], "init.mp4",
                         ended=False, vod=False).splitlines()
    at = lines.index("00000002.m4s")
    assert lines[at - 3 : at] == ["#EXT-X-DISCONTINUITY",
                                  "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:04.000Z",
                                  "#EXTINF:2.000000,"]
