"""Low-Latency HLS playlists (RFC 8216bis): every tag a live playlist carries, and the
constraints the RFC sets between them, read back with an HLS parser (``m3u8``)."""

import m3u8
import pytest

from chunkcast.domain.playlists import (
    ARRIVAL_MARGIN_S,
    LiveControl,
    PlaylistPart,
    PlaylistSegment,
    RenditionReport,
    render_media,
)

PART_TARGET = 0.334


def parts_of(size: int = 3000, durations: tuple[float, ...] = (0.333, 0.333, 0.334)
             ) -> tuple[PlaylistPart, ...]:
    step = size // len(durations)
    return tuple(PlaylistPart(d, i * step, step, i == 0) for i, d in enumerate(durations))


def seg(msn: int, duration: float = 1.0, *, parts: bool = True) -> PlaylistSegment:
    return PlaylistSegment(msn, duration, f"{msn:08d}.m4s", f"2026-12-01T10:00:{msn:02d}.000Z",
                           parts_of() if parts else ())


def live(*, skip: bool = False, reports: tuple[RenditionReport, ...] = ()) -> LiveControl:
    return LiveControl(PART_TARGET, "next.m4s", reports, skip)


def render(segments: list[PlaylistSegment], control: LiveControl | None = None, *,
           ended: bool = False) -> str:
    return render_media(segments, "init.mp4", ended=ended, vod=False,
                        gap_uri=lambda msn: f"{msn:08d}.m4s",
                        live=control if control is not None else live())


def lines_of(text: str, tag: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"#{tag}")]


def test_a_live_playlist_tells_players_how_to_reach_the_live_edge() -> None:
    text = render([seg(m) for m in range(1, 7)])
    parsed = m3u8.loads(text)
    control = parsed.server_control
    assert control.can_block_reload == "YES"
    assert parsed.target_duration == 1  # the segments' own length, not a configured one
    # RFC 8216bis 4.4.3.8: HOLD-BACK at least three target durations, PART-HOLD-BACK at
    # least two part targets (the issue asks for three), CAN-SKIP-UNTIL at least six
    # target durations.
    assert control.hold_back >= 3 * parsed.target_duration
    assert control.part_hold_back >= 3 * parsed.part_inf.part_target
    assert control.can_skip_until >= 6 * parsed.target_duration
    # A third of the segment and its arrival margin (more than the configured 0.334 s):
    # the next part comes a segment later, and hls.js gives up on a blocking request after
    # three part targets; three of them are also the hold-back.
    assert parsed.part_inf.part_target == 0.5
    assert control.part_hold_back == pytest.approx(1.5)
    assert parsed.media_sequence == 1


def test_parts_are_listed_for_the_last_three_target_durations_only() -> None:
    text = render([seg(m) for m in range(1, 7)])
    parsed = m3u8.loads(text)
    with_parts = [s.uri for s in parsed.segments if s.parts]
    assert with_parts == ["00000004.m4s", "00000005.m4s", "00000006.m4s"]
    for segment in parsed.segments[-3:]:
        # Byte ranges of the segment itself, contiguous, as long as the segment together.
        assert [p.uri for p in segment.parts] == [segment.uri] * 3
        # BYTERANGE is a quoted-string (RFC 8216bis 4.4.4.9).
        assert [p.byterange for p in segment.parts] == ['"1000@0"', '"1000@1000"',
                                                        '"1000@2000"']
        assert sum(p.duration for p in segment.parts) == pytest.approx(segment.duration,
                                                                       abs=1e-3)
        assert all(p.duration <= parsed.part_inf.part_target for p in segment.parts)
        assert [p.independent for p in segment.parts] == ["YES", None, None]


def test_parts_come_before_their_segment_and_the_hint_after_the_last() -> None:
    lines = render([seg(1), seg(2)]).splitlines()
    last_uri = lines.index("00000002.m4s")
    assert lines[last_uri - 1].startswith("#EXTINF:")
    assert all(line.startswith("#EXT-X-PART:") for line in lines[last_uri - 4:last_uri - 1])
    hint = lines[last_uri + 1]
    assert hint == '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="next.m4s",BYTERANGE-START=0'


def test_an_ended_stream_has_no_hint() -> None:
    text = render([seg(1), seg(2)], ended=True)
    assert not lines_of(text, "EXT-X-PRELOAD-HINT") and text.endswith("#EXT-X-ENDLIST\n")


def test_without_parts_there_is_no_part_information() -> None:
    """Segments loaded from the catalogue (an API process that started mid-stream) have no
    parts: the playlist is still a blocking one, with HOLD-BACK for every player."""
    text = render([seg(m, parts=False) for m in range(1, 4)])
    assert not lines_of(text, "EXT-X-PART") and not lines_of(text, "EXT-X-PRELOAD-HINT")
    control = lines_of(text, "EXT-X-SERVER-CONTROL")[0]
    assert "CAN-BLOCK-RELOAD=YES" in control and "PART-HOLD-BACK" not in control


def test_the_part_hold_back_covers_a_whole_segment() -> None:
    """A segment's parts appear together, when its chunk is transcoded: a player holding
    back less than a segment would run dry before the next one."""
    text = render([seg(m, 2.0) for m in range(1, 5)])
    parsed = m3u8.loads(text)
    assert parsed.server_control.part_hold_back >= 2.0 + ARRIVAL_MARGIN_S
    assert parsed.target_duration == 2


def test_rendition_reports_name_the_other_renditions() -> None:
    reports = (RenditionReport("../240p/index.m3u8", 6, 2),
               RenditionReport("../720p/index.m3u8", 5, None))
    text = render([seg(m) for m in range(1, 7)], live(reports=reports))
    parsed = m3u8.loads(text)
    assert [(r.uri, r.last_msn, r.last_part) for r in parsed.rendition_reports] == [
        ("../240p/index.m3u8", 6, 2), ("../720p/index.m3u8", 5, None)]


def test_a_delta_update_skips_what_is_older_than_can_skip_until() -> None:
    segments = [seg(m) for m in range(1, 11)]
    full = m3u8.loads(render(segments))
    delta_text = render(segments, live(skip=True))
    delta = m3u8.loads(delta_text)
    # Ten 1 s segments, CAN-SKIP-UNTIL 6 s: the first four start more than 6 s before the
    # end and are left out; the sequence still counts from the first.
    assert delta.skip.skipped_segments == 4
    assert lines_of(delta_text, "EXT-X-VERSION") == ["#EXT-X-VERSION:9"]
    assert delta.media_sequence == full.media_sequence == 1
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments][4:]
    assert lines_of(delta_text, "EXT-X-PROGRAM-DATE-TIME")[0].endswith("10:00:05.000Z")


def test_a_delta_update_counts_gaps_as_segments() -> None:
    segments = [seg(m) for m in [1, 2, 4, 5, 6, 7, 8, 9, 10]]
    text = render(segments, live(skip=True))
    assert lines_of(text, "EXT-X-SKIP") == ["#EXT-X-SKIP:SKIPPED-SEGMENTS=4"]
    assert "00000005.m4s" in text.splitlines() and "00000004.m4s" not in text.splitlines()


def test_a_short_playlist_has_nothing_to_skip() -> None:
    text = render([seg(m) for m in range(1, 7)], live(skip=True))
    assert not lines_of(text, "EXT-X-SKIP") and lines_of(text, "EXT-X-VERSION") == [
        "#EXT-X-VERSION:7"]


def test_vod_playlists_carry_no_live_tags() -> None:
    text = render_media([seg(m) for m in range(1, 4)], "init.mp4", ended=True, vod=True)
    for tag in ("EXT-X-SERVER-CONTROL", "EXT-X-PART", "EXT-X-PRELOAD-HINT",
                "EXT-X-RENDITION-REPORT", "EXT-X-SKIP"):
        assert not lines_of(text, tag), tag
