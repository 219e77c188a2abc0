"""``chunkcast deploy nginx``: an edge cache and a load balancer, each a complete nginx
config that runs as ``nginx -p DIR -c DIR/{edge,lb}.conf`` (pid, logs, cache and temp files
under DIR)."""

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined

from chunkcast.domain.errors import InvalidInput

_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")
_LISTEN = re.compile(r"^((\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):)?\d{1,5}$")
_SECRET = re.compile(r"[0-9a-f]{64}")
# What would end a token, a directive or a block in nginx's syntax, or start a variable, a
# string or a comment: none of it may be in the folder written into the configs.
_UNSAFE_IN_PATH = re.compile(r"[\s;{}\"'$#\\\x00-\x1f\x7f]")


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
    edge_secret: str  # sent to the API in X-Chunkcast-Edge: objects and privacy answers
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
    if not _SECRET.fullmatch(plan.playback_secret):
        raise InvalidInput("the playback secret must be 64 hex digits")
    if not _SECRET.fullmatch(plan.edge_secret):
        raise InvalidInput("the edge secret must be 64 hex digits")
    if any(_UNSAFE_IN_PATH.search(str(out)) for out in (plan.out, plan.out.resolve())):
        raise InvalidInput(f"--out {str(plan.out)!r}: the folder's path may not hold "
                           "whitespace, control characters or any of ; { } \" ' $ # \\")
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
    """Write the configs (mode 0600 from the start: edge.conf holds secrets), and the
    folders nginx expects under DIR. Nothing is written when the plan is refused."""
    texts = render(plan)
    for folder in ("logs", "cache", "temp"):
        (plan.out / folder).mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in texts.items():
        path = plan.out / name
        # Never a symlink, never readable by others even for a moment (an existing file
        # keeps its mode through O_CREAT, hence the fchmod before anything is written).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(fd, 0o600)
            out.write(text)
        written.append(path)
    return written
