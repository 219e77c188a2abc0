"""What operators read: Prometheus metrics, with the gauges that come from the catalogue and
the bus refreshed at scrape time."""

from collections.abc import Sequence

from chunkcast.metrics import Metrics
from chunkcast.ports.bus import EventBus
from chunkcast.ports.repository import VideoRepository


class Operations:
    def __init__(self, repo: VideoRepository, bus: EventBus, metrics: Metrics,
                 consumer_groups: Sequence[tuple[str, str]]) -> None:
        """``consumer_groups``: the (topic, group) pairs whose backlog is reported."""
        self._repo = repo
        self._bus = bus
        self._metrics = metrics
        self._groups = tuple(consumer_groups)

    async def metrics_text(self) -> bytes:
        """The metrics in Prometheus' text format, gauges refreshed."""
        for status, count in (await self._repo.count_by_status()).items():
            self._metrics.videos.labels(status).set(count)
        for topic, group in self._groups:
            self._metrics.bus_backlog.labels(topic, group).set(
                await self._bus.backlog(topic, group))
        return self._metrics.render()
