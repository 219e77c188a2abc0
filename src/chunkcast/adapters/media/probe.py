"""The prober on PyAV (:func:`chunkcast.media.probe.probe`)."""

from chunkcast.media.inputs import LIVE_CHUNK_FORMAT
from chunkcast.media.probe import probe
from chunkcast.ports.media import SourceInfo


class PyavProber:
    """Uploads are opened only as an allowed container, live chunks only as MPEG-TS, each
    with only the protocols of its own URL."""

    async def probe_source(self, url: str) -> SourceInfo:
        return await probe(url)

    async def probe_live_chunk(self, url: str) -> SourceInfo:
        return await probe(url, container=LIVE_CHUNK_FORMAT)
