"""Soak: one API process's live path through a month of a 24/7 channel and 10,000 uploads.

In one process, on the in-memory bus, a SQLite catalogue and the local store, without ffmpeg:
the live feed (the channel registry), the WebSocket hub (with the portable outbox: viewers
are ASGI connections in memory) and the playlists. The driver publishes, at full speed and
on a simulated clock (1 s per seq):

- a 24/7 stream with 5 rungs and 1 s segments: one ``segment.ready`` per rung and second
  (30 days: 12,960,000 events). Now and then an event is published out of order, and one is
  lost (the catalogue has it: the gap sweeper takes it from there);
- 10,000 uploads spread over the run (scaled with ``--days``): status ``processing``, 4
  segments x 5 rungs in any order, status ``ready``; every 10th is watched (a viewer replays
  it from the catalogue, and its VOD playlist is read);
- viewers of the stream joining and leaving every 5 minutes, at the live edge or replaying
  from 30 s, 10 min or an hour back (beyond the window: from the catalogue), and the live
  playlist every minute;
- once a day the stream is made private for an hour (viewers without a link are closed;
  the ones joining then come with a link), then public again.

What is simulated: the 24/7 stream's segments are not written to SQLite (13 million rows
would take longer than the rest of the run): its catalogue answers for every seq published
so far, computed on demand, as the transcoder would have stored it. Uploads, videos,
renditions and their segments are real SQLite rows. The feed runs as in ``chunkcast api``
(``run_feed``: its bus subscriptions and sweeper task); the driver also sweeps after every 20 s of
simulated time, and times those sweeps.

Reported: resident memory (VmRSS) every simulated day, growth after warm-up (the first day),
the feed's structure sizes, mean and p99 time of a sweep on the first and the last day, and
what viewers received (every segment once and in order). Targets: growth under 50 MB, sweep
time independent of history (last day / first day <= 1.5).

    python bench/soak.py [--days 30] [--uploads 10000]
"""

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

from starlette.types import Message
from starlette.websockets import WebSocket

from chunkcast.adapters.bus.memory import MemoryBus
from chunkcast.adapters.db.migrate import upgrade
from chunkcast.adapters.db.repository import SqlVideoRepository, make_engine
from chunkcast.adapters.storage.local import LocalObjectStore
from chunkcast.api.delivery import Outboxes
from chunkcast.api.hub import Hub
from chunkcast.domain import events, keys
from chunkcast.domain.ids import new_video_id
from chunkcast.domain.ladder import choose_ladder
from chunkcast.domain.videos import Segment, Video, VideoKind, VideoStatus
from chunkcast.services.live import LiveFeed
from chunkcast.services.live_follow import run_feed
from chunkcast.services.playback import Playback, Signer

RESULTS = Path(__file__).parent / "results"
LADDER = choose_ladder(1920, 1080, 30.0)  # 240p, 360p, 480p, 720p, 1080p
RUNGS = [r.name for r in LADDER]
PACER = RUNGS[-1]  # the last rung published for each seq
DAY = 86_400
BATCH = 20  # seqs published between two waits for the feed (and two timed sweeps)
SEGMENTS_PER_UPLOAD = 4
TARGET_GROWTH_MB = 50.0
TARGET_SWEEP_RATIO = 1.5
READY_AT = "2026-11-24T10:00:00.000Z"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Clock:
    """Simulated seconds: one per seq of the stream."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class StreamSegments(Sequence[Segment]):
    """The 24/7 stream's catalogue for one rung: every seq published so far, made on
    demand."""

    def __init__(self, video_id: str, rendition: str, count: int) -> None:
        self._video_id, self._rendition, self._count = video_id, rendition, count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Segment: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Segment]: ...

    def __getitem__(self, index: int | slice) -> Segment | Sequence[Segment]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        return Segment(self._video_id, self._rendition, index,
                       keys.segment(self._video_id, self._rendition, index), float(index), 1.0)


class Catalogue(SqlVideoRepository):
    """SQLite, except the 24/7 stream's segments (see the module docstring)."""

    stream_id = ""
    published: dict[str, int] = {}

    async def segments(self, video_id: str, rendition: str, *, after: int | None = None,
                       before: int | None = None, first: int | None = None,
                       last: int | None = None) -> Sequence[Segment]:
        if video_id == self.stream_id:
            every = StreamSegments(video_id, rendition, self.published.get(rendition, 0))
            low = 0 if after is None else max(0, after + 1)
            high = len(every) if before is None else min(len(every), max(0, before))
            if last is not None:
                low = max(low, high - last)
            elif first is not None:
                high = min(high, low + first)
            return every[low:high] if low < high else []
        return await super().segments(video_id, rendition, after=after, before=before,
                                      first=first, last=last)


@dataclass
class Viewer:
    """A WebSocket viewer through the hub, its connection in memory (ASGI receive/send); it
    checks that the seqs it is sent follow one another."""

    since: int | None
    joined_at: int
    left: asyncio.Event = field(default_factory=asyncio.Event)
    messages: int = 0
    segments: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    out_of_order: int = 0
    close_code: int | None = None
    connected: bool = False

    async def receive(self) -> Message:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        await self.left.wait()
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(self, message: Message) -> None:
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.left.set()
        elif message["type"] == "websocket.send":
            self.take(message["text"])

    def take(self, text: str) -> None:
        self.messages += 1
        if not text.startswith(('{"type":"segment","seq":', '{"type":"gap","seq":')):
            return
        start = text.index('"seq":') + 6
        seq = int(text[start:text.index(",", start) if "," in text[start:] else -1])
        if self.last_seq is not None and seq != self.last_seq + 1:
            self.out_of_order += 1
        if self.first_seq is None:
            self.first_seq = seq
        self.last_seq = seq
        self.segments += 1


class Pacer:
    """A listener of the stream's last rung: the driver waits on it until the feed has taken
    everything it published."""

    def __init__(self) -> None:
        self.seen = 0
        self._target = 0
        self._reached = asyncio.Event()

    def deliver(self, text: str) -> None:
        if text.startswith('{"type":"segment"'):
            self.seen += 1
            if self.seen >= self._target:
                self._reached.set()

    def revoke(self) -> None:
        raise AssertionError("the pacer holds a link")

    async def until(self, count: int) -> None:
        self._target = count
        if self.seen < count:
            self._reached.clear()
            await asyncio.wait_for(self._reached.wait(), 60)


@dataclass
class Soak:
    args: argparse.Namespace
    repo: Catalogue
    bus: MemoryBus
    feed: LiveFeed
    hub: Hub
    playback: Playback
    signer: Signer
    clock: Clock
    stream_id: str
    pacer: Pacer = field(default_factory=Pacer)
    private: bool = False
    live_viewers: list[tuple[Viewer, asyncio.Task[None]]] = field(default_factory=list)
    upload_viewer: tuple[Viewer, asyncio.Task[None], str] | None = None
    finished: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("joined", "messages", "segments", "out_of_order", "forbidden", "too_slow"), 0))
    upload_checks: dict[str, int] = field(default_factory=lambda: {"watched": 0, "complete": 0})
    counts: dict[str, int] = field(default_factory=lambda: {
        "segment_events": 0, "status_events": 0, "privacy_events": 0, "lost_events": 0,
        "uploads": 0, "live_playlists": 0, "vod_playlists": 0})
    sweeps: list[float] = field(default_factory=list)  # the current day's, in seconds
    sweep_days: list[dict[str, float]] = field(default_factory=list)  # mean, p99 per day
    samples: list[dict[str, Any]] = field(default_factory=list)

    # -- viewers ---------------------------------------------------------------------------

    def connect(self, video_id: str, rendition: str, since: int | None, seq: int,
                token: str | None = None) -> tuple[Viewer, asyncio.Task[None]]:
        viewer = Viewer(since, seq)
        query = "&".join(q for q in ("" if since is None else f"since={since}", token or "")
                         if q)
        scope = {"type": "websocket", "path": f"/ws/{video_id}/{rendition}",
                 "query_string": query.encode(), "headers": [],
                 "path_params": {"video_id": video_id, "rendition": rendition}}
        socket = WebSocket(scope, viewer.receive, viewer.send)
        return viewer, asyncio.create_task(self.hub.endpoint(socket, viewer.send))

    async def leave(self, viewer: Viewer, task: asyncio.Task[None]) -> None:
        viewer.left.set()
        await task
        for name, value in (("joined", 1), ("messages", viewer.messages),
                            ("segments", viewer.segments), ("out_of_order", viewer.out_of_order),
                            ("forbidden", viewer.close_code == 4403),
                            ("too_slow", viewer.close_code == 4008)):
            self.finished[name] += int(value)

    async def turn_over_live_viewers(self, seq: int) -> None:
        """Every 5 minutes: the longest-connected viewer leaves, a new one comes."""
        if len(self.live_viewers) >= 4:
            await self.leave(*self.live_viewers.pop(0))
        turn = seq // 300
        since = [None, seq - 30, seq - 600, seq - 3600][turn % 4]
        token = self.link() if self.private else None
        self.live_viewers.append(self.connect(self.stream_id, RUNGS[turn % len(RUNGS)],
                                              since if since is None or since >= -1 else -1,
                                              seq, token))

    def link(self) -> str:
        """The query of a link to the stream, as the admin mints them."""
        return self.signer.query(self.stream_id, self.signer.fresh_expiry())

    # -- publishing ------------------------------------------------------------------------

    async def publish_seqs(self, first: int, last: int) -> None:
        """The stream's seqs ``first..last``: stored first, then announced. Now and then the
        lowest rung's event comes after the next seq's, and one of the second rung's is
        lost."""
        for rung in RUNGS:
            self.repo.published[rung] = last + 1
        delayed: int | None = None
        for seq in range(first, last + 1):
            for rung in RUNGS:
                if seq % 10_007 == 5 and rung == RUNGS[1]:
                    self.counts["lost_events"] += 1
                    continue
                if seq % 5_003 == 7 and rung == RUNGS[0] and seq < last:
                    delayed = seq
                    continue
                await self.publish_segment(seq, rung)
                if delayed is not None and rung == RUNGS[0] and seq == delayed + 1:
                    await self.publish_segment(delayed, rung)
                    delayed = None

    async def publish_segment(self, seq: int, rung: str) -> None:
        event = events.SegmentReady(self.stream_id, rung, seq,
                                    keys.segment(self.stream_id, rung, seq),
                                    keys.init_segment(self.stream_id, rung), float(seq), 1.0,
                                    None, READY_AT)
        await self.bus.publish(events.SEGMENTS, event)
        self.counts["segment_events"] += 1

    async def status(self, video_id: str, status: VideoStatus) -> None:
        await self.repo.set_status(video_id, status)
        await self.bus.publish(events.VIDEOS, events.VideoStatusChanged(video_id,
                                                                        status.value))
        self.counts["status_events"] += 1

    async def set_private(self, private: bool) -> None:
        """As ``Videos.set_private``: recorded, then announced."""
        self.private = private
        await self.repo.set_private(self.stream_id, private)
        await self.bus.publish(events.VIDEOS,
                               events.VideoPrivacyChanged(self.stream_id, private))
        self.counts["privacy_events"] += 1

    async def upload(self, number: int) -> None:
        """An upload transcoded by the workers: its segments in any order, then ready;
        every 10th is watched while the next ones are processed."""
        video_id = new_video_id()
        watched = number % 10 == 0
        await self.repo.add_video(Video(video_id, VideoKind.VOD, f"upload {number}",
                                        VideoStatus.PROCESSING, datetime.now(UTC)))
        if watched:  # only what a viewer or a playlist reads
            await self.repo.set_plan(video_id, LADDER, SEGMENTS_PER_UPLOAD * len(LADDER))
            await self.repo.set_codecs(video_id, RUNGS[0], "avc1.64000d,mp4a.40.2")
        await self.bus.publish(events.VIDEOS, events.VideoStatusChanged(
            video_id, VideoStatus.PROCESSING.value))
        made = [events.SegmentReady(video_id, rung, seq, keys.segment(video_id, rung, seq),
                                    keys.init_segment(video_id, rung), 2.0 * seq, 2.0, None,
                                    READY_AT)
                for seq in reversed(range(SEGMENTS_PER_UPLOAD)) for rung in RUNGS]
        await self.repo.upsert_segments([Segment(e.video_id, e.rendition, e.seq, e.key,
                                                 e.pts_start, e.duration) for e in made])
        for event in made:
            await self.bus.publish(events.SEGMENTS, event)
            self.counts["segment_events"] += 1
        await self.status(video_id, VideoStatus.READY)
        self.counts["uploads"] += 1
        if watched:
            await self.finish_upload_viewer()
            viewer, task = self.connect(video_id, RUNGS[0], -1, number)
            self.upload_viewer = (viewer, task, video_id)
            self.upload_checks["watched"] += 1
            await self.playback.media(video_id, RUNGS[0])
            self.counts["vod_playlists"] += 1

    async def finish_upload_viewer(self) -> None:
        if self.upload_viewer is not None:
            viewer, task, _ = self.upload_viewer
            self.upload_viewer = None
            await self.leave(viewer, task)
            if viewer.segments == SEGMENTS_PER_UPLOAD and viewer.out_of_order == 0:
                self.upload_checks["complete"] += 1

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> None:
        total = int(self.args.days * DAY)
        uploads = round(self.args.uploads * self.args.days / 30)
        upload_every = max(1, total // max(1, uploads))
        seat = await self.feed.join(self.stream_id, PACER)
        async for _ in seat.catch_up(self.pacer, None, 0, signed=True):
            pass
        await self.publish_segment(0, PACER)  # the feed subscribes when its tasks start:
        while self.pacer.seen == 0:  # publish seq 0 until it has (a redelivery is ignored)
            await asyncio.sleep(0.01)
            await self.publish_segment(0, PACER)
        self.sample(0, time.monotonic())
        started = time.monotonic()
        uploaded = 0
        seq = 0
        while seq < total:
            last = min(total, seq + BATCH) - 1
            self.clock.now = float(last)
            await self.publish_seqs(seq, last)
            await self.pacer.until(last + 1)
            swept = time.perf_counter()
            await self.feed.sweep()
            self.sweeps.append(time.perf_counter() - swept)
            for now in range(seq, last + 1):
                await self.every_second(now, upload_every, uploads, uploaded)
                if now % upload_every == 0 and uploaded < uploads:
                    await self.upload(uploaded)
                    uploaded += 1
            if (last + 1) % DAY == 0 or last + 1 == total:
                self.summarise_sweeps(last + 1)
                self.sample(last + 1, started)
            seq = last + 1
        for viewer, task in self.live_viewers:
            await self.leave(viewer, task)
        await self.finish_upload_viewer()
        self.sample(total, started)

    async def every_second(self, now: int, upload_every: int, uploads: int,
                           uploaded: int) -> None:
        if now % 300 == 0:
            await self.turn_over_live_viewers(now)
        if now % 60 == 0:
            token: tuple[str | None, str | None] = (None, None)
            if self.private:  # a link's holder
                e, st = (part.split("=", 1)[1] for part in self.link().split("&"))
                token = (e, st)
            await self.playback.media(self.stream_id, RUNGS[now // 60 % len(RUNGS)],
                                      token=token, live=self.feed)
            self.counts["live_playlists"] += 1
        if now % DAY == 12 * 3600:
            await self.set_private(True)
        elif now % DAY == 13 * 3600 and self.private:
            await self.set_private(False)

    def summarise_sweeps(self, seq: int) -> None:
        times = sorted(self.sweeps)
        self.sweeps = []
        self.sweep_days.append({
            "day": round(seq / DAY, 3), "sweeps": len(times),
            "mean_us": round(statistics.fmean(times) * 1e6, 2),
            "p99_us": round(times[int(0.99 * (len(times) - 1))] * 1e6, 2)})

    def sample(self, seq: int, started: float) -> None:
        sizes = self.feed.sizes()
        self.samples.append({"day": round(seq / DAY, 3), "seconds": round(
            time.monotonic() - started, 1), "rss_mb": round(rss_mb(), 1), **sizes})
        last = self.samples[-1]
        print(f"day {last['day']:6.2f}  {last['seconds']:7.1f} s  rss {last['rss_mb']:7.1f} MB"
              f"  channels {sizes['channels']}  items {sizes['items']}"
              f"  pending {sizes['pending']}  ignored {sizes['ignored']}"
              f"  viewers {sizes['members']}", flush=True)


async def soak(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    url = f"sqlite+aiosqlite:///{data}/soak.db"
    upgrade(url)
    repo = Catalogue(make_engine(url))
    clock = Clock()
    signer = Signer("p" * 64, 4 * 3600)
    store = LocalObjectStore(data / "objects", b"s" * 32, "http://api")
    playback = Playback(repo, store, signer, "http://cdn", "http://api", 1)
    feed = LiveFeed(repo, "http://cdn", gap_timeout_s=5, clock=clock,
                    on_privacy=playback.privacy_changed)
    hub = Hub(feed, signer, outboxes=Outboxes(256, portable=True), start_segments=3)
    bus = MemoryBus(None)
    stream_id = new_video_id()
    await repo.add_video(Video(stream_id, VideoKind.LIVE, "24/7", VideoStatus.LIVE,
                               datetime.now(UTC)))
    await repo.set_plan(stream_id, LADDER, 0)
    for rung in RUNGS:
        await repo.set_codecs(stream_id, rung, "avc1.64001f,mp4a.40.2")
    repo.stream_id, repo.published = stream_id, {}
    run = Soak(args, repo, bus, feed, hub, playback, signer, clock, stream_id)
    following = asyncio.create_task(run_feed(feed, bus))
    try:
        await run.run()
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await repo.close()
    return report(run)


def report(run: Soak) -> dict[str, Any]:
    samples = run.samples
    warm = next((s for s in samples if s["day"] >= 1.0), samples[-1])
    after = [s for s in samples if s["day"] >= warm["day"]]
    growth = max(s["rss_mb"] for s in after) - warm["rss_mb"]
    first, last = run.sweep_days[0], run.sweep_days[-1]
    ratio = last["mean_us"] / first["mean_us"] if first["mean_us"] else None
    viewers = run.finished
    seconds = samples[-1]["seconds"]
    return {
        "counts": {**run.counts, "events_per_s": round(
            (run.counts["segment_events"] + run.counts["status_events"]) / max(seconds, 1e-9))},
        "memory": {"warm_up_day": warm["day"], "rss_after_warm_up_mb": warm["rss_mb"],
                   "rss_end_mb": samples[-1]["rss_mb"], "growth_mb": round(growth, 1),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1)},
        "sweep": {"first_day": first, "last_day": last,
                  "ratio": round(ratio, 2) if ratio else None},
        "viewers": {"joined": viewers["joined"], "messages": viewers["messages"],
                    "replayed_or_live_segments": viewers["segments"],
                    "out_of_order_or_duplicate": viewers["out_of_order"],
                    "closed_forbidden": viewers["forbidden"],
                    "closed_too_slow": viewers["too_slow"],
                    "uploads_watched": run.upload_checks["watched"],
                    "uploads_watched_complete": run.upload_checks["complete"]},
        "sweep_days": run.sweep_days,
        "samples": samples,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30.0,
                        help="simulated days of the 24/7 stream (default 30)")
    parser.add_argument("--uploads", type=int, default=10_000,
                        help="uploads over 30 days, scaled with --days (default 10000)")
    args = parser.parse_args()
    if args.days <= 0:
        parser.error("--days must be positive")
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        result = asyncio.run(soak(args, Path(tmp)))
    memory, sweep, viewers = result["memory"], result["sweep"], result["viewers"]
    growth_ok = memory["growth_mb"] < TARGET_GROWTH_MB
    sweep_ok = sweep["ratio"] is not None and sweep["ratio"] <= TARGET_SWEEP_RATIO
    print()
    print(f"{args.days:g} days: {result['counts']['segment_events']:,} segment events, "
          f"{result['counts']['uploads']:,} uploads in {result['seconds']:.0f} s "
          f"({result['counts']['events_per_s']:,} events/s)")
    print(f"memory: {memory['rss_after_warm_up_mb']} MB after day {memory['warm_up_day']}, "
          f"{memory['rss_end_mb']} MB at the end; growth {memory['growth_mb']} MB "
          f"({'ok' if growth_ok else 'MISSED'}, < {TARGET_GROWTH_MB:.0f})")
    print(f"sweep: first day {sweep['first_day']['mean_us']} us mean "
          f"(p99 {sweep['first_day']['p99_us']}), last day {sweep['last_day']['mean_us']} us "
          f"(p99 {sweep['last_day']['p99_us']}); ratio {sweep['ratio']} "
          f"({'ok' if sweep_ok else 'MISSED'}, <= {TARGET_SWEEP_RATIO})")
    print(f"viewers: {viewers['joined']} joined, {viewers['replayed_or_live_segments']:,} "
          f"segments received, {viewers['out_of_order_or_duplicate']} out of order or twice, "
          f"{viewers['closed_forbidden']} closed 4403 (made private), "
          f"{viewers['closed_too_slow']} closed 4008; uploads watched "
          f"{viewers['uploads_watched_complete']}/{viewers['uploads_watched']} complete")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "soak.json"
    path.write_text(json.dumps({
        "benchmark": "soak", "at": time.strftime("%Y%m%dT%H%M%S"),
        "machine": platform.node(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "settings": vars(args),
        "targets": {"growth_mb": TARGET_GROWTH_MB, "sweep_ratio": TARGET_SWEEP_RATIO},
        "verdict": {"growth_ok": growth_ok, "sweep_ok": sweep_ok}, **result,
    }, indent=2) + "\n")
    print(f"wrote {path}")
    sys.exit(0)


if __name__ == "__main__":
    main()
