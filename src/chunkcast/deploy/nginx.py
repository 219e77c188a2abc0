"""``chunkcast deploy nginx``: an edge cache and a load balancer, each a complete nginx
config that runs as ``nginx -p DIR -c DIR/{edge,lb}.conf`` (pid, logs, cache and temp files
under DIR)."""

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined

from chunkcast.domain.errors import InvalidInput

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")
_LISTEN = re.compile(r"^((\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?\d{1,5}$")


@dataclass(frozen=True)
class NginxPlan:
    """What the two configs are made of."""

    apis: list[str]  # HOST:PORT of each API process
    # Where objects come from: an API process or balancer (``http://HOST:PORT``: it serves
    # ``/media/`` and ``/private/`` from local storage, or redirects to S3), or a bucket read
    # path-style (``http://HOST:PORT/BUCKET``: object ``KEY`` at ``/BUCKET/KEY``).
    origin: str
    edge_listen: str  # PORT or HOST:PORT
    lb_listen: str
    playback_secret: str  # checks signed links of private videos (nginx secure_link)
    out: Path
    cache_size: str = "10g"


def check_plan(plan: NginxPlan) -> NginxPlan:
    """Refuse what would make a broken or unsafe config, with the reason."""
    if not plan.apis:
        raise InvalidInput("at least one --api HOST:PORT is needed")
    for api in plan.apis:
        if not _HOST_PORT.fullmatch(api):
            raise InvalidInput(f"--api {api!r}: expected HOST:PORT")
    for name, listen in (("--edge-listen", plan.edge_listen), ("--lb-listen", plan.lb_listen)):
        if not _LISTEN.fullmatch(listen):
            raise InvalidInput(f"{name} {listen!r}: expected PORT or HOST:PORT")
    origin = urlsplit(plan.origin)
    if origin.scheme not in ("http", "https") or not origin.netloc \
            or not re.fullmatch(r"(/[A-Za-z0-9._-]+)*/?", origin.path) \
            or origin.query or origin.fragment or any(c in origin.netloc for c in ' ;{}"\'$'):
        raise InvalidInput(f"--origin {plan.origin!r}: expected http(s)://HOST[:PORT] (an "
                           "API process or balancer) or http(s)://HOST[:PORT]/BUCKET")
    if not re.fullmatch(r"[0-9a-f]{64}", plan.playback_secret):
        raise InvalidInput("the playback secret must be 64 hex digits")
    if not re.fullmatch(r"\d+[kmg]", plan.cache_size):
        raise InvalidInput(f"cache size {plan.cache_size!r}: expected e.g. 10g")
    return plan


def render(plan: NginxPlan) -> dict[str, str]:
    """``{file name: text}`` for ``edge.conf`` and ``lb.conf``."""
    check_plan(plan)
    env = Environment(loader=PackageLoader("chunkcast.deploy"), undefined=StrictUndefined,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                      autoescape=False)  # noqa: S701 (not HTML)
    origin = urlsplit(plan.origin)
    values = {"plan": plan, "origin": f"{origin.scheme}://{origin.netloc}",
              "bucket": origin.path.rstrip("/"), "prefix": plan.out.resolve()}
    return {name: env.get_template(f"{name}.j2").render(values)
            for name in ("edge.conf", "lb.conf")}


def write(plan: NginxPlan) -> list[Path]:
    """Write the configs, and the folders nginx expects under DIR."""
    texts = render(plan)
    for folder in ("logs", "cache", "temp"):
        (plan.out / folder).mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        path = plan.out / name
        path.write_text(text)
        path.chmod(0o600)  # edge.conf holds the playback secret
        written.append(path)
    return written
