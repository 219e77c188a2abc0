"""Throwaway nginx instances running the configs ``chunkcast deploy nginx`` writes.

Each runs in the foreground (``daemon off``) as a child process with its prefix in a temp
dir, and is stopped by PID. The edge's access log tells which requests went to the origin."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers.redis import _die_with_parent

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# In the foreground; started as root (CI containers), the workers stay root too, since the
# prefix is in a private temp dir that nginx's default worker user cannot read.
_GLOBALS = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Nginx:
    prefix: Path
    conf: str  # "edge" or "lb"
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def upstream_requests(self, path: str) -> int:
        """Requests for ``path`` (query string ignored) that this nginx sent upstream."""
        pattern = re.compile(r'"[A-Z]+ ' + re.escape(path) + r'(\?\S*)? HTTP')
        return sum(1 for line in self.access_log()
                   if pattern.search(line) and "upstream=-" not in line)


def deploy(out: Path, apis: list[str], origin: str, edge_port: int, lb_port: int,
           env: dict[str, str]) -> None:
    """``chunkcast deploy nginx`` (``env`` says where the platform's secret key is)."""
    done = subprocess.run(
        [sys.executable, "-m", "chunkcast", "deploy", "nginx", *[f"--api={a}" for a in apis],
         "--origin", origin, "--edge-listen", f"127.0.0.1:{edge_port}",
         "--lb-listen", f"127.0.0.1:{lb_port}", "--out", str(out)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


STATIC_CONF = """\
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
    web server, or a stand-in for a public bucket read path-style)."""
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "temp").mkdir(exist_ok=True)
    (prefix / f"{name}.conf").write_text(STATIC_CONF.format(
        name=name, port=port, location=location, root=root))


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@contextlib.contextmanager
def run_nginx(prefix: Path, conf: str, port: int) -> Iterator[Nginx]:
    """``nginx -p PREFIX -c PREFIX/CONF.conf`` in the foreground until the block ends."""
    if not Path(NGINX).exists():
        raise RuntimeError("nginx not found: apt-get install -y nginx")
    argv = [NGINX, "-p", str(prefix), "-c", str(prefix / f"{conf}.conf"),
            "-e", str(prefix / "logs" / f"{conf}-startup.log"), "-g", _GLOBALS]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_die_with_parent())
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(port):
            if proc.poll() is not None:
                error = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"nginx ({conf}) exited: {error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx ({conf}) is not listening on {port}")
            time.sleep(0.05)
        yield Nginx(prefix, conf, port, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)  # fast shutdown
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
