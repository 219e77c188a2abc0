"""Prometheus instruments of one process, on a registry of its own (no global state)."""

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.uploads = Counter(
            "chunkcast_uploads", "Upload completions by result.", ["result"],
            registry=self.registry,
        )
        self.videos = Gauge(
            "chunkcast_videos", "Videos by status.", ["status"], registry=self.registry
        )
        self.transcode_seconds = Histogram(
            "chunkcast_transcode_seconds", "Wall time to transcode one chunk, per rendition group.",
            ["group"], registry=self.registry,
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
        )
        self.realtime_factor = Histogram(
            "chunkcast_transcode_realtime_factor",
            "Seconds of media transcoded per second of wall time, per rendition group.",
            ["group"], registry=self.registry,
            buckets=(0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12),
        )
        self.bus_backlog = Gauge(
            "chunkcast_bus_backlog", "Events not yet acked, per topic and consumer group.",
            ["topic", "group"], registry=self.registry,
        )
        self.origin_requests = Counter(
            "chunkcast_origin_requests", "Playlists and published objects this process served "
            "(or redirected to storage), by kind: what a CDN in front saves.", ["kind"],
            registry=self.registry,
        )
        self.handler_failures = Counter(
            "chunkcast_handler_failures", "Events whose handler raised, per topic and group.",
            ["topic", "group"], registry=self.registry,
        )

        self.retries = Counter(
            "chunkcast_retries", "Attempts tried again after a dependency failed (not bad "
            "media), by what was being done.", ["operation"], registry=self.registry,
        )
        self.gave_up = Counter(
            "chunkcast_retry_budget_exhausted", "Chunks whose retry budget ran out while a "
            "dependency was down: live chunks become gaps, uploads fail.", ["kind"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "chunkcast_outbox_pending", "Events recorded in the catalogue but not yet "
            "published on the bus.", registry=self.registry,
        )
        self.outbox_lag = Gauge(
            "chunkcast_outbox_lag_seconds", "Age of the oldest event not yet published.",
            registry=self.registry,
        )
        self.dependency_up = Gauge(
            "chunkcast_dependency_up", "1 when the dependency answered its last check, else 0.",
            ["dependency"], registry=self.registry,
        )

        # Per API process: this one's from its feed, the others' from their reports. A
        # process's series is removed once it is no longer heard from (set_viewers).
        self.viewers = Gauge(
            "chunkcast_viewers", "WebSocket viewers on each API process of the cluster (this "
            "one counted live, the others as they last reported).", ["process"],
            registry=self.registry,
        )
        self._viewer_processes: set[str] = set()

        # The ingest role (publishers over RTMP and SRT). Per-stream gauges exist while the
        # stream has a publisher here: removed when it leaves.
        self.ingest_publishers = Gauge(
            "chunkcast_ingest_publishers", "Publishers live on this ingest process, by "
            "protocol.", ["protocol"], registry=self.registry,
        )
        self.ingest_bytes = Counter(
            "chunkcast_ingest_received_bytes", "Media bytes received from publishers, by "
            "protocol (its rate is the bitrate in).", ["protocol"], registry=self.registry,
        )
        self.ingest_chunks = Counter(
            "chunkcast_ingest_chunks", "Chunks cut from publishers' streams, by result "
            "(stored, skipped).", ["result"], registry=self.registry,
        )
        self.ingest_refused = Counter(
            "chunkcast_ingest_refused", "Publishers refused or cut off, by reason.",
            ["reason"], registry=self.registry,
        )
        self.ingest_keyframe_interval = Gauge(
            "chunkcast_ingest_keyframe_interval_seconds", "Keyframe interval of each live "
            "publisher's video (chunks are at least this long).", ["stream"],
            registry=self.registry,
        )
        self.ingest_bitrate = Gauge(
            "chunkcast_ingest_bitrate_bps", "Bitrate in of each live publisher over the last "
            "few seconds.", ["stream"], registry=self.registry,
        )

    def observe_transcode(self, group: str, media_seconds: float, wall_seconds: float) -> None:
        self.transcode_seconds.labels(group).observe(wall_seconds)
        if wall_seconds > 0:
            self.realtime_factor.labels(group).observe(media_seconds / wall_seconds)

    def set_viewers(self, per_process: Mapping[str, int]) -> None:
        """The viewers on each API process known now; processes no longer named are
        removed (bounded by the processes of the cluster)."""
        for gone in self._viewer_processes - per_process.keys():
            self.viewers.remove(gone)
        for process, count in per_process.items():
            self.viewers.labels(process).set(count)
        self._viewer_processes = set(per_process)

    def served(self, path: str) -> None:
        """Count one playlist or object answered to a viewer or a CDN."""
        kind = ("playlist" if path.endswith(".m3u8") else "segment" if path.endswith(".m4s")
                else "init" if path.endswith(".mp4") else "other")
        self.origin_requests.labels(kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
