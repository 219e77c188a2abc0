"""The ``chunkcast`` command line."""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from chunkcast.config import (
    MIN_SECRET_KEY_CHARS,
    Settings,
    WeakSecret,
    check_secret,
    load_settings,
    prepare,
    read_admin_token,
    read_secret_key,
)

if TYPE_CHECKING:
    from chunkcast.client import Target

console = Console(stderr=True)


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, **{k: v for k, v in overrides.items() if v is not None})


DEMO_TITLE = "Demo: live test pattern"
DEMO_STOP_S = 10.0  # the demo broadcaster gets this long to end its stream when `up` stops


class DemoBroadcast:
    """``up --demo``: once the server answers, a stream and a ``chunkcast broadcast
    testsrc`` child going live on it (the test pattern with the wall clock burnt in).

    The child dies with this process. It is started with PR_SET_PDEATHSIG by a thread that
    lives exactly as long as it (the kernel follows the thread that forked, not the
    process), in a session of its own so a terminal's Ctrl-C reaches ``up`` alone, which
    stops it in order (:meth:`stop`: SIGINT, so it closes its last chunk and ends the
    stream, before the server stops; SIGKILL to its group if it hangs). Its ffmpeg dies
    with it the same way."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._log = settings.data_dir / "demo-broadcast.log"
        self._lock = threading.Lock()  # orders starting the child against stopping
        self._stopping = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="demo-broadcast", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from chunkcast.media.process import die_with_parent

        stream = self._create_stream()
        if stream is None:
            return
        with self._lock, self._log.open("ab") as log:
            if self._stopping.is_set():
                return
            self._child = child = subprocess.Popen(
                [sys.executable, "-m", "chunkcast", "broadcast", "testsrc", "--stream",
                 stream["id"], f"--key={stream['stream_key']}",
                 "--server", self._settings.public_url],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                preexec_fn=die_with_parent)
        console.print(f"Demo stream: [bold]{stream['playback']['watch']}[/]", highlight=False)
        code = child.wait()  # this thread must outlive the child: see the class docstring
        if not self._stopping.is_set():
            console.print(f"[red]the demo broadcaster stopped (exit code {code}): see "
                          f"{self._log}[/]", highlight=False)

    def _create_stream(self) -> dict[str, Any] | None:
        import httpx

        from chunkcast.client import ApiError, Client

        healthz = f"{self._settings.public_url}/healthz"
        while not self._stopping.wait(0.1):  # the server is starting in the main thread
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(healthz, timeout=1).status_code == 200:
                    break
        if self._stopping.is_set():
            return None
        try:
            with Client(self._settings.public_url, self._settings.admin_token) as client:
                return client.create_stream(DEMO_TITLE)
        except (ApiError, httpx.HTTPError) as exc:
            console.print(f"[red]demo stream failed: {exc}[/]")
            return None

    def stop(self) -> None:
        """Stop the broadcaster (it ends its stream); at once if it has not started."""
        with self._lock:
            self._stopping.set()
            child = self._child
        if child is None or child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)
        try:
            child.wait(DEMO_STOP_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def cmd_up(args: argparse.Namespace) -> int:
    from chunkcast.serve import serve

    public = None if "CHUNKCAST_PUBLIC_URL" in os.environ else f"http://{args.host}:{args.port}"
    ingest_host = None if "CHUNKCAST_INGEST_HOST" in os.environ else args.host
    settings = prepare(_settings(args, public_url=public, ingest_host=ingest_host))
    log_file = settings.data_dir / "chunkcast.log"
    console.print(f"chunkcast is starting at [bold]{settings.public_url}[/]")
    console.print(f"data dir: {settings.data_dir}  (log: {log_file})")
    console.print(f"admin token: [bold]{settings.admin_token}[/]")
    demo = DemoBroadcast(settings) if args.demo else None
    if demo is not None:
        demo.start()
    try:
        return serve(settings, args.host, args.port, run_workers=True, log_file=log_file,
                     before_stop=demo.stop if demo is not None else None, run_file=True)
    finally:
        if demo is not None:
            demo.stop()  # the server could not start, or stopped for another reason


def cmd_api(args: argparse.Namespace) -> int:
    from chunkcast.serve import serve, serve_processes

    settings = prepare(_settings(args), generate=False)  # refused here, not in N children
    if args.processes < 1:
        console.print("[red]--processes must be at least 1[/]")
        return 2
    if args.processes == 1:
        return serve(settings, args.host, args.port, run_workers=False,
                     reuse_port=args.reuse_port)
    if args.port == 0:
        console.print("[red]--processes needs a fixed --port: each process binds it[/]")
        return 2
    config = ["--config", str(args.config)] if args.config else []
    return serve_processes([*config, "api", "--host", args.host, "--port", str(args.port),
                            "--reuse-port"], args.processes)


def cmd_worker(args: argparse.Namespace) -> int:
    from chunkcast.runtime import open_platform, run_worker

    settings = prepare(_settings(args), generate=False)
    unknown = set(args.group or ()) - set(settings.groups)
    if unknown:
        console.print(f"[red]unknown rendition group(s): {', '.join(sorted(unknown))}[/]")
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(open_platform(settings), args.group or None, stop)

    console.print(f"worker for {', '.join(args.group or settings.groups)} started")
    asyncio.run(main())
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from chunkcast.runtime import open_platform, run_ingest

    settings = prepare(_settings(args, ingest_host=args.host), generate=False)
    if not settings.rtmp_port and not settings.srt_port:
        console.print("[red]CHUNKCAST_RTMP_PORT and CHUNKCAST_SRT_PORT are both 0: "
                      "nothing to listen on[/]")
        return 2
    platform = open_platform(settings)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, args.host, registry=platform.metrics.registry)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_ingest(platform, stop)

    ports = [f"{name} {port}" for name, port in (("RTMP", settings.rtmp_port),
                                                ("SRT", settings.srt_port)) if port]
    console.print(f"ingest on {settings.ingest_host}: {', '.join(ports)}")
    asyncio.run(main())
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from chunkcast.adapters.db.migrate import upgrade

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    console.print("database is up to date")
    return 0


def _bar(*columns: Any) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), *columns, console=console)


def _fail(message: str) -> int:
    """One line on stderr, whatever the terminal's width; exit status 1."""
    console.print(f"[red]{escape(message)}[/]", soft_wrap=True, highlight=False)
    return 1


def _target(args: argparse.Namespace) -> "Target":
    """Where a client command sends its requests, and with which admin token: see
    :func:`chunkcast.client.find_server`."""
    from chunkcast.client import NoServer, find_server

    settings = _settings(args)
    server = args.server
    if server is None and "public_url" in settings.model_fields_set:
        try:
            server = _http_url(settings.public_url)
        except argparse.ArgumentTypeError as exc:
            raise NoServer(f"CHUNKCAST_PUBLIC_URL: {exc}") from None
    return find_server(settings.data_dir, read_admin_token(settings), server=server,
                       token=args.token or settings.admin_token or None)


def cmd_upload(args: argparse.Namespace) -> int:
    from chunkcast.client import Client

    path: Path = args.file
    if not path.is_file():
        console.print(f"[red]no such file: {escape(str(path))}[/]", soft_wrap=True)
        return 2
    with Client.to(_target(args)) as client:
        size = path.stat().st_size
        created = client.create_video(args.title or path.stem, size, private=args.private)
        video_id = created["id"]
        with _bar(DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task("upload", total=size)
            parts = client.put_file(created["upload"], path, lambda n: bar.advance(task, n))
        video = client.complete(video_id, parts)
        with _bar(TaskProgressColumn(), TextColumn("{task.fields[status]}")) as bar:
            task = bar.add_task("transcode", total=100, status=video["status"])
            while video["status"] not in ("ready", "failed"):
                time.sleep(0.5)
                video = client.video(video_id)
                bar.update(task, completed=video["progress"], status=video["status"])
    if video["status"] == "failed":
        return _fail(f"video {video_id} failed: {video['error']}")
    names = ", ".join(r["name"] for r in video["renditions"])
    console.print(f"video {video_id} is ready ({names})", highlight=False)
    print(f"watch: {video['playback']['watch']}")
    print(f"hls:   {video['playback']['hls']}")
    return 0


def cmd_stream_create(args: argparse.Namespace) -> int:
    from chunkcast.client import Client

    target = _target(args)
    with Client.to(target) as client:
        stream = client.create_stream(args.title, private=args.private)
    client_server = target.url
    print(f"id:         {stream['id']}")
    print(f"stream key: {stream['stream_key']}  (shown once; a new one: "
          f"POST /api/v1/streams/{stream['id']}/key)")
    print(f"broadcast:  {stream['broadcast']}")
    print(f"hls:        {stream['playback']['hls']}")
    print(f"watch:      {stream['playback']['watch']}")
    _print_publish_urls(_settings(args), client_server, stream["stream_key"])
    return 0


def _print_publish_urls(settings: Settings, server: str, key: str) -> None:
    """OBS's settings and the ingest URLs (ports from this configuration, the same as the
    ingest processes')."""
    from chunkcast.ingest.urls import KEYFRAME_ADVICE, ingest_host, publish_urls

    urls = publish_urls(ingest_host(settings.ingest_public_host, server),
                        rtmp_port=settings.rtmp_port, srt_port=settings.srt_port, key=key)
    if urls.rtmp_server:
        print(f"obs server: {urls.rtmp_server}")
        print(f"obs key:    {key}  ({KEYFRAME_ADVICE})")
        print(f"rtmp:       {urls.rtmp_url}")
    if urls.srt_url:
        print(f"srt:        {urls.srt_url}")


def cmd_deploy_nginx(args: argparse.Namespace) -> int:
    from chunkcast.deploy.nginx import NginxPlan, write
    from chunkcast.domain.errors import InvalidInput
    from chunkcast.domain.signing import edge_secret, playback_secret

    secret = read_secret_key(_settings(args))
    if not secret:
        console.print("[red]error: the edge checks signed links and proves itself to the API "
                      "with keys derived from the platform's secret key: set "
                      "CHUNKCAST_SECRET_KEY (or --config) as for the API processes[/]")
        return 2
    check_secret("CHUNKCAST_SECRET_KEY", secret, MIN_SECRET_KEY_CHARS)  # WeakSecret: exit 2
    plan = NginxPlan(apis=args.api, origin=args.origin, edge_listen=args.edge_listen,
                     lb_listen=args.lb_listen, playback_secret=playback_secret(secret),
                     edge_secret=edge_secret(secret), out=args.out,
                     cache_size=args.cache_size, user=args.user, cache_dir=args.cache_dir)
    try:
        written = write(plan)
    except InvalidInput as exc:
        console.print(f"[red]error: {escape(exc.message)}[/]")
        return 2
    except OSError as exc:  # e.g. a config path that is a symlink (refused)
        console.print(f"[red]error: cannot write the configs: {escape(str(exc))}[/]")
        return 2
    out = args.out.resolve()
    for path in written:
        print(f"wrote {path}")
    print(f"run:  nginx -p {out} -c {out}/edge.conf   and   nginx -p {out} -c {out}/lb.conf")
    print("then: CHUNKCAST_CDN_URL=<edge URL> and CHUNKCAST_PUBLIC_URL=<balancer URL> "
          "for every API process")
    return 0


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", type=_http_url, help="API URL (default: "
                        "CHUNKCAST_PUBLIC_URL, else the server running from the data dir)")
    parser.add_argument("--token", help="admin token (default: CHUNKCAST_ADMIN_TOKEN, else "
                        "the data dir's, sent only to the server running from it)")


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (
            parts.port is None or parts.port > 0)
    except ValueError:  # a port that is not a number
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chunkcast", description=__doc__)
    parser.add_argument("--config", type=Path, help="TOML settings file (env vars win)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole platform in one process (embedded)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--demo", action="store_true",
                    help="also go live with a test pattern showing the wall clock")
    up.set_defaults(func=cmd_up)

    api = sub.add_parser("api", help="run an API process (distributed)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--processes", type=int, default=1, metavar="N",
                     help="run N API processes sharing the port (SO_REUSEPORT), each "
                     "following the bus; they stop, and die, with this one (default 1)")
    api.add_argument("--reuse-port", action="store_true",
                     help="bind with SO_REUSEPORT, sharing the port with other API "
                     "processes of this user (what each of --processes does)")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run transcode workers (distributed)")
    worker.add_argument("--group", action="append", help="rendition group (repeatable)")
    worker.set_defaults(func=cmd_worker)

    ingest = sub.add_parser("ingest", help="take publishers (OBS, encoders, ffmpeg) over RTMP "
                            "and SRT (distributed)")
    ingest.add_argument("--host", default=None, help="address to bind (default: "
                        "CHUNKCAST_INGEST_HOST, else 127.0.0.1)")
    ingest.add_argument("--metrics-port", type=int, default=0,
                        help="serve Prometheus /metrics on this port (default: off)")
    ingest.set_defaults(func=cmd_ingest)

    upload = sub.add_parser("upload", help="upload a file and wait until it plays")
    upload.add_argument("file", type=Path)
    upload.add_argument("--title")
    upload.add_argument("--private", action="store_true",
                        help="playable only through signed links (printed at the end)")
    _client_options(upload)
    upload.set_defaults(func=cmd_upload)

    stream = sub.add_parser("stream", help="live streams")
    stream_sub = stream.add_subparsers(dest="stream_command", required=True)
    create = stream_sub.add_parser("create", help="create a stream and print its key")
    create.add_argument("--title", default="Live")
    create.add_argument("--private", action="store_true",
                        help="playable only through signed links (printed)")
    _client_options(create)
    create.set_defaults(func=cmd_stream_create)

    from chunkcast import broadcaster

    broadcast = sub.add_parser("broadcast", help="go live: encode SOURCE in real time and send "
                               "it chunk by chunk")
    broadcaster.add_arguments(broadcast)
    broadcast.set_defaults(func=broadcaster.cmd_broadcast)

    deploy = sub.add_parser("deploy", help="write deployment configs")
    deploy_sub = deploy.add_subparsers(dest="deploy_command", required=True)
    nginx = deploy_sub.add_parser("nginx", help="an nginx edge cache (edge.conf) and load "
                                  "balancer (lb.conf)")
    nginx.add_argument("--api", action="append", required=True, metavar="HOST:PORT",
                       help="an API process (repeatable)")
    nginx.add_argument("--origin", required=True, metavar="URL",
                       help="where the edge fetches objects: an API process or balancer "
                       "(http://HOST:PORT), or a bucket it may read (http://HOST:PORT/BUCKET)")
    nginx.add_argument("--edge-listen", required=True, metavar="[HOST:]PORT")
    nginx.add_argument("--lb-listen", required=True, metavar="[HOST:]PORT")
    nginx.add_argument("--out", type=Path, required=True, help="folder for the configs")
    nginx.add_argument("--cache-size", default="10g", help="edge cache size (default 10g)")
    nginx.add_argument("--user", default="", help="the user nginx's workers run as when it "
                       "is started as root (default: www-data, else nobody; for a plain "
                       "user, that user)")
    nginx.add_argument("--cache-dir", type=Path, default=None, help="folder for the cache and "
                       "temp files, made the worker user's own (default: --out)")
    nginx.set_defaults(func=cmd_deploy_nginx)

    from chunkcast import plan_cli

    plan = sub.add_parser("plan", help="plan a live event's machines, bandwidth and storage "
                          "from this platform's measured capacity (no server needed)")
    plan_cli.add_arguments(plan)
    plan.set_defaults(func=plan_cli.cmd_plan)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    from chunkcast.client import ApiError, NoServer, NotTheServer

    try:
        code: int = args.func(args)
    except WeakSecret as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    except (NoServer, NotTheServer) as exc:  # one line, not a traceback
        return _fail(exc.message)
    except ApiError as exc:
        return _fail(f"error: {exc.message}")
    return code


if __name__ == "__main__":
    sys.exit(main())
