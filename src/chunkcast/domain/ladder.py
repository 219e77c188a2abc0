"""The bitrate ladder: which renditions a source gets, and which worker group encodes them."""

import math
from dataclasses import dataclass

from chunkcast.domain.errors import InvalidInput


@dataclass(frozen=True)
class Rung:
    """One step of the ladder: ``height`` is the short side (``720`` for 1280x720 or 720x1280)."""

    name: str
    height: int
    video_kbps: int
    audio_kbps: int


DEFAULT_RUNGS: tuple[Rung, ...] = (
    Rung("240p", 240, 400, 96),
    Rung("360p", 360, 800, 128),
    Rung("480p", 480, 1400, 128),
    Rung("720p", 720, 2800, 128),
    Rung("1080p", 1080, 5000, 128),
)
RUNGS_BY_NAME = {r.name: r for r in DEFAULT_RUNGS}
MAX_FPS = 60.0
MIN_SIDE = 16

# The bitrate model, in one place: the encoder's peak (maxrate) and buffer are these factors
# of the target rate, and a playlist's BANDWIDTH is the peak plus the audio.
MAXRATE_FACTOR = 1.07
BUFSIZE_FACTOR = 1.5
# What players are told before a rendition's init segment is read: H.264 High at level 4.0
# (what the encoder makes, at the highest level the ladder needs), AAC-LC.
FALLBACK_VIDEO_CODEC = "avc1.640028"
AAC_CODEC = "mp4a.40.2"


def fallback_codecs(has_audio: bool) -> str:
    """The CODECS string of a rendition whose init segment has not been read yet."""
    return FALLBACK_VIDEO_CODEC + (f",{AAC_CODEC}" if has_audio else "")


@dataclass(frozen=True)
class Rendition:
    """A rendition chosen for one video: exact output size, rates and frame rate."""

    name: str
    width: int
    height: int
    video_kbps: int
    audio_kbps: int
    fps: float

    @property
    def maxrate_kbps(self) -> int:
        return round(self.video_kbps * MAXRATE_FACTOR)

    @property
    def bufsize_kbps(self) -> int:
        return round(self.video_kbps * BUFSIZE_FACTOR)

    def bandwidth(self, has_audio: bool) -> int:
        """Peak bits per second, for a playlist's BANDWIDTH."""
        return round(self.video_kbps * 1000 * MAXRATE_FACTOR) + self.audio_bps(has_audio)

    def average_bandwidth(self, has_audio: bool) -> int:
        return self.video_kbps * 1000 + self.audio_bps(has_audio)

    def audio_bps(self, has_audio: bool) -> int:
        return self.audio_kbps * 1000 if has_audio else 0


def _even(value: float, limit: int) -> int:
    """``value`` rounded to an even number of pixels, never above ``limit`` (no upscaling)."""
    return max(2, min(round(value / 2) * 2, limit // 2 * 2))


def choose_ladder(
    width: int, height: int, fps: float, rungs: tuple[Rung, ...] = DEFAULT_RUNGS
) -> list[Rendition]:
    """Renditions for a source of display size ``width``x``height`` (rotation applied).

    Never upscales: a rung taller than the source's short side is skipped. A source smaller
    than the lowest rung still gets one rendition, at its own size.
    """
    if min(width, height) < MIN_SIDE:
        raise InvalidInput(f"the picture is too small ({width}x{height})")
    out_fps = min(fps, MAX_FPS) if fps > 0 and math.isfinite(fps) else 30.0
    short, long_ = min(width, height), max(width, height)
    portrait = height > width
    chosen: list[Rendition] = []
    for rung in sorted(rungs, key=lambda r: r.height):
        if rung.height > short:
            continue
        w, h = _even(long_ * rung.height / short, long_), _even(rung.height, short)
        chosen.append(_rendition(rung.name, rung, w, h, portrait, out_fps))
    if not chosen:
        lowest = min(rungs, key=lambda r: r.height)
        h = _even(short, short)
        chosen.append(_rendition(f"{h}p", lowest, _even(long_ * h / short, long_), h,
                                 portrait, out_fps))
    return chosen


def _rendition(name: str, rung: Rung, w: int, h: int, portrait: bool, fps: float) -> Rendition:
    if portrait:
        w, h = h, w
    return Rendition(name, w, h, rung.video_kbps, rung.audio_kbps, round(fps, 3))


def parse_groups(spec: str) -> dict[str, tuple[str, ...]]:
    """Parse ``"hi=720p,1080p;lo=240p,360p,480p"`` into ``{group: rung names}``."""
    groups: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, names = part.partition("=")
        if name.strip() in groups:
            raise InvalidInput(f"rendition group {name.strip()!r} is named twice")
        rungs = tuple(filter(None, (n.strip() for n in names.split(","))))
        if not sep or not name.strip().isidentifier() or not rungs:
            raise InvalidInput(f"bad rendition group {part!r}: expected name=240p,360p")
        unknown = [r for r in rungs if r not in RUNGS_BY_NAME]
        if unknown:
            raise InvalidInput(f"unknown rungs in group {name!r}: {', '.join(unknown)}")
        groups[name.strip()] = rungs
    if not groups:
        raise InvalidInput("no rendition groups configured")
    seen = [r for rungs in groups.values() for r in rungs]
    if len(seen) != len(set(seen)):
        raise InvalidInput("a rung belongs to more than one rendition group")
    return groups


def renditions_for_group(
    renditions: list[Rendition], groups: dict[str, tuple[str, ...]], group: str
) -> list[Rendition]:
    """The renditions of one video that worker group ``group`` encodes.

    A below-ladder rendition (a tiny source) belongs to the group holding the lowest rung.
    """
    names = set(groups[group])
    lowest_owner = min(groups, key=lambda g: min(RUNGS_BY_NAME[r].height for r in groups[g]))
    return [
        r for r in renditions
        if r.name in names or (r.name not in RUNGS_BY_NAME and group == lowest_owner)
    ]


def busy_groups(renditions: list[Rendition], groups: dict[str, tuple[str, ...]]) -> list[str]:
    """The worker groups that encode some rendition of a video with these ``renditions``:
    the ones whose chunk transcodes a video waits for."""
    return [g for g in groups if renditions_for_group(renditions, groups, g)]
