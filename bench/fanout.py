"""WebSocket fan-out: one segment event to N viewers of one rendition, chunkcast versus a raw
``websockets.broadcast`` server measured in the same run.

For each N, a fresh ``chunkcast up`` (one API process, ladder ``all=240p``, x264 ultrafast) gets
a live stream with chunk 0 transcoded; load processes (``bench/fanout_load.py``, at most
``--per-process`` viewers each, each connecting from its own loopback source address
127.0.0.2, 127.0.0.3, …) open N WebSocket viewers of ``/ws/{id}/240p`` and, per measured
event, the parent pushes one more 1 s MPEG-TS chunk through the public chunk API. The
delivery time of a viewer is its receive wall clock minus the message's ``ready_at`` (the wall
clock at which the worker published the segment event; milliseconds, truncated, so figures are
up to 1 ms high). The baseline is a tiny ``websockets`` server (compression off, uvloop like
uvicorn's default, default keepalive) that broadcasts one segment-like message with its send
wall clock; the same load processes (``--client``: a bare frame parser, or websockets'
client), the same N, the same number of events.

Per event: p50/p99/max delivery time over the viewers and throughput = N / time until the last
viewer has it. Per N, medians over the measured events (a warm-up event is dropped). Memory per
connection = (server VmRSS with N idle viewers - VmRSS before connecting) / N. Where the time
goes: server CPU per event (chunkcast's minus the same event without viewers: the chunk API,
the worker and the feed) and the load processes' CPU, per viewer.

Every process holds one file descriptor per viewer: the servers and the load processes raise
their open-files limit to the hard limit (RLIMIT_NOFILE), and an N that a process cannot hold
under it (N + a margin for the server, ``--per-process`` + a margin for a load process) is not
measured; the report says so. Likewise a source address has as many ports as
``net.ipv4.ip_local_port_range``.

    python bench/fanout.py [--viewers 10000,25000,50000] [--events 5] [--runs 1]

Targets at 50k viewers: <= 16 KB per connection (raw ``websockets`` ~14 KB), throughput
>= 0.9x raw; the capacity for ``chunkcast plan`` is the largest N with p99 <= 250 ms.
"""

import argparse
import contextlib
import json
import math
import os
import queue
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from capacity import Measured, write_capacity
from chunkcast.domain.plan import API_VIEWERS
from chunkcast.media.process import ffmpeg_path
from chunkcast.testing import Server, free_port, run_server
from common import median, write_result

LOAD = Path(__file__).parent / "fanout_load.py"
RENDITION = "240p"
SERVER_ENV = {
    "CHUNKCAST_LADDER_GROUPS": "all=240p",
    "CHUNKCAST_X264_PRESET": "ultrafast",
    # Connecting 10k viewers takes longer than the default 30 s without chunks.
    "CHUNKCAST_LIVE_IDLE_TIMEOUT_SECONDS": "900",
}
TARGET_P99_MS = 250.0  # the capacity written for ``chunkcast plan``: largest N within it
TARGET_VIEWERS = 50_000  # the KB and throughput targets hold there (checked at every N)
TARGET_KB_PER_CONN = 16.0
TARGET_RATIO = 0.9
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_EVENTS = 3  # chunkcast events pushed before any viewer connects, for the CPU baseline
SERVER_FD_MARGIN = 256  # a server's descriptors besides its viewers (database, logs, pipes)
LOAD_FD_MARGIN = 64  # a load process's besides its viewers
PORT_MARGIN = 1024  # ephemeral ports of a source address left for everything else


# -- processes -------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def raise_nofile_limit() -> int:
    """Our open-files soft limit up to the hard one (the children inherit it); returns the
    hard limit: as many descriptors as any process started here may hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard if hard != resource.RLIM_INFINITY else 1 << 30


def open_files_limit(pid: int) -> int:
    """A running process's open-files soft limit."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return 1 << 30 if soft == "unlimited" else int(soft)
    raise RuntimeError(f"no open-files limit for pid {pid}")


def source_ports() -> int:
    """Ephemeral ports of one source address towards one server port."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(high) - int(low) + 1


@dataclass(frozen=True)
class LoadPlan:
    """How N viewers are spread: one load process per share, each from one source address."""

    shares: list[int]
    sources: list[str]

    @classmethod
    def of(cls, n: int, per_process: int, sources: list[str]) -> "LoadPlan":
        count = max(1, math.ceil(n / per_process))
        shares = [n // count + (1 if i < n % count else 0) for i in range(count)]
        return cls(shares, [sources[i % len(sources)] for i in range(count)])

    def unmeasurable(self, n: int, fd_limit: int, ports: int) -> str | None:
        """Why this machine cannot hold N viewers this way, None if it can."""
        if n + SERVER_FD_MARGIN > fd_limit:
            return (f"the open-files hard limit (RLIMIT_NOFILE) is {fd_limit}: one server "
                    f"process cannot hold {n} sockets + {SERVER_FD_MARGIN}; raise it "
                    f"(ulimit -Hn, systemd LimitNOFILE=, or run as a user allowed to)")
        if max(self.shares) + LOAD_FD_MARGIN > fd_limit:
            return (f"a load process would hold {max(self.shares)} sockets under an "
                    f"open-files limit of {fd_limit}: lower --per-process")
        per_source: dict[str, int] = {}
        for share, source in zip(self.shares, self.sources, strict=True):
            per_source[source] = per_source.get(source, 0) + share
        crowded = [s for s, used in per_source.items() if used + PORT_MARGIN > ports]
        if crowded:
            return (f"source address {crowded[0]} would need {per_source[crowded[0]]} of its "
                    f"{ports} ephemeral ports: give more --sources")
        return None


class Child:
    """A child process speaking JSON lines on stdin/stdout; stopped by PID."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        with log.open("ab") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=err, text=True, start_new_session=True)
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def read(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{kind!r} not reported within {timeout:.0f} s; "
                                   f"log {self.log}:\n{self._tail()}") from None
            if line is None:
                raise RuntimeError(f"child {self.pid} exited (waiting for {kind!r}); "
                                   f"log {self.log}:\n{self._tail()}")
            message: dict[str, Any] = json.loads(line)
            if message.get("type") == "error":
                raise RuntimeError(f"child {self.pid}: {message.get('message')}")
            if message.get("type") == kind:
                return message

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()[-3000:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send({"cmd": "quit"})
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@contextlib.contextmanager
def child(argv: list[str], log: Path) -> Iterator[Child]:
    proc = Child(argv, log)
    try:
        yield proc
    finally:
        proc.stop()


class Loads:
    """The load processes of one N (:class:`LoadPlan`): commands go to each, their answers are
    merged into one."""

    def __init__(self, ws_url: str, plan: LoadPlan, args: argparse.Namespace,
                 log: Path) -> None:
        self.children: list[Child] = []
        try:
            for i, (share, source) in enumerate(zip(plan.shares, plan.sources, strict=True)):
                self.children.append(Child(
                    [sys.executable, str(LOAD), "viewers", ws_url, "--viewers", str(share),
                     "--concurrency", str(args.concurrency), "--loop", args.loop,
                     "--client", args.client, "--source", source],
                    log.with_name(f"{log.stem}-{i}{log.suffix}")))
        except BaseException:
            self.stop()
            raise

    def send(self, command: dict[str, Any]) -> None:
        for load in self.children:
            load.send(command)

    def read(self, kind: str, timeout: float) -> dict[str, Any]:
        """Each process's answer of ``kind``, merged: counts summed, delays pooled, the
        slowest connect time."""
        deadline = time.monotonic() + timeout
        answers = [load.read(kind, max(1.0, deadline - time.monotonic()))
                   for load in self.children]
        merged = dict(answers[0])
        for key in ("viewers", "failed", "greeted", "open", "expected", "received"):
            if key in merged:
                merged[key] = sum(int(a[key]) for a in answers)
        if "seconds" in merged:
            merged["seconds"] = max(float(a["seconds"]) for a in answers)
        if "delays_ms" in merged:
            merged["delays_ms"] = [d for a in answers for d in a["delays_ms"]]
        merged["processes"] = len(answers)
        return merged

    def cpu_s(self) -> float:
        return sum(cpu_s(load.pid) for load in self.children)

    def stop(self) -> None:
        for load in self.children:
            load.stop()


@contextlib.contextmanager
def loads(ws_url: str, plan: LoadPlan, args: argparse.Namespace, log: Path
          ) -> Iterator[Loads]:
    procs = Loads(ws_url, plan, args, log)
    try:
        yield procs
    finally:
        procs.stop()


@contextlib.contextmanager
def raw_server(tmp: Path, loop: str) -> Iterator[tuple[str, int, Callable[[int], None]]]:
    """The baseline server; yields (ws url, pid, trigger(seq))."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with child([sys.executable, str(LOAD), "raw-server", "--port", str(port), "--loop", loop],
               tmp / "raw-server.log") as server, httpx.Client(timeout=30) as http:
        deadline = time.monotonic() + 20
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"raw server exited:\n{server._tail()}")
            with contextlib.suppress(httpx.TransportError):
                if http.get(f"{base}/healthz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"raw server did not start:\n{server._tail()}")
            time.sleep(0.05)

        def trigger(seq: int) -> None:
            http.get(f"{base}/broadcast", params={"seq": seq}).raise_for_status()

        yield f"ws://127.0.0.1:{port}/ws", server.pid, trigger


# -- chunkcast -------------------------------------------------------------------------------


def make_chunks(out: Path, count: int) -> list[Path]:
    """``count`` 1 s MPEG-TS chunks (320x240 30 fps test pattern, AAC stereo 48 kHz)."""
    out.mkdir(parents=True, exist_ok=True)
    seconds = count + 1
    subprocess.run([
        ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-g", "30", "-keyint_min", "30", "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
        "-f", "segment", "-segment_time", "1", "-segment_format", "mpegts",
        "-reset_timestamps", "0", str(out / "%08d.ts"),
    ], check=True)
    chunks = sorted(out.glob("*.ts"))
    if len(chunks) < count:
        raise RuntimeError(f"ffmpeg made {len(chunks)} chunks, {count} needed")
    return chunks[:count]


class Stream:
    """A live stream on a chunkcast server, fed through the public chunk API."""

    def __init__(self, server: Server, http: httpx.Client, chunks: list[Path]) -> None:
        self.server = server
        self.http = http
        self.chunks = chunks
        created = http.post(f"{server.url}/api/v1/streams", json={"title": "fanout"},
                            headers={"Authorization": f"Bearer {server.token}"})
        created.raise_for_status()
        self.id: str = created.json()["id"]
        self.key: str = created.json()["stream_key"]
        self.ws_url = f"{server.url.replace('http://', 'ws://')}/ws/{self.id}/{RENDITION}"

    def push(self, seq: int) -> None:
        headers = {"X-Stream-Key": self.key}
        body = {"seq": seq, "duration": 1.0, "pts_start": float(seq), "captured_at": None}
        base = f"{self.server.url}/api/v1/streams/{self.id}/chunks"
        reply = self.http.post(base, json=body, headers=headers)
        reply.raise_for_status()
        upload = reply.json()["upload"]
        self.http.request(upload["method"], upload["url"], headers=upload["headers"],
                          content=self.chunks[seq].read_bytes()).raise_for_status()
        self.http.post(f"{base}/{seq}/complete", json=body, headers=headers).raise_for_status()

    def wait_segments(self, count: int, timeout: float = 60.0) -> None:
        """Until the live playlist lists ``count`` segments."""
        url = f"{self.server.url}/play/{self.id}/{RENDITION}/index.m3u8"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self.http.get(url, params={"dvr": 1})
            if reply.status_code == 200 and reply.text.count("#EXTINF") >= count:
                return
            time.sleep(0.05)
        raise RuntimeError(f"segment {count - 1} not ready within {timeout:.0f} s; "
                           f"server log {self.server.log}")


# -- measuring -------------------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


@dataclass
class Measurement:
    viewers: int
    connected: int = 0
    connect_s: float = 0.0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    idle_cpu_ms: float = 0.0  # server CPU of one event without viewers (chunk handling)
    load_processes: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    warmup: list[dict[str, Any]] = field(default_factory=list)

    @property
    def kb_per_conn(self) -> float:
        return (self.rss_after_kb - self.rss_before_kb) / max(1, self.connected)


def summarize(report: dict[str, Any], timeout: float, server_cpu: float,
              load_cpu: float) -> dict[str, Any]:
    delays = sorted(float(d) for d in report["delays_ms"])
    expected = int(report["expected"])
    complete = bool(delays) and len(delays) >= expected
    last_ms = delays[-1] if complete else timeout * 1000.0
    return {
        "seq": report["seq"], "expected": expected, "received": len(delays),
        "open_after": report["open"],
        "min_ms": delays[0] if delays else None,
        "p50_ms": percentile(delays, 50) if delays else None,
        "p99_ms": percentile(delays, 99) if delays else None,
        "max_ms": delays[-1] if delays else None,
        "throughput_per_s": len(delays) / (last_ms / 1000.0) if last_ms > 0 else None,
        "server_cpu_ms": round(server_cpu * 1000.0),
        "load_cpu_ms": round(load_cpu * 1000.0),
    }


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def measure(name: str, ws_url: str, pid: int, trigger: Callable[[int], None], first_seq: int,
            n: int, args: argparse.Namespace, log: Path, idle_cpu_ms: float = 0.0
            ) -> Measurement:
    """Connect N viewers, then time ``warmup + events`` events, one at a time."""
    result = Measurement(n, idle_cpu_ms=idle_cpu_ms)
    limit = open_files_limit(pid)
    if limit < n + SERVER_FD_MARGIN:
        raise RuntimeError(f"{name}: server {pid} may open {limit} files, {n} viewers need "
                           f"{n + SERVER_FD_MARGIN}")
    time.sleep(args.settle)
    result.rss_before_kb = rss_kb(pid)
    plan = LoadPlan.of(n, args.per_process, args.sources)
    with loads(ws_url, plan, args, log) as load:
        connected = load.read("connected", timeout=args.connect_timeout)
        result.connected = int(connected["viewers"])
        result.connect_s = float(connected["seconds"])
        result.load_processes = len(plan.shares)
        print(f"  {name}: {result.connected}/{n} viewers connected in {result.connect_s:.1f} s"
              f" ({connected['failed']} failed; {len(plan.shares)} load process(es) from "
              f"{', '.join(sorted(set(plan.sources)))})", flush=True)
        if result.connected == 0:
            raise RuntimeError(f"{name}: no viewer could connect; see {log}")
        time.sleep(args.settle)
        result.rss_after_kb = rss_kb(pid)
        print(f"  {name}: server RSS {result.rss_before_kb / 1024:.0f} -> "
              f"{result.rss_after_kb / 1024:.0f} MB, {result.kb_per_conn:.1f} KB per connection",
              flush=True)
        for k in range(args.warmup + args.events):
            seq = first_seq + k
            load.send({"cmd": "expect", "seq": seq})
            load.read("armed", timeout=30)
            server_cpu, load_cpu = cpu_s(pid), load.cpu_s()
            trigger(seq)
            load.send({"cmd": "wait", "timeout": args.event_timeout})
            report = load.read("event", timeout=args.event_timeout + 60)
            event = summarize(report, args.event_timeout, cpu_s(pid) - server_cpu,
                              load.cpu_s() - load_cpu)
            warm = k < args.warmup
            (result.warmup if warm else result.events).append(event)
            missing = event["expected"] - event["received"]
            print(f"  {name} seq {seq}{' (warm-up)' if warm else ''}: "
                  f"min {fmt(event['min_ms'])} p50 {fmt(event['p50_ms'])} "
                  f"p99 {fmt(event['p99_ms'])} max {fmt(event['max_ms'])} ms"
                  f"{f', {missing} MISSING' if missing else ''}; "
                  f"cpu server {event['server_cpu_ms']} ms, load {event['load_cpu_ms']} ms",
                  flush=True)
            time.sleep(args.gap)
    return result


def measure_raw(n: int, args: argparse.Namespace, tmp: Path) -> Measurement:
    with raw_server(tmp, args.loop) as (ws_url, pid, trigger):
        return measure("raw", ws_url, pid, trigger, 1, n, args, tmp / f"load-raw-{n}.log")


def measure_chunkcast(n: int, args: argparse.Namespace, tmp: Path,
                      chunks: list[Path]) -> Measurement:
    data = tmp / f"data-{n}-{time.monotonic_ns()}"
    with run_server(data, env=SERVER_ENV) as server, httpx.Client(timeout=60) as http:
        stream = Stream(server, http, chunks)
        stream.push(0)  # the rendition exists once the first chunk is transcoded
        stream.wait_segments(1)
        # Server CPU of an event without viewers: the chunk API, the worker, the feed.
        idle: list[float] = []
        for seq in range(1, 1 + IDLE_EVENTS):
            before = cpu_s(server.pid)
            stream.push(seq)
            stream.wait_segments(seq + 1)
            idle.append((cpu_s(server.pid) - before) * 1000.0)
        return measure("chunkcast", stream.ws_url, server.pid, stream.push, 1 + IDLE_EVENTS,
                       n, args, tmp / f"load-chunkcast-{n}.log", idle_cpu_ms=median(idle))


def aggregate(runs: list[Measurement]) -> dict[str, Any]:
    events = [e for m in runs for e in m.events]
    done = [e for e in events if e["p50_ms"] is not None]

    def med(key: str) -> float | None:
        values = [float(e[key]) for e in done if e[key] is not None]
        return median(values) if values else None

    return {
        "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"), "max_ms": med("max_ms"),
        "min_ms": med("min_ms"), "throughput_per_s": med("throughput_per_s"),
        "worst_max_ms": max((float(e["max_ms"]) for e in done), default=None),
        "server_cpu_ms_per_event": med("server_cpu_ms"),
        "server_cpu_ms_without_viewers": median([m.idle_cpu_ms for m in runs]),
        "load_cpu_ms_per_event": med("load_cpu_ms"),
        "kb_per_conn": median([m.kb_per_conn for m in runs]),
        "missing": sum(e["expected"] - e["received"] for e in events),
        "connect_s": median([m.connect_s for m in runs]),
        "runs": [{"connected": m.connected, "connect_s": m.connect_s,
                  "load_processes": m.load_processes,
                  "rss_before_kb": m.rss_before_kb, "rss_after_kb": m.rss_after_kb,
                  "kb_per_conn": m.kb_per_conn, "events": m.events, "warmup": m.warmup}
                 for m in runs],
    }


def per_viewer_us(cpu_ms: float | None, n: int) -> float | None:
    return None if cpu_ms is None else cpu_ms * 1000.0 / n


def check_targets(at: dict[str, Any]) -> dict[str, Any]:
    ours = at["chunkcast"]
    return {
        "p99_ms": ours["p99_ms"],
        "p99_ok": (ours["p99_ms"] or math.inf) <= TARGET_P99_MS,
        "kb_per_conn": ours["kb_per_conn"],
        "kb_ok": ours["kb_per_conn"] <= TARGET_KB_PER_CONN,
        "throughput_ratio": at["throughput_ratio"],
        "ratio_ok": (at["throughput_ratio"] or 0.0) >= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="10000,25000,50000",
                        help="comma-separated viewer counts (default 10000,25000,50000)")
    parser.add_argument("--events", type=int, default=5, help="measured events per N")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured first events per N")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=100,
                        help="concurrent WebSocket handshakes of each load process")
    parser.add_argument("--per-process", type=int, default=12_500,
                        help="most viewers one load process opens (default 12500)")
    parser.add_argument("--sources", default="127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5",
                        help="loopback addresses the load processes connect from, one each "
                             "in turn (the servers listen on 127.0.0.1)")
    parser.add_argument("--client", choices=("frames", "websockets"), default="frames",
                        help="the load processes' WebSocket client: a bare frame parser "
                             "(default) or websockets' (see bench/fanout_load.py)")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="idle seconds before reading RSS")
    parser.add_argument("--gap", type=float, default=0.5, help="pause between events (s)")
    parser.add_argument("--event-timeout", type=float, default=30.0)
    parser.add_argument("--connect-timeout", type=float, default=600.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="event loop of the load processes and the raw server")
    args = parser.parse_args()
    counts = [int(v) for v in args.viewers.split(",") if v.strip()]
    args.sources = [a.strip() for a in args.sources.split(",") if a.strip()]
    if args.events < 1 or not counts or args.per_process < 1 or not args.sources:
        parser.error("need at least one event, viewer count, viewer per process and source")

    fd_limit = raise_nofile_limit()
    ports = source_ports()
    skipped = {n: why for n in counts if (why := LoadPlan.of(
        n, args.per_process, args.sources).unmeasurable(n, fd_limit, ports)) is not None}
    for n, why in skipped.items():
        print(f"{n} viewers: NOT MEASURED here: {why}", flush=True)
    measured = [n for n in counts if n not in skipped]

    results: dict[int, dict[str, list[Measurement]]] = {
        n: {"chunkcast": [], "raw": []} for n in measured}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fanout-") as tmp_name:
        tmp = Path(tmp_name)
        chunks = make_chunks(tmp / "chunks",
                             max(20, 1 + IDLE_EVENTS + args.warmup + args.events))
        for run in range(args.runs):
            for n in measured:
                print(f"run {run + 1}/{args.runs}, {n} viewers", flush=True)
                order = ("raw", "chunkcast") if run % 2 == 0 else ("chunkcast", "raw")
                for name in order:
                    if name == "raw":
                        results[n]["raw"].append(measure_raw(n, args, tmp))
                    else:
                        results[n]["chunkcast"].append(measure_chunkcast(n, args, tmp, chunks))
    elapsed = time.monotonic() - started

    table: dict[str, Any] = {}
    print()
    print(f"fan-out of one segment event, medians over {args.events} events x {args.runs} "
          f"run(s) per N (delivery ms = receive wall clock - send wall clock)")
    head = (f"{'viewers':>8} | {'chunkcast p50/p99/max ms':>25} | {'raw p50/p99/max ms':>20} | "
            f"{'viewers/s chunkcast / raw':>26} | {'ratio':>5} | {'KB/conn cc / raw':>16}")
    print(head)
    print("-" * len(head))
    for n in measured:
        ours = aggregate(results[n]["chunkcast"])
        raw = aggregate(results[n]["raw"])
        ratio = (ours["throughput_per_s"] / raw["throughput_per_s"]
                 if ours["throughput_per_s"] and raw["throughput_per_s"] else None)
        fanout_ms = (None if ours["server_cpu_ms_per_event"] is None else
                     max(0.0, ours["server_cpu_ms_per_event"]
                         - ours["server_cpu_ms_without_viewers"]))
        table[str(n)] = {"chunkcast": ours, "raw": raw, "throughput_ratio": ratio,
                         "cpu_us_per_viewer": {
                             "chunkcast_fanout": per_viewer_us(fanout_ms, n),
                             "raw": per_viewer_us(raw["server_cpu_ms_per_event"], n),
                             "load_chunkcast": per_viewer_us(ours["load_cpu_ms_per_event"], n),
                             "load_raw": per_viewer_us(raw["load_cpu_ms_per_event"], n)}}
        print(f"{n:>8} | "
              f"{fmt(ours['p50_ms']):>7} /{fmt(ours['p99_ms']):>7} /{fmt(ours['max_ms']):>7} | "
              f"{fmt(raw['p50_ms']):>5} /{fmt(raw['p99_ms']):>5} /{fmt(raw['max_ms']):>5} | "
              f"{fmt(ours['throughput_per_s'], 0):>12} /{fmt(raw['throughput_per_s'], 0):>12} | "
              f"{fmt(ratio, 2):>5} | {ours['kb_per_conn']:>7.1f} /{raw['kb_per_conn']:>7.1f}")
        for name, agg in (("chunkcast", ours), ("raw", raw)):
            if agg["missing"]:
                print(f"{'':>8}   {name}: {agg['missing']} deliveries missing (timed out)")
    for n, why in skipped.items():
        print(f"{n:>8} | not measured: {why}")
    print("worst event, time until the last viewer (ms): " + ", ".join(
        f"{n}: chunkcast {fmt(table[str(n)]['chunkcast']['worst_max_ms'])}"
        f" / raw {fmt(table[str(n)]['raw']['worst_max_ms'])}" for n in measured))
    print("server CPU per event, median ms (chunkcast includes chunk handling, shown in "
          "brackets: the same event with no viewer): " + ", ".join(
        f"{n}: chunkcast {fmt(table[str(n)]['chunkcast']['server_cpu_ms_per_event'], 0)}"
        f" [{fmt(table[str(n)]['chunkcast']['server_cpu_ms_without_viewers'], 0)}]"
        f" / raw {fmt(table[str(n)]['raw']['server_cpu_ms_per_event'], 0)}" for n in measured))
    print("load processes' CPU per event (median ms, all processes): " + ", ".join(
        f"{n}: {fmt(table[str(n)]['chunkcast']['load_cpu_ms_per_event'], 0)}"
        f" / {fmt(table[str(n)]['raw']['load_cpu_ms_per_event'], 0)}" for n in measured))
    print("CPU per viewer per event, us (server fan-out: chunkcast without the chunk handling "
          "/ raw; load: chunkcast / raw run): " + ", ".join(
        f"{n}: server {fmt(c['chunkcast_fanout'])} / {fmt(c['raw'])}, load "
        f"{fmt(c['load_chunkcast'])} / {fmt(c['load_raw'])}"
        for n in measured for c in [table[str(n)]["cpu_us_per_viewer"]]))

    verdicts = {str(n): check_targets(table[str(n)]) for n in measured}
    for n in measured:
        v = verdicts[str(n)]
        print(f"targets at {n}{' (the target N)' if n == TARGET_VIEWERS else ''}: "
              f"{v['kb_per_conn']:.1f} KB/conn "
              f"({'ok' if v['kb_ok'] else 'MISSED'}, <= {TARGET_KB_PER_CONN:.0f}); "
              f"throughput ratio {fmt(v['throughput_ratio'], 2)} "
              f"({'ok' if v['ratio_ok'] else 'MISSED'}, >= {TARGET_RATIO}); "
              f"p99 {fmt(v['p99_ms'])} ms (capacity counts N with p99 <= "
              f"{TARGET_P99_MS:.0f}: {'yes' if v['p99_ok'] else 'no'})")
    if TARGET_VIEWERS not in measured:
        print(f"the target N ({TARGET_VIEWERS}) was not measured"
              f"{': ' + skipped[TARGET_VIEWERS] if TARGET_VIEWERS in skipped else ''}")
    print(f"total {elapsed:.0f} s")
    path = write_result("fanout", {
        "settings": {"viewers": counts, "events": args.events, "warmup": args.warmup,
                     "runs": args.runs, "concurrency": args.concurrency,
                     "per_process": args.per_process, "sources": args.sources,
                     "client": args.client,
                     "settle_s": args.settle, "gap_s": args.gap, "loop": args.loop,
                     "server_env": SERVER_ENV, "rendition": RENDITION, "cpus": os.cpu_count(),
                     "open_files_limit": fd_limit, "ports_per_source": ports},
        "results": table,
        "not_measured": {str(n): why for n, why in skipped.items()},
        "targets": {"viewers": TARGET_VIEWERS, "p99_ms": TARGET_P99_MS,
                    "kb_per_conn": TARGET_KB_PER_CONN, "throughput_ratio": TARGET_RATIO},
        "verdicts": verdicts, "seconds": elapsed,
    })
    print(f"wrote {path}")
    write_viewers_capacity(measured, results, table, path)


def write_viewers_capacity(counts: list[int], results: dict[int, dict[str, list[Measurement]]],
                           table: dict[str, Any], path: Path) -> None:
    """Viewers per API process for ``chunkcast plan``: the largest N whose median p99 met
    the target, every viewer connected and no delivery missing."""
    held = [n for n in counts
            if (table[str(n)]["chunkcast"]["p99_ms"] or math.inf) <= TARGET_P99_MS
            and table[str(n)]["chunkcast"]["missing"] == 0
            and all(m.connected == n for m in results[n]["chunkcast"])]
    if not held:
        print(f"no capacity written: no N met p99 <= {TARGET_P99_MS:.0f} ms")
        return
    best = max(held)
    p99 = table[str(best)]["chunkcast"]["p99_ms"]
    written = write_capacity("fanout", {API_VIEWERS: Measured(
        best, "viewers", f"largest N measured with p99 {p99:.0f} ms <= {TARGET_P99_MS:.0f} "
        f"ms, none missing; {path.name}")}, path)
    print(f"capacity: {best} viewers per API process -> {written}")


if __name__ == "__main__":
    main()
