"""The ``chunkcast`` command line."""

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
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

console = Console(stderr=True)


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, **{k: v for k, v in overrides.items() if v is not None})


def _serve(settings: Settings, host: str, port: int, *, run_workers: bool) -> int:
    import uvicorn

    from chunkcast.adapters.db.migrate import upgrade
    from chunkcast.api.app import create_app
    from chunkcast.runtime import open_platform

    upgrade(settings.database_url)
    app = create_app(open_platform(settings), run_workers=run_workers)
    # A server holding thousands of long-lived connections: keep start-up objects out of
    # the collector's way and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False,
                ws_max_size=1 << 16, ws_per_message_deflate=False,
                timeout_graceful_shutdown=10)
    return 0


DEMO_TITLE = "Demo: live test pattern"


def _demo(settings: Settings, children: list[subprocess.Popen[bytes]]) -> None:
    """Once the server answers, go live with the test pattern (burnt-in wall clock)."""
    import httpx

    from chunkcast.client import ApiError, Client

    for _ in range(300):
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{settings.public_url}/healthz", timeout=1).status_code == 200:
                break
        time.sleep(0.1)
    try:
        with Client(settings.public_url, settings.admin_token) as client:
            stream = client.create_stream(DEMO_TITLE)
    except (ApiError, httpx.HTTPError) as exc:
        console.print(f"[red]demo stream failed: {exc}[/]")
        return
    log = (settings.data_dir / "demo-broadcast.log").open("ab")
    children.append(subprocess.Popen(
        [sys.executable, "-m", "chunkcast", "broadcast", "testsrc", "--stream", stream["id"],
         f"--key={stream['stream_key']}", "--server", settings.public_url],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True))
    console.print(f"demo stream live: [bold]{stream['playback']['hls']}[/]")


def cmd_up(args: argparse.Namespace) -> int:
    public = None if "CHUNKCAST_PUBLIC_URL" in os.environ else f"http://{args.host}:{args.port}"
    settings = prepare(_settings(args, public_url=public))
    console.print(f"chunkcast is starting at [bold]{settings.public_url}[/]")
    console.print(f"data dir: {settings.data_dir}")
    console.print(f"admin token: [bold]{settings.admin_token}[/]")
    children: list[subprocess.Popen[bytes]] = []
    if args.demo:
        threading.Thread(target=_demo, args=(settings, children), daemon=True).start()
    try:
        return _serve(settings, args.host, args.port, run_workers=True)
    finally:
        for child in children:  # the demo broadcaster ends its stream on SIGINT
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def cmd_api(args: argparse.Namespace) -> int:
    return _serve(prepare(_settings(args), generate=False), args.host, args.port,
                  run_workers=False)


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


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from chunkcast.adapters.db.migrate import upgrade

    settings = _settings(args)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    console.print("database is up to date")
    return 0


def _bar(*columns: Any) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), *columns, console=console)


def cmd_upload(args: argparse.Namespace) -> int:
    from chunkcast.client import ApiError, Client

    path: Path = args.file
    if not path.is_file():
        console.print(f"[red]no such file: {path}[/]")
        return 2
    settings = _settings(args)
    server = args.server or settings.public_url
    token = args.token or read_admin_token(settings)
    try:
        with Client(server, token) as client:
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
    except ApiError as exc:
        console.print(f"[red]error: {exc.message}[/]")
        return 1
    if video["status"] == "failed":
        console.print(f"[red]video {video_id} failed: {video['error']}[/]")
        return 1
    names = ", ".join(r["name"] for r in video["renditions"])
    console.print(f"video {video_id} is ready ({names})")
    print(f"watch: {video['playback']['watch']}")
    print(f"hls:   {video['playback']['hls']}")
    return 0


def cmd_stream_create(args: argparse.Namespace) -> int:
    from chunkcast.client import ApiError, Client

    settings = _settings(args)
    server = args.server or settings.public_url
    try:
        with Client(server, args.token or read_admin_token(settings)) as client:
            stream = client.create_stream(args.title, private=args.private)
    except ApiError as exc:
        console.print(f"[red]error: {exc.message}[/]")
        return 1
    print(f"id:         {stream['id']}")
    print(f"stream key: {stream['stream_key']}  (shown once; keep it secret)")
    print(f"broadcast:  {stream['broadcast']}")
    print(f"hls:        {stream['playback']['hls']}")
    print(f"watch:      {stream['playback']['watch']}")
    return 0


def cmd_deploy_nginx(args: argparse.Namespace) -> int:
    from rich.markup import escape

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
                     cache_size=args.cache_size)
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
    parser.add_argument("--server", help="API URL (default: CHUNKCAST_PUBLIC_URL)")
    parser.add_argument("--token", help="admin token (default: the local data dir's)")


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
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run transcode workers (distributed)")
    worker.add_argument("--group", action="append", help="rendition group (repeatable)")
    worker.set_defaults(func=cmd_worker)

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
    nginx.set_defaults(func=cmd_deploy_nginx)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except WeakSecret as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
