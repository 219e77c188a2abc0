"""Bus events survive a JSON round trip."""

import json

import pytest

from chunkcast.domain import events
from chunkcast.domain.events import (
    EVENT_TYPES,
    AudienceReported,
    ChunkUploaded,
    Event,
    IngestReported,
    SegmentReady,
    SourceUploaded,
    VideoPrivacyChanged,
    VideoStatusChanged,
    decode,
    encode,
)
from chunkcast.domain.videos import Part

VID = "abcdefghijklmnop"

EXAMPLES: list[Event] = [
    SourceUploaded(VID, f"sources/{VID}/source"),
    ChunkUploaded(VID, "vod", 3, f"sources/{VID}/source", 6.0, 2.0),
    ChunkUploaded(VID, "live", 0, f"chunks/{VID}/00000000.ts", 12.48, 1.0,
                  captured_at="2024-05-01T12:00:00.000Z"),
    SegmentReady(VID, "720p", 3, f"media/{VID}/720p/00000003.m4s", f"media/{VID}/720p/init.mp4",
                 6.0, 2.0, None, "2024-05-01T12:00:01.250Z"),
    SegmentReady(VID, "240p", 9, f"media/{VID}/240p/00000009.m4s", f"media/{VID}/240p/init.mp4",
                 18.018, 1.966667, "2024-05-01T12:00:00.000Z", "2024-05-01T12:00:02.000Z"),
    VideoStatusChanged(VID, "ready"),
    VideoStatusChanged(VID, "failed", "the file is not a video"),
    VideoPrivacyChanged(VID, True),
    AudienceReported("api-host-4242", {VID: 12, "bcdefghijklmnopq": 1}, "2024-05-01T12:00:00.000Z"),
    AudienceReported("api-host-4242", {}, "2024-05-01T12:00:03.000Z", 0.5, leaving=True),
    IngestReported("ingest-host-77", {VID: {
        "protocol": "rtmp", "bitrate_kbps": 4500.2, "keyframe_interval_s": 2.0,
        "keyframe_warning": None, "chunks_cut": 31, "chunks_skipped": 0,
        "connected_at": "2024-05-01T11:59:30.000Z"}}, "2024-05-01T12:00:00.000Z"),
    IngestReported("ingest-host-77", {}, "2024-05-01T12:00:03.000Z", leaving=True),
]


def test_examples_cover_every_event_type() -> None:
    assert {type(e) for e in EXAMPLES} == set(EVENT_TYPES.values())


def test_every_event_type_has_a_topic() -> None:
    on_topics = {cls for classes in events.TOPIC_EVENTS.values() for cls in classes}
    assert on_topics == set(EVENT_TYPES.values())


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(event: Event) -> None:
    text = encode(event)
    assert "\n" not in text
    back = decode(text)
    assert type(back) is type(event)
    assert back == event
    assert decode(text.encode()) == event


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_encoded_body_names_type_and_version(event: Event) -> None:
    body = json.loads(encode(event))
    assert body["type"] == event.type
    assert body["v"] == events.SCHEMA_VERSION


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_unknown_fields_are_ignored(event: Event) -> None:
    body = json.loads(encode(event))
    body["added_in_a_later_version"] = {"nested": [1, 2]}
    body["priority"] = 5
    assert decode(json.dumps(body)) == event


def test_optional_fields_may_be_missing() -> None:
    body = {"type": "video.status", "v": 1, "video_id": VID, "status": "processing"}
    assert decode(json.dumps(body)) == VideoStatusChanged(VID, "processing")


def test_segment_parts_survive_the_round_trip() -> None:
    parts = (Part(0, 900, 0.333, True), Part(900, 700, 0.333, False),
             Part(1600, 650, 0.334, False))
    event = events.SegmentReady("v1", "360p", 4, "k", "i", 4.0, 1.0, None, "t", parts)
    assert events.decode(events.encode(event)) == event
    old = events.SegmentReady("v1", "360p", 4, "k", "i", 4.0, 1.0, None, "t")
    decoded = events.decode(events.encode(old))
    assert isinstance(decoded, SegmentReady) and decoded.parts == ()


def test_an_audience_report_needs_only_its_process_counts_and_time() -> None:
    body = {"type": "audience.reported", "v": 1, "process": "api-1", "counts": {VID: 3},
            "at": "2024-05-01T12:00:00.000Z"}
    report = decode(json.dumps(body))
    assert report == AudienceReported("api-1", {VID: 3}, "2024-05-01T12:00:00.000Z")
    assert isinstance(report, AudienceReported) and report.every_s == 1.0
    assert not report.leaving
