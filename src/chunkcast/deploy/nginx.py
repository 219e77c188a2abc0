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
    origin: str  # base URL of the object origin (an API: ``/media/`` and ``/private/``)
    edge_listen: str  # PORT or HOST:PORT
    lb_listen: str
    playback_secret: str  # checks signed links of private videos (nginx secure_link)
    out: Path
    cache_size: str = "10g"
    resolver: str | None = None  # DNS for the origin's redirects to S3 by host name


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
            or origin.path.strip("/") or origin.query or origin.fragment \
            or any(c in plan.origin for c in ' ;{}"\'$'):
        raise InvalidInput(f"--origin {plan.origin!r}: expected http(s)://HOST[:PORT] "
                           "(an API process or balancer)")
    if not re.fullmatch(r"[0-9a-f]{64}", plan.playback_secret):
        raise InvalidInput("the playback secret must be 64 hex digits")
    if not re.fullmatch(r"\d+[kmg]", plan.cache_size):
        raise InvalidInput(f"cache size {plan.cache_size!r}: expected e.g. 10g")
    if plan.resolver is not None and not re.fullmatch(r"[0-9A-Fa-f:.\[\] ]+", plan.resolver):
        raise InvalidInput(f"--resolver {plan.resolver!r}: expected addresses")
    return plan


def render(plan: NginxPlan) -> dict[str, str]:
    """``{file name: text}`` for ``edge.conf`` and ``lb.conf``."""
    check_plan(plan)
    env = Environment(loader=PackageLoader("chunkcast.deploy"), undefined=StrictUndefined,
                      keep_trailing_newline=True, autoescape=False)  # noqa: S701 (not HTML)
    values = {"plan": plan, "origin": plan.origin.rstrip("/"), "prefix": plan.out.resolve()}
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
        written.append(path)
    return written
