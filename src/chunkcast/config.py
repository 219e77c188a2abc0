"""Settings (env vars ``CHUNKCAST_*`` > TOML file > defaults) and the backend choosers.

Each backend is picked by the scheme of its URL from a name -> import-string map; nothing
else in the code branches on which backend is in use.
"""

import importlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from chunkcast.domain.ids import new_secret
from chunkcast.domain.ladder import parse_groups

STORAGE_BACKENDS = {
    "file": "chunkcast.adapters.storage.local:open_store",
    "s3": "chunkcast.adapters.storage.s3:open_store",
}
# How the API serves a store's objects: local files from this process, S3 by redirect.
ORIGIN_ROUTES = {
    "file": "chunkcast.api.routes.media:local_origin",
    "s3": "chunkcast.api.routes.media:bucket_origin",
}
BUS_BACKENDS = {
    "memory": "chunkcast.adapters.bus.memory:open_bus",
    "redis": "chunkcast.adapters.bus.redis:open_bus",
    "kafka": "chunkcast.adapters.bus.kafka:open_bus",  # the `kafka` extra (aiokafka)
}
DATABASE_BACKENDS = {
    "sqlite": "chunkcast.adapters.db.repository:open_repository",
    "postgresql": "chunkcast.adapters.db.repository:open_repository",
}


class Settings(BaseSettings):
    """Every setting of a chunkcast process. Empty URL settings derive from ``data_dir``."""

    model_config = SettingsConfigDict(env_prefix="CHUNKCAST_", extra="ignore")

    data_dir: Path = Path("./chunkcast-data")
    database_url: str = ""
    storage_url: str = ""
    bus_url: str = "memory://"
    public_url: str = "http://127.0.0.1:8000"
    cdn_url: str = ""
    secret_key: str = ""
    admin_token: str = ""
    ladder_groups: str = "all=240p,360p,480p,720p,1080p"
    ffmpeg: str = ""
    x264_preset: str = "veryfast"
    segment_seconds: int = Field(2, ge=1, le=10)
    vod_chunk_seconds: int = Field(16, ge=2, le=600)
    worker_concurrency: int = Field(2, ge=1, le=64)
    # An event in flight whose worker stops renewing it (killed) goes to another worker
    # after this long; a live worker renews what it holds every third of it.
    ack_timeout_seconds: float = Field(3.0, gt=0)
    # How long a chunk is retried while a dependency is down before giving up on it: a live
    # chunk (counted from its report) then becomes a gap; an upload's chunk fails the upload.
    live_retry_seconds: float = Field(30.0, gt=0)
    vod_retry_seconds: float = Field(900.0, gt=0)
    max_attempts: int = Field(5, ge=1)  # deliveries of an event whose worker kept dying
    stop_grace_seconds: float = Field(60.0, ge=0)
    max_upload_bytes: int = Field(20 * 1024**3, gt=0)
    max_chunk_bytes: int = Field(64 * 1024**2, gt=0)  # one live chunk
    max_source_seconds: float = Field(24 * 3600.0, gt=0)  # longest upload accepted
    transcode_timeout_factor: float = Field(20.0, gt=0)  # ffmpeg s per media s, plus 60 s
    live_seq_window: int = Field(300, ge=10, le=100_000)  # chunk seqs ahead of the last one
    upload_url_seconds: int = Field(3600, ge=60)
    playback_url_seconds: int = Field(4 * 3600, ge=60)  # lifetime of private playback URLs
    live_window_segments: int = Field(6, ge=3)
    # Low-Latency HLS: a live segment is also published as parts of at most this long
    # (fMP4 fragments inside the segment, listed as byte ranges).
    part_seconds: float = Field(0.334, ge=0.1, le=5.0)
    live_idle_timeout_seconds: float = Field(30.0, gt=0)
    live_gap_timeout_seconds: float = Field(5.0, gt=0)
    live_start_segments: int = Field(3, ge=1)
    ws_queue_limit: int = Field(256, ge=8)
    # Ingest (``chunkcast ingest``, and inside ``up``): publishers' ports, 0 turns one off.
    rtmp_port: int = Field(1935, ge=0, le=65535)
    srt_port: int = Field(8890, ge=0, le=65535)
    ingest_host: str = "127.0.0.1"  # the address the ingest ports are bound to
    ingest_public_host: str = ""  # the host publishers are told (default: public URL's)
    ingest_chunk_seconds: int = Field(1, ge=1, le=4)  # cut at the first keyframe after it
    ingest_max_publishers: int = Field(64, ge=1, le=10_000)  # per ingest process

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = settings_cls.model_config.get("toml_file")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        return parse_groups(self.ladder_groups)

    @property
    def media_base_url(self) -> str:
        """Where viewers fetch segments and playlists: the CDN, else the API itself."""
        return (self.cdn_url or self.public_url).rstrip("/")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, ``config_file`` (TOML) and explicit ``overrides``,
    with derived URLs filled in. No files are written here (see :func:`prepare`)."""
    if config_file is not None:

        class _FromToml(Settings):
            model_config = SettingsConfigDict(
                env_prefix="CHUNKCAST_", extra="ignore", toml_file=config_file
            )

        settings: Settings = _FromToml(**overrides)
    else:
        settings = Settings(**overrides)
    data = settings.data_dir.resolve()
    return settings.model_copy(update={
        "data_dir": data,
        "database_url": settings.database_url or f"sqlite+aiosqlite:///{data}/chunkcast.db",
        "storage_url": settings.storage_url or f"file://{data}/objects",
    })


# A configured secret must look like one: the secret key signs every URL and derives the
# playback and edge secrets; the admin token opens every write endpoint.
MIN_SECRET_KEY_CHARS = 32
MIN_ADMIN_TOKEN_CHARS = 16
MIN_DISTINCT_CHARS = 10


class WeakSecret(ValueError):
    """A secret that is missing where it must be configured, or too easy to guess."""


def check_secret(name: str, value: str, min_chars: int) -> None:
    """Refuse short or repetitive secrets (``dev``, ``changeme``, ``aaaa…``)."""
    if len(value) < min_chars or len(set(value)) < MIN_DISTINCT_CHARS:
        raise WeakSecret(
            f"{name} is too weak: use at least {min_chars} random characters "
            '(e.g. python3 -c "import secrets; print(secrets.token_urlsafe(32))")')


def prepare(settings: Settings, *, generate: bool = True) -> Settings:
    """Create the data dir and, when not configured, the secret key and admin token files
    (generated once, mode 0600). Returns the settings with both filled in.

    Configured secrets are checked for strength. Without ``generate`` (the distributed
    roles, whose processes must all share them) both must be configured: a process that
    made its own key would refuse the others' signed URLs."""
    if not generate:
        missing = [name for name, value in (("CHUNKCAST_SECRET_KEY", settings.secret_key),
                                            ("CHUNKCAST_ADMIN_TOKEN", settings.admin_token))
                   if not value]
        if missing:
            raise WeakSecret(f"{' and '.join(missing)} must be set, the same on every API "
                             "and worker process")
    if settings.secret_key:
        check_secret("CHUNKCAST_SECRET_KEY", settings.secret_key, MIN_SECRET_KEY_CHARS)
    if settings.admin_token:
        check_secret("CHUNKCAST_ADMIN_TOKEN", settings.admin_token, MIN_ADMIN_TOKEN_CHARS)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.model_copy(update={
        "secret_key": settings.secret_key or _read_or_create(settings.data_dir / "secret-key"),
        "admin_token": settings.admin_token
        or _read_or_create(settings.data_dir / "admin-token"),
    })


def read_admin_token(settings: Settings) -> str | None:
    """The admin token a local CLI should use: configured, else the data dir's file."""
    return settings.admin_token or _read(settings.data_dir / "admin-token")


def read_secret_key(settings: Settings) -> str | None:
    """The platform's secret key: configured, else the data dir's file (never created)."""
    return settings.secret_key or _read(settings.data_dir / "secret-key")


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def _read_or_create(path: Path) -> str:
    existing = _read(path)
    if existing is not None:
        return existing
    value = new_secret(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def load_backend(table: dict[str, str], url: str) -> Any:
    """The factory registered for ``url``'s scheme (``sqlite+aiosqlite`` -> ``sqlite``)."""
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    if scheme not in table:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r}; "
                         f"expected one of {', '.join(sorted(table))}")
    module, _, name = table[scheme].partition(":")
    return getattr(importlib.import_module(module), name)
