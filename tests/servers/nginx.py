"""Throwaway nginx instances running the configs ``chunkcast deploy nginx`` writes.

Each runs in the foreground (``daemon off``) as a child process with its prefix in a temp
dir, and is stopped by PID. The edge's access log tells which requests went to the origin.
Started as root, nginx runs its workers as the configs' user, as a service would: pytest's
temp dirs are private to root, so the cache and temp folders then go to a folder of their
own that the workers can reach (``deploy nginx --cache-dir``)."""

import atexit
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.redis import _die_with_parent

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
_GLOBALS = "daemon off;"  # in the foreground, a child of the test
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Nginx:
    prefix: Path
    conf: str  # "edge" or "lb"
    port: int
    pid: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def access_log(self) -> list[str]:
        path = self.prefix / "logs" / f"{self.conf}-access.log"
        return path.read_text().splitlines() if path.exists() else []

    def wait_logged(self, request: str, timeout_s: float = 10.0) -> list[str]:
        """The access log once a line holds ``request`` (e.g. ``"PUT /media/``): nginx logs
        a request just after answering it."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = self.access_log()
            if any(request in line for line in lines):
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{request!r} not in the access log: {lines[-20:]}")
            time.sleep(0.05)

    def client_connections(self) -> int:
        """Connections viewers hold open to this nginx now (established TCP connections to
        its port, from the kernel's table): how a test knows its requests are all in."""
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
        return sum(1 for line in table
                   if (fields := line.split())[1].endswith(f":{self.port:04X}")
                   and fields[3] == "01")

    def upstream_requests(self, path: str) -> int:
        """Requests for ``path`` (query string ignored) that this nginx sent upstream."""
        pattern = re.compile(r'"[A-Z]+ ' + re.escape(path) + r'(\?\S*)? HTTP')
        return sum(1 for line in self.access_log()
                   if pattern.search(line) and "upstream=-" not in line)


def open_folder(prefix: str = "chunkcast-nginx-") -> Path:
    """A new folder in the system's temp dir that any user can enter (not list), removed at
    the end of the session: where nginx's workers can reach what is theirs."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o711)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def deploy_argv(out: Path, apis: list[str], origin: str, edge_port: int, lb_port: int,
                *options: str, host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "chunkcast", "deploy", "nginx",
            *[f"--api={a}" for a in apis], "--origin", origin,
            "--edge-listen", f"{host}:{edge_port}", "--lb-listen", f"{host}:{lb_port}",
            "--out", str(out), *options]


def deploy(out: Path, apis: list[str], origin: str, edge_port: int, lb_port: int,
           env: dict[str, str], *options: str, host: str = "127.0.0.1") -> None:
    """``chunkcast deploy nginx`` (``env`` says where the platform's secret key is), both
    listening on ``host``. As root, the cache goes to a folder of its own, unless
    ``options`` say where."""
    if os.geteuid() == 0 and not any(o.startswith("--cache-dir") for o in options):
        options = (*options, f"--cache-dir={open_folder() / 'state'}")
    done = subprocess.run(deploy_argv(out, apis, origin, edge_port, lb_port, *options,
                                      host=host),
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


STATIC_CONF = """\
user {user} {group};
worker_processes auto;
pid logs/{name}.pid;
error_log logs/{name}-error.log warn;
events {{ worker_connections 16384; }}
http {{
    sendfile on;
    tcp_nopush on;
    log_format plain '"$request" $status';
    access_log logs/{name}-access.log plain;
    client_body_temp_path temp/{name}-client;
    proxy_temp_path temp/{name}-proxy;
    fastcgi_temp_path temp/{name}-fastcgi;
    uwsgi_temp_path temp/{name}-uwsgi;
    scgi_temp_path temp/{name}-scgi;
    server {{
        listen 127.0.0.1:{port};
        location {location} {{ alias {root}/; }}
    }}
}}
"""


def write_static_conf(prefix: Path, name: str, port: int, location: str, root: Path) -> None:
    """``PREFIX/NAME.conf``: nginx serving the files under ``root`` at ``location`` (a plain
    web server, or a stand-in for a public bucket read path-style). Its workers run as the
    owner of ``root``, who can read the files, as a web server of that user's files would."""
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "temp").mkdir(exist_ok=True)
    owner = pwd.getpwuid(root.stat().st_uid)
    (prefix / f"{name}.conf").write_text(STATIC_CONF.format(
        name=name, port=port, location=location, root=root, user=owner.pw_name,
        group=grp.getgrgid(owner.pw_gid).gr_name))


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
        return True
    return False


def as_user(user: str, argv: list[str]) -> list[str]:
    """``argv`` run as ``user`` (with that user's groups), from root: ``setpriv`` execs it,
    so the PID is the program's own."""
    return ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}",
            "--init-groups", "--", *argv]


@contextlib.contextmanager
def run_nginx(prefix: Path, conf: str, port: int, *, user: str | None = None,
              host: str = "127.0.0.1", through: tuple[str, ...] = ()) -> Iterator[Nginx]:
    """``nginx -p PREFIX -c PREFIX/CONF.conf`` in the foreground until the block ends; as
    ``user`` when given (a plain user's nginx), else as whoever runs the tests; started
    through ``through`` (e.g. ``ip netns exec NAME``: on a host of its own, whose ``host``
    address it listens on)."""
    if not Path(NGINX).exists():
        raise RuntimeError("nginx not found: apt-get install -y nginx")
    argv = [NGINX, "-p", str(prefix), "-c", str(prefix / f"{conf}.conf"),
            "-e", str(prefix / "logs" / f"{conf}-startup.log"), "-g", _GLOBALS]
    if user is not None:
        argv = as_user(user, argv)
    proc = subprocess.Popen([*through, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_die_with_parent())
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(port, host):
            if proc.poll() is not None:
                error = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"nginx ({conf}) exited: {error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx ({conf}) is not listening on {port}")
            time.sleep(0.05)
        yield Nginx(prefix, conf, port, proc.pid, host)
    finally:
        proc.send_signal(signal.SIGTERM)  # fast shutdown
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
