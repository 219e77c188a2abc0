"""Where publishers point: the OBS settings and the URLs of a stream, for the CLI and the
web app (pure; the same configuration as the ingest processes gives the ports)."""

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

KEYFRAME_ADVICE = "set the keyframe interval to 1 or 2 s (OBS: Settings > Output)"


@dataclass(frozen=True)
class PublishUrls:
    rtmp_server: str | None  # OBS "Server"; None when RTMP is off
    rtmp_url: str | None  # the whole URL, for ffmpeg and hardware encoders
    srt_url: str | None


def ingest_host(public_host: str, server_url: str) -> str:
    """The host publishers are told: configured, else the API's."""
    return public_host or urlsplit(server_url).hostname or "127.0.0.1"


def publish_urls(host: str, *, rtmp_port: int, srt_port: int, key: str) -> PublishUrls:
    host = f"[{host}]" if ":" in host else host
    server = f"rtmp://{host}:{rtmp_port}/live" if rtmp_port else None
    return PublishUrls(
        rtmp_server=server,
        rtmp_url=f"{server}/{quote(key, safe='')}" if server else None,
        srt_url=(f"srt://{host}:{srt_port}?streamid={quote(key, safe='')}" if srt_port
                 else None))
