"""The distributed deployment on hosts of its own: network namespaces on one switch, each
service bound to its host's address, so every call between roles crosses the network.

- ``data``: PostgreSQL, Redis and SeaweedFS (S3);
- ``api-1``, ``api-2``: ``chunkcast api`` on port 8000 each;
- ``worker-1``, ``worker-2``: ``chunkcast worker``;
- ``edge``: the nginx edge cache and the balancer (``chunkcast deploy nginx``), the edge's
  origin being the balancer;
- the clients' host is the test's own namespace: the broadcaster, the uploader and the
  viewers are given the balancer's and the edge's URLs only (and the S3 endpoint, through
  the pre-signed URLs the API hands out, as the design has clients upload).

Everything is stopped by PID and the namespaces removed on exit.
"""

import asyncio
import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from chunkcast.testing import Server
from tests.integration.cluster import (
    platform_env,
    run_role,
    stop_together,
    upgrade_database,
    wait_healthy,
)
from tests.servers.netns import Host, Network, network
from tests.servers.nginx import Nginx, deploy, run_nginx
from tests.servers.postgres import create_database, run_postgres
from tests.servers.redis import run_redis
from tests.servers.seaweedfs import run_seaweedfs

APIS = ("api-1", "api-2")
WORKERS = ("worker-1", "worker-2")
HOSTS = ("data", *APIS, *WORKERS, "edge")
API_PORT = 8000
EDGE_PORT = 8080
LB_PORT = 8090
START_TIMEOUT_S = 60.0


@dataclass
class HostCluster:
    root: Path
    net: Network
    env: dict[str, str]
    """The settings every role shares."""
    token: str
    apis: dict[str, Server]
    """Each API process, at its host's address (for the test's own looks, not clients)."""
    edge: Nginx
    lb: Nginx
    workers: dict[str, subprocess.Popen[bytes]]

    @property
    def client(self) -> Server:
        """The platform as clients reach it: through the balancer."""
        return Server(self.lb.url, self.root, self.token, self.lb.pid,
                      self.lb.prefix / "logs" / "lb-error.log")

    def log_files(self) -> list[Path]:
        return [*(api.log for api in self.apis.values()),
                *(self.root / name / "server.log" for name in self.workers),
                self.lb.prefix / "logs" / "lb-error.log",
                self.lb.prefix / "logs" / "edge-error.log"]


def listening(host: Host) -> list[str]:
    """``address:port`` of every TCP socket listening on ``host`` (its kernel's table)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        lines = subprocess.run(host.exec_argv(["cat", table]), capture_output=True, text=True,
                               check=True).stdout.splitlines()[1:]
        for fields in (line.split() for line in lines):
            if fields[3] == "0A":  # LISTEN
                address, port = fields[1].split(":")
                found.append(f"{_address(address)}:{int(port, 16)}")
    return found


def _address(hex_address: str) -> str:
    if len(hex_address) == 8:  # IPv4, little-endian
        return ".".join(str(b) for b in reversed(bytes.fromhex(hex_address)))
    return f"[{hex_address}]"


@contextlib.contextmanager
def host_cluster(root: Path, **settings: str) -> Iterator[HostCluster]:
    """The deployment above with ``settings`` (``CHUNKCAST_*``) on every role. Needs root
    (network namespaces): raises :class:`~tests.servers.netns.NetnsUnavailable` otherwise."""
    with contextlib.ExitStack() as stack:
        net = stack.enter_context(network(*HOSTS))
        data, edge_host = net["data"], net["edge"]
        # PostgreSQL's dir must be reachable by its OS user; SeaweedFS's short (unix sockets).
        pg = stack.enter_context(run_postgres(
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chunkcast-pg-"))),
            host=data.address, prefix=data.prefix))
        redis = stack.enter_context(run_redis(root / "redis", host=data.address,
                                              prefix=data.prefix))
        s3 = stack.enter_context(run_seaweedfs(
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chunkcast-weed-"))),
            host=data.address, prefix=data.prefix))
        lb_url = f"http://{edge_host.address}:{LB_PORT}"
        env = platform_env(s3, "chunkcast", asyncio.run(create_database(pg)), redis.url,
                           CHUNKCAST_PUBLIC_URL=lb_url,
                           CHUNKCAST_CDN_URL=f"http://{edge_host.address}:{EDGE_PORT}",
                           **settings)
        upgrade_database(env, root)
        procs = {name: stack.enter_context(run_role(
            ["api", "--host", net[name].address, "--port", str(API_PORT)], root / name, env,
            prefix=net[name].prefix)) for name in APIS}
        workers = {name: stack.enter_context(run_role(["worker"], root / name, env,
                                                      prefix=net[name].prefix))
                   for name in WORKERS}
        stack.callback(stop_together, [*workers.values(), *procs.values()])
        apis = {}
        for name, proc in procs.items():
            url = f"http://{net[name].address}:{API_PORT}"
            wait_healthy(url, proc, root / name / "server.log", START_TIMEOUT_S)
            apis[name] = Server(url, root / name, env["CHUNKCAST_ADMIN_TOKEN"], proc.pid,
                                root / name / "server.log")
        deploy(root / "nginx", [f"{net[name].address}:{API_PORT}" for name in APIS], lb_url,
               EDGE_PORT, LB_PORT, {"CHUNKCAST_SECRET_KEY": env["CHUNKCAST_SECRET_KEY"]},
               host=edge_host.address)
        lb = stack.enter_context(run_nginx(root / "nginx", "lb", LB_PORT,
                                           host=edge_host.address, through=edge_host.prefix))
        edge = stack.enter_context(run_nginx(root / "nginx", "edge", EDGE_PORT,
                                             host=edge_host.address,
                                             through=edge_host.prefix))
        yield HostCluster(root, net, env, env["CHUNKCAST_ADMIN_TOKEN"], apis, edge, lb,
                          workers)
