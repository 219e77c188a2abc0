"""Playlists and playback URLs: rendered from the catalogue, and written as static files
when a video is complete."""

from collections.abc import Callable, Sequence
from typing import Protocol

from chunkcast.domain import keys
from chunkcast.domain.errors import NotFound
from chunkcast.domain.ids import check_rendition
from chunkcast.domain.playlists import PlaylistSegment, Variant, render_master, render_media
from chunkcast.domain.videos import RenditionInfo, Segment, Video, VideoKind, VideoStatus
from chunkcast.ports.repository import VideoRepository
from chunkcast.ports.storage import ObjectStore

DEFAULT_CODECS = "avc1.640028"


class SegmentSource(Protocol):
    async def segments(self, video_id: str, rendition: str) -> Sequence[Segment]:
        """A rendition's segments in seq order, as this process knows them."""


def media_url(base_url: str, key: str) -> str:
    """Public URL of an object key: ``{CDN or API}/media/{key}``."""
    return f"{base_url}/media/{key}"


def _variants(
    renditions: Sequence[RenditionInfo], uri: Callable[[str], str], has_audio: bool
) -> list[Variant]:
    out = []
    for info in renditions:
        r = info.rendition
        codecs = info.codecs or (DEFAULT_CODECS + (",mp4a.40.2" if has_audio else ""))
        audio = r.audio_kbps * 1000 if has_audio else 0
        out.append(Variant(
            uri=uri(r.name), bandwidth=int(r.video_kbps * 1070) + audio,
            average_bandwidth=r.video_kbps * 1000 + audio, width=r.width, height=r.height,
            codecs=codecs, frame_rate=r.fps,
        ))
    return out


def _media(segments: Sequence[Segment], init_uri: str, uri: Callable[[Segment], str],
           *, ended: bool, vod: bool, target: float, event: bool = False) -> str:
    items = [PlaylistSegment(s.seq, s.duration, uri(s), s.captured_at) for s in segments]
    return render_media(items, init_uri, ended=ended, vod=vod, target_duration=target,
                        event=event)


class Playback:
    def __init__(self, repo: VideoRepository, store: ObjectStore, base_url: str,
                 public_url: str, segment_seconds: int, *, live_window: int = 6) -> None:
        self._repo = repo
        self._store = store
        self._base = base_url
        self._public = public_url.rstrip("/")
        self._target = float(segment_seconds)
        self._window = live_window
        self.live: SegmentSource | None = None  # the API process's live feed, when it has one

    def urls(self, video_id: str) -> dict[str, str]:
        """The ``playback`` block of the video resource."""
        return {
            "hls": f"{self._base}/play/{video_id}/master.m3u8",
            "ws": self._public.replace("http", "ws", 1) + f"/ws/{video_id}",
            "watch": f"{self._public}/watch/{video_id}",
        }

    async def _playable(self, video_id: str) -> Video:
        video = await self._repo.get_video(video_id)
        if video is None:
            raise NotFound("no such video")
        if video.status not in (VideoStatus.READY, VideoStatus.LIVE, VideoStatus.ENDED):
            raise NotFound(f"video is not playable yet (status {video.status.value})")
        return video

    async def master(self, video_id: str) -> str:
        video = await self._playable(video_id)
        renditions = await self._repo.renditions(video_id)
        return render_master(_variants(renditions, lambda name: f"{name}/index.m3u8",
                                       bool(video.has_audio)))

    async def media(self, video_id: str, rendition: str, *, dvr: bool = False
                    ) -> tuple[str, bool]:
        """The media playlist and whether it can still change (a live stream's does).

        Live: a sliding window of the latest segments, or with ``dvr`` everything so far;
        served from the process's live feed (fed by events) rather than the database."""
        video = await self._playable(video_id)
        check_rendition(rendition)
        live = video.kind is VideoKind.LIVE
        source = self.live if live and self.live is not None else self._repo
        segments = await source.segments(video_id, rendition)
        if not segments:
            raise NotFound("no such rendition, or no segment yet")
        init = media_url(self._base, keys.init_segment(video_id, rendition))
        growing = video.status is VideoStatus.LIVE
        if growing and not dvr:
            segments = segments[-self._window:]
        text = _media(segments, init, lambda s: media_url(self._base, s.key),
                      ended=not growing, vod=not live, event=growing and dvr,
                      target=self._target)
        return text, growing

    async def write_static(self, video: Video) -> None:
        """Write ``master.m3u8`` and each ``{rendition}/index.m3u8`` next to the segments,
        with relative URIs, so the media folder plays from any plain web server or CDN."""
        renditions = await self._repo.renditions(video.id)
        for info in renditions:
            name = info.rendition.name
            segments = await self._repo.segments(video.id, name)
            if not segments:
                continue
            text = _media(segments, "init.mp4", lambda s: s.key.rsplit("/", 1)[1], ended=True,
                          vod=True, target=self._target)
            await self._store.put_bytes(keys.media_playlist(video.id, name), text.encode())
        master = render_master(_variants(renditions, lambda name: f"{name}/index.m3u8",
                                         bool(video.has_audio)))
        await self._store.put_bytes(keys.master_playlist(video.id), master.encode())
