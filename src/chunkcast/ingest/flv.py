"""FLV framing of RTMP media messages (what ffmpeg's flv demuxer reads on the chunk cutter's
stdin) and what a message's first bytes say about its media."""

from dataclasses import dataclass

AUDIO, VIDEO = 8, 9
# "FLV", version 1, audio and video present, header length 9, then PreviousTagSize0.
HEADER = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"

_AVC = 7  # FLV video codec id of H.264
_AAC = 10  # FLV sound format of AAC
_EX_HEADER = 0x80  # Enhanced RTMP (HEVC, AV1, VP9): a FourCC follows instead of a codec id
_KEYFRAME = 1


def tag(kind: int, timestamp_ms: int, payload: bytes) -> bytes:
    """One FLV tag and the PreviousTagSize after it."""
    ts = timestamp_ms & 0xFFFFFFFF
    size = len(payload)
    head = (bytes((kind,)) + size.to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
            + bytes((ts >> 24,)) + b"\x00\x00\x00")
    return head + payload + (11 + size).to_bytes(4, "big")


@dataclass(frozen=True)
class VideoTag:
    keyframe: bool
    codec_ok: bool  # H.264 (what the platform takes over RTMP)
    config: bool  # the decoder configuration (sequence header), not a picture


def video_tag(payload: bytes) -> VideoTag:
    """What an RTMP video message holds (an empty one is a non-H.264 inter frame)."""
    if not payload:
        return VideoTag(keyframe=False, codec_ok=False, config=False)
    first = payload[0]
    keyframe = (first >> 4 & 0x7) == _KEYFRAME
    if first & _EX_HEADER:
        return VideoTag(keyframe=keyframe, codec_ok=False, config=False)
    avc = first & 0x0F == _AVC
    return VideoTag(keyframe=keyframe, codec_ok=avc,
                    config=avc and len(payload) > 1 and payload[1] == 0)


def audio_codec_ok(payload: bytes) -> bool:
    """AAC (what the platform takes over RTMP)."""
    return bool(payload) and payload[0] >> 4 == _AAC
