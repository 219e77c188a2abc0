"""Running an API process under uvicorn: a stop in order, and a console people can read.

On SIGTERM or Ctrl-C, ``before_stop`` runs first (``chunkcast up --demo`` stops its demo
broadcaster, which ends its stream while the API still answers), then uvicorn shuts down
gracefully; the process then exits normally, so the callers' ``finally`` blocks run.

``up`` publishes its run file (:mod:`chunkcast.runfile`) once it listens, and removes it when
it stops, so the CLI run from the same data dir finds it, port included.

``chunkcast api --processes N`` (:func:`serve_processes`) runs N API processes on one port:
each a whole ``chunkcast api`` (its own live feed following the bus, its own name in the
audience reports) binding the port with SO_REUSEPORT, so the kernel spreads connections
over them, supervised by the process that started them.
"""

import contextlib
import gc
import json
import logging
import logging.handlers
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import uvicorn
from starlette.types import ASGIApp

from chunkcast import runfile
from chunkcast.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_FILE_BYTES, LOG_FILE_BACKUPS = 20 * 1024**2, 3  # the log file: at most ~80 MB in all
CHUNK_TIMING = "chunk timing %s"  # the per-chunk line of services/transcoding.py
SUMMARY_EVERY_S = 60.0
STARTUP_FAILURE = 3  # uvicorn's exit code for a server that could not start
RESTART_AFTER_S = 1.0  # an API process that exited on its own is started again after this
STOP_GRACE_S = 20.0  # API processes stopping get this long (uvicorn's own grace is 10 s)

log = logging.getLogger(__name__)


class ChunkTimingSummary(logging.StreamHandler[TextIO]):
    """The ``up`` console: the log as usual, except the per-chunk timing lines (one per
    chunk and rendition group, every second; kept whole in the log file, where
    bench/latency.py reads them), summed up here at most once a minute."""

    def __init__(self, stream: TextIO | None = None, *, every_s: float = SUMMARY_EVERY_S
                 ) -> None:
        super().__init__(stream or sys.stderr)
        self._every_s = every_s
        self._count = 0
        self._transcode_s = 0.0
        self._since = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg != CHUNK_TIMING:
            super().emit(record)
            return
        self._count += 1  # emit runs under the handler's lock
        args = record.args if isinstance(record.args, tuple) else ()
        with contextlib.suppress(ValueError, KeyError, TypeError, IndexError):
            self._transcode_s += float(json.loads(str(args[0]))["transcode_s"])
        elapsed = time.monotonic() - self._since
        if elapsed < self._every_s:
            return
        super().emit(logging.makeLogRecord({
            **record.__dict__, "args": (),
            "msg": f"chunk transcodes in the last {elapsed:.0f} s: {self._count}, "
                   f"{self._transcode_s / self._count:.2f} s each on average "
                   "(each one is in the log file)"}))
        self._count, self._transcode_s, self._since = 0, 0.0, time.monotonic()


def log_to(path: Path, *, console: TextIO | None = None) -> None:
    """The whole log (INFO) into ``path`` (rotated), and a console that sums up the
    per-chunk lines instead of printing each."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in (logging.handlers.RotatingFileHandler(
                        path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS,
                        encoding="utf-8"),
                    ChunkTimingSummary(console)):
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
    root.setLevel(logging.INFO)


class _Stopped(Exception):
    """SIGTERM came back from uvicorn after it shut down: unwind instead of dying."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


class _Server(uvicorn.Server):
    """uvicorn, which tells ``on_listening`` the address it bound once it accepts
    connections, and on the first stop signal runs ``before_stop`` (in a thread: a signal
    handler must return at once) and only then shuts down."""

    def __init__(self, config: uvicorn.Config, before_stop: Callable[[], None] | None,
                 on_listening: Callable[[Any], None]) -> None:
        super().__init__(config)
        self._before_stop = before_stop
        self._on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            listening = [s for server in self.servers for s in server.sockets]
            # an IPv4 address first: the one a local client tries first
            listening.sort(key=lambda s: s.family != socket.AF_INET)
            self._on_listening(listening[0].getsockname())

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        before_stop, self._before_stop = self._before_stop, None
        if before_stop is None:  # nothing to do first, or a second signal: as uvicorn does
            super().handle_exit(sig, frame)
            return

        def stop_in_order() -> None:
            try:
                before_stop()
            finally:
                uvicorn.Server.handle_exit(self, sig, frame)

        threading.Thread(target=stop_in_order, name="stopping", daemon=True).start()


class _Published:
    """This run's file in ``data_dir``: written once the server listens, removed when it
    stops."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self.key = runfile.new_key()
        self._run: runfile.RunFile | None = None

    def listening(self, sockname: Any) -> None:
        self._run = runfile.RunFile(runfile.served_url(sockname), os.getpid(), self.key)
        runfile.write(self._data_dir, self._run)

    def withdraw(self) -> None:
        if self._run is not None:
            runfile.remove(self._data_dir, self._run)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT: other processes of this user
    binding the same way share the port, the kernel spreading connections over them."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def raise_open_files_limit() -> int:
    """The process's open-files soft limit raised to its hard limit; returns the new soft
    limit. Every WebSocket viewer holds a descriptor: a soft limit of 1024 (a common default)
    would cap an API process at about a thousand viewers whatever its memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft,
                        hard, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def serve(settings: Settings, host: str, port: int, *, run_workers: bool,
          log_file: Path | None = None, before_stop: Callable[[], None] | None = None,
          run_file: bool = False, reuse_port: bool = False) -> int:
    """Serve until SIGTERM or Ctrl-C (then 0), or 3 when the server could not start.
    ``log_file``: see :func:`log_to`; ``run_file``: publish the run file in the data dir
    while serving (``up``); ``reuse_port``: bind with SO_REUSEPORT (one of several
    processes on the port)."""
    from chunkcast.adapters.db.migrate import upgrade
    from chunkcast.api.app import create_app
    from chunkcast.runtime import open_platform

    upgrade(settings.database_url)
    app: ASGIApp = create_app(open_platform(settings), run_workers=run_workers)
    published = _Published(settings.data_dir) if run_file else None
    if published is not None:
        app = runfile.ProvesRun(app, published.key)
    # A server holding thousands of long-lived connections: keep start-up objects out of
    # the collector's way and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False,
                            ws_max_size=1 << 16, ws_per_message_deflate=False,
                            timeout_graceful_shutdown=10)
    if log_file is not None:  # after uvicorn's Config, which sets up its own loggers
        log_to(log_file)
    files = raise_open_files_limit()
    log.info("open-files limit %s: at most about %s WebSocket viewers", files,
             "unlimited" if files == resource.RLIM_INFINITY else max(0, files - 256))
    server = _Server(config, before_stop,
                     published.listening if published is not None else lambda _: None)
    # uvicorn raises the stopping signal again once it is down; SIGTERM then unwinds here
    # rather than ending the process on the spot.
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        sockets = None
        if reuse_port:
            try:
                sockets = [reuse_port_socket(host, port)]
            except OSError as exc:
                log.error("could not bind %s:%d with SO_REUSEPORT: %s", host, port, exc)
                return STARTUP_FAILURE
        server.run(sockets)
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if published is not None:
            published.withdraw()
    return 0 if server.started else STARTUP_FAILURE


def serve_processes(argv: list[str], count: int, *,
                    restart_after_s: float = RESTART_AFTER_S) -> int:
    """``count`` child processes ``python -m chunkcast ARGV`` (``api … --reuse-port``)
    until SIGTERM or Ctrl-C, then each is stopped gracefully (SIGTERM, waited for; SIGKILL
    after :data:`STOP_GRACE_S`) and 0 is returned. The children die with this process
    (PR_SET_PDEATHSIG), even when it is killed; they are in a process group of their own, so
    a terminal's Ctrl-C reaches this process alone, which stops them in order. A child that
    exits on its own (killed, crashed) is started again after ``restart_after_s``; one that
    could not start (exit status 3: the port is taken by another program, …) stops them
    all, and 3 is returned."""
    from chunkcast.media.process import die_with_parent

    def start() -> "subprocess.Popen[bytes]":
        return subprocess.Popen([sys.executable, "-m", "chunkcast", *argv],
                                stdin=subprocess.DEVNULL, process_group=0,
                                preexec_fn=die_with_parent)

    stop = threading.Event()

    def stop_on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, stop_on_signal)
                for signum in (signal.SIGTERM, signal.SIGINT)}
    children: list[subprocess.Popen[bytes]] = []
    code = 0
    try:
        children = [start() for _ in range(count)]
        log.info("%d API processes started: %s", count, ", ".join(str(c.pid) for c in children))
        restart_at: dict[int, float] = {}  # index of an exited child -> when to replace it
        while not stop.wait(0.1):
            for index, child in enumerate(children):
                if child.poll() is None:
                    continue
                if child.returncode == STARTUP_FAILURE:
                    log.error("API process %d could not start: stopping the others", child.pid)
                    code = STARTUP_FAILURE
                    stop.set()
                    break
                if index not in restart_at:
                    log.warning("API process %d exited (%s): another one starts in %g s",
                                child.pid, child.returncode, restart_after_s)
                    restart_at[index] = time.monotonic() + restart_after_s
                elif time.monotonic() >= restart_at[index]:
                    del restart_at[index]
                    children[index] = start()
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code
