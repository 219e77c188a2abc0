"""What ffmpeg and PyAV may open for an input: exactly one demuxer, and only the protocols
its storage needs.

Left to themselves they guess the format from the bytes, and some formats are programs that
open other URLs (HLS and DASH manifests, ffconcat scripts, image sequences): a "chunk" that is
really a manifest would make a worker read another video's objects, local files or any host
on the network. So a live chunk is always read as MPEG-TS, an upload only as the container
its probe found on the allow-list below, and the protocols are those of the storage: ``file``
for local storage, http(s) for S3 (the only URL opened is the pre-signed one we made).
"""

from dataclasses import dataclass

# Demuxers an upload may be read with (as PyAV names them) -> the name to force with ``-f``.
# None of them opens another file or URL (the mov demuxer's external references stay off).
SOURCE_FORMATS: dict[str, str] = {
    "mov,mp4,m4a,3gp,3g2,mj2": "mov",
    "matroska,webm": "matroska",
    "mpegts": "mpegts",
    "avi": "avi",
    "flv": "flv",
    "mpeg": "mpeg",
    "asf": "asf",
    "ogg": "ogg",
}
ALLOWED_CONTAINERS = frozenset(SOURCE_FORMATS.values())
# For ``format_whitelist``: a demuxer is allowed when one of its names is listed.
SOURCE_FORMAT_NAMES = ",".join(sorted(ALLOWED_CONTAINERS))
LIVE_CHUNK_FORMAT = "mpegts"  # what the broadcaster cuts, and all a live chunk may be


def protocols_for(url: str) -> str:
    """The protocols reading ``url`` needs and nothing more (for ``protocol_whitelist``)."""
    if url.startswith("https://"):
        return "https,tls,tcp"
    if url.startswith("http://"):
        return "http,tcp"
    return "file"


@dataclass(frozen=True)
class MediaInput:
    """An input to read: where it is, and the one demuxer to read it with."""

    url: str
    format: str

    @property
    def protocols(self) -> str:
        return protocols_for(self.url)

    def ffmpeg_args(self) -> list[str]:
        """Input options for the ffmpeg command line (they go before ``-i``)."""
        return ["-f", self.format, "-protocol_whitelist", self.protocols]


def forced_format(probed: str) -> str | None:
    """The ``-f`` name of a probed demuxer, or None when it is not an allowed container."""
    return SOURCE_FORMATS.get(probed)
