"""Probing a source with PyAV: container, duration, picture size as displayed, frame rate,
audio. Uploads and live chunks are opened only as an allowed container and with only the
protocols their storage needs (see :mod:`chunkcast.media.inputs`); a declared duration is
checked against where the pictures really end."""

import logging
from typing import Any

import anyio
import av

from chunkcast.domain.errors import MediaError
from chunkcast.media.inputs import SOURCE_FORMAT_NAMES, forced_format, protocols_for
from chunkcast.ports.media import SourceInfo

log = logging.getLogger(__name__)

# A declared duration may exceed where the pictures end by this much (a last frame's length,
# audio running on, rounding); beyond it the file is truncated, damaged or lying.
END_TOLERANCE_S = 2.0
END_TOLERANCE_SHARE = 0.05
# How far before the declared end the check starts, and how many packets it reads at most.
END_CHECK_BACK_S = 3.0
END_CHECK_PACKETS = 3000


async def probe(url: str, *, container: str | None = None, trusted: bool = False
                ) -> SourceInfo:
    """Probe ``url`` (a path, or an HTTP URL for remote storage) in a worker thread.

    ``container`` forces a demuxer (a live chunk is MPEG-TS); otherwise the container must be
    one of the allowed upload formats. Only the protocols of ``url`` itself are allowed.
    ``trusted`` (a broadcaster's own input on its own machine) lifts both limits."""
    return await anyio.to_thread.run_sync(_probe, url, container, trusted)


def _open(url: str, container: str | None, trusted: bool) -> Any:
    if trusted:
        return av.open(url, timeout=30)
    options = {"protocol_whitelist": protocols_for(url)}
    if container is None:
        options["format_whitelist"] = SOURCE_FORMAT_NAMES
    return av.open(url, format=container, timeout=30, container_options=options)


def _probe(url: str, forced: str | None, trusted: bool) -> SourceInfo:
    try:
        container = _open(url, forced, trusted)
    except (av.FFmpegError, OSError) as exc:
        # The detail (it may name a path or a URL) goes to the log, not to the public error.
        log.info("probe refused an input: %s", exc)
        raise MediaError(
            "not a readable video file: it is not a video in a supported container, "
            "or it is incomplete") from exc
    with container:
        name = forced or forced_format(container.format.name)
        if name is None and not trusted:
            raise MediaError("not a readable video file: its container is not supported")
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
        if duration <= 0 and forced is None:
            raise MediaError("could not determine the duration of the video")
        if forced is None and not trusted:
            _check_end(container, video, duration)
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
            container=name or container.format.name,
        )


def _first_frame_rotation(container: Any, video: Any) -> int:
    """Decode the first frame: proves the stream decodes, and carries the display matrix."""
    try:
        for frame in container.decode(video):
            return round(frame.rotation or 0) % 360
    except (av.FFmpegError, OSError) as exc:
        log.info("probe: decoding the first frame failed: %s", exc)
        raise MediaError("the video stream cannot be decoded") from exc
    raise MediaError("the video stream has no frames (truncated or empty)")


def _duration(container: Any, video: Any) -> float:
    if video.duration is not None and video.time_base is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:
        return float(container.duration) / av.time_base
    return 0.0


def _check_end(container: Any, video: Any, declared: float) -> None:
    """Refuse a file whose pictures end well before the duration it declares: a header can
    claim millions of hours in a few kilobytes, and the splitter plans chunks from it. Seeks
    to just before the declared end and reads on to the real end of the video stream."""
    tolerance = max(END_TOLERANCE_S, declared * END_TOLERANCE_SHARE)
    time_base = video.time_base
    end: float | None = None
    try:
        target = max(0.0, declared - END_CHECK_BACK_S)
        container.seek(int(target / time_base), stream=video, backward=True)
        for count, packet in enumerate(container.demux(video)):
            if packet.pts is not None:
                length = packet.duration or 0
                end = max(end or 0.0, float((packet.pts + length) * time_base))
            if count >= END_CHECK_PACKETS:
                return  # pictures go on near the declared end: plausible
    except (av.FFmpegError, OSError) as exc:
        log.info("probe: reading near the declared end failed: %s", exc)
    start = float(video.start_time * time_base) if video.start_time is not None else 0.0
    if end is None or end - start < declared - tolerance:
        found = f"{max(0.0, (end or start) - start):.1f} s" if end is not None else "nowhere"
        raise MediaError(f"the file says it lasts {declared:.1f} s but its pictures end "
                         f"at {found}: it is truncated, damaged or forged")
