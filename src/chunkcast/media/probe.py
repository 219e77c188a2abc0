"""Probing a source with PyAV: duration, picture size as displayed, frame rate, audio."""

from dataclasses import dataclass
from typing import Any

import anyio
import av

from chunkcast.domain.errors import MediaError


@dataclass(frozen=True)
class SourceInfo:
    duration: float
    width: int  # as displayed: rotation applied
    height: int
    fps: float
    rotation: int
    has_audio: bool
    audio_channels: int
    audio_codec: str = ""
    audio_rate: int = 0

    @property
    def audio_passthrough(self) -> bool:
        """Audio already in the delivery format (AAC-LC, 48 kHz, at most stereo) is copied:
        chunks then join without the priming overlap a fresh AAC encode puts at each start."""
        return (self.has_audio and self.audio_codec == "aac" and self.audio_rate == 48000
                and 0 < self.audio_channels <= 2)


async def probe(url: str) -> SourceInfo:
    """Probe ``url`` (a path, or an HTTP URL for remote storage) in a worker thread."""
    return await anyio.to_thread.run_sync(_probe, url)


def _probe(url: str) -> SourceInfo:
    try:
        container = av.open(url, timeout=30)
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(
            f"not a readable video file: it is not a video, or it is incomplete ({_reason(exc)})"
        ) from exc
    with container:
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        video = container.streams.video[0]
        rotation = _first_frame_rotation(container, video)
        width, height = video.codec_context.width, video.codec_context.height
        if not width or not height:
            raise MediaError("the video stream has no picture size")
        if rotation % 180:
            width, height = height, width
        duration = _duration(container, video)
        if duration <= 0:
            raise MediaError("could not determine the duration of the video")
        rate = video.average_rate or video.guessed_rate
        audio = container.streams.audio[0] if container.streams.audio else None
        return SourceInfo(
            duration=duration,
            width=width,
            height=height,
            fps=float(rate) if rate else 30.0,
            rotation=rotation,
            has_audio=audio is not None,
            audio_channels=audio.codec_context.channels if audio is not None else 0,
            audio_codec=audio.codec_context.name if audio is not None else "",
            audio_rate=audio.codec_context.sample_rate or 0 if audio is not None else 0,
        )


def _first_frame_rotation(container: Any, video: Any) -> int:
    """Decode the first frame: proves the stream decodes, and carries the display matrix."""
    try:
        for frame in container.decode(video):
            return round(frame.rotation or 0) % 360
    except (av.FFmpegError, OSError) as exc:
        raise MediaError(f"the video stream cannot be decoded ({_reason(exc)})") from exc
    raise MediaError("the video stream has no frames (truncated or empty)")


def _duration(container: Any, video: Any) -> float:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return float(container.duration) / av.time_base
    return 0.0


def _reason(exc: BaseException) -> str:
    text = str(exc)
    # PyAV errors read "[Errno 1094995529] Invalid data found when processing input: 'path'".
    if "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(": '", 1)[0].strip() or type(exc).__name__
