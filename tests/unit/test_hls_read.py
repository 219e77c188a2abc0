"""Reading the media playlist ffmpeg writes next to its segments."""

from pathlib import Path

from chunkcast.media.hls import WrittenSegment, read_written_segments

FFMPEG_PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:5
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXTINF:2.000000,
00000005.m4s
#EXTINF:2.000000,
00000006.m4s
#EXTINF:1.466667,
00000007.m4s
#EXT-X-ENDLIST
"""


def test_segments_in_order_with_exact_durations(tmp_path: Path) -> None:
    playlist = tmp_path / "720p" / "index.m3u8"
    playlist.parent.mkdir()
    playlist.write_text(FFMPEG_PLAYLIST)
    assert read_written_segments(playlist) == [
        WrittenSegment(tmp_path / "720p" / "00000005.m4s", 2.0),
        WrittenSegment(tmp_path / "720p" / "00000006.m4s", 2.0),
        WrittenSegment(tmp_path / "720p" / "00000007.m4s", 1.466667),
    ]


def test_missing_playlist_means_nothing_written(tmp_path: Path) -> None:
    assert read_written_segments(tmp_path / "absent" / "index.m3u8") == []


def test_playlist_without_segments(tmp_path: Path) -> None:
    playlist = tmp_path / "index.m3u8"
    playlist.write_text("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n")
    assert read_written_segments(playlist) == []


def test_crlf_blank_lines_titles_and_integer_durations(tmp_path: Path) -> None:
    playlist = tmp_path / "index.m3u8"
    playlist.write_bytes(
        b"#EXTM3U\r\n#EXT-X-MAP:URI=\"init.mp4\"\r\n\r\n"
        b"#EXTINF:2,\r\n00000000.m4s\r\n"
        b"#EXTINF:1.5,a title\r\n\r\n00000001.m4s\r\n"
        b"#EXT-X-ENDLIST\r\n"
    )
    assert read_written_segments(playlist) == [
        WrittenSegment(tmp_path / "00000000.m4s", 2.0),
        WrittenSegment(tmp_path / "00000001.m4s", 1.5),
    ]
