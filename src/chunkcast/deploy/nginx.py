"""``chunkcast deploy nginx``: an edge cache and a load balancer, each a complete nginx
config that runs as ``nginx -p DIR -c DIR/{edge,lb}.conf`` (pid and logs under DIR, cache and
temp files under DIR or ``--cache-dir``).

nginx started as root (as a service is) runs its workers as the config's ``user``, and they
must reach the cache and temp folders: those are made the worker user's own (mode 0700, the
cache holds private videos' media), and a folder on the way that the user cannot enter is
refused before anything is written. Started by a plain user, nginx ignores ``user`` (with a
warning) and its workers run as that user, the default then."""

import grp
import os
import pwd
import re
import stat
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
    user: str = ""  # nginx's worker user; empty: :func:`default_user`
    cache_dir: Path | None = None  # holds cache/ and temp/; None: ``out``

    @property
    def worker_user(self) -> str:
        return self.user or default_user()

    @property
    def state_dir(self) -> Path:
        """Where the folders the workers write to go (``cache/``, ``temp/``)."""
        return (self.cache_dir or self.out).resolve()


WORKER_FOLDERS = ("cache", "temp")


def default_user() -> str:
    """The user nginx's workers run as unless told: for root, ``www-data`` (Debian's and
    Ubuntu's nginx user) if there is one, else ``nobody``; for anyone else, themselves
    (nginx started by a plain user cannot switch users)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        return pwd.getpwnam("www-data").pw_name
    except KeyError:
        return "nobody"


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
    if plan.cache_dir is not None and any(
            _UNSAFE_IN_PATH.search(str(d)) for d in (plan.cache_dir, plan.state_dir)):
        raise InvalidInput(f"--cache-dir {str(plan.cache_dir)!r}: the folder's path may not "
                           "hold whitespace, control characters or any of ; { } \" ' $ # \\")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\$?", plan.worker_user):
        raise InvalidInput(f"--user {plan.worker_user!r}: expected a user name")
    return plan


def check_folders(plan: NginxPlan) -> tuple[pwd.struct_passwd, str]:
    """The worker user and its group, once it is known that the folders can be made its
    own and that it can reach them; refuse, with the reason, when not."""
    name = plan.worker_user
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise InvalidInput(f"--user {name!r}: no such user") from None
    if os.geteuid() != 0 and user.pw_uid != os.geteuid():
        raise InvalidInput(f"--user {name!r}: only root can give nginx's cache folders to "
                           "another user (run this as root, or leave --user out)")
    blocked = _first_closed(plan.state_dir, user)
    if blocked is not None:
        options = "--cache-dir" if plan.cache_dir is not None else "--out or a --cache-dir"
        raise InvalidInput(
            f"nginx's workers run as {name!r}, which cannot enter {blocked} (mode "
            f"{stat.S_IMODE(blocked.stat().st_mode):04o}) on the way to its cache: choose a "
            f"{options} it can reach (e.g. /var/cache/chunkcast-nginx), or another --user")
    for folder in WORKER_FOLDERS:
        path = plan.state_dir / folder
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise InvalidInput(f"{path} exists and is not a folder")
    return user, _group_name(user.pw_gid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _can_enter(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` may search the folder ``path`` (owner, group, then other bits, as
    the kernel decides; ACLs are not read)."""
    if user.pw_uid == 0:
        return True
    info = path.stat()
    if info.st_uid == user.pw_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in os.getgrouplist(user.pw_name, user.pw_gid):
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _first_closed(folder: Path, user: pwd.struct_passwd) -> Path | None:
    """The first existing folder from ``/`` down to ``folder`` that ``user`` cannot enter
    (the ones still to be made are made open to it)."""
    for path in [*reversed(folder.parents), folder]:
        if not path.exists():
            return None
        if not _can_enter(path, user):
            return path
    return None


def render(plan: NginxPlan) -> dict[str, str]:
    """``{file name: text}`` for ``edge.conf`` and ``lb.conf``."""
    check_plan(plan)
    env = Environment(loader=PackageLoader("chunkcast.deploy"), undefined=StrictUndefined,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                      autoescape=False)  # noqa: S701 (not HTML)
    origin = urlsplit(plan.origin)
    user = plan.worker_user
    group = _group_name(pwd.getpwnam(user).pw_gid) if _known(user) else user
    values = {"plan": plan, "origin": f"{origin.scheme}://{origin.netloc}",
              "bucket": origin.path.rstrip("/"), "prefix": plan.out.resolve(),
              "user": user, "group": group, "state": plan.state_dir}
    return {name: env.get_template(f"{name}.j2").render(values)
            for name in ("edge.conf", "lb.conf")}


def _known(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _make_folder(path: Path, mode: int) -> None:
    """``path`` and the folders above it that are missing, made with ``mode`` whatever the
    umask (so the worker user can pass through the ones made here)."""
    missing = [p for p in [*reversed(path.parents), path] if not p.exists()]
    for folder in missing:
        folder.mkdir(exist_ok=True)
        folder.chmod(mode)


def write(plan: NginxPlan) -> list[Path]:
    """Write the configs (mode 0600 from the start: edge.conf holds secrets), and the
    folders nginx expects: ``logs/`` under DIR, and ``cache/`` and ``temp/`` owned by the
    worker user with mode 0700. Nothing is written when the plan is refused."""
    texts = render(plan)
    user, _ = check_folders(plan)
    _make_folder(plan.out, 0o755)
    (plan.out / "logs").mkdir(exist_ok=True)
    _make_folder(plan.state_dir, 0o755)
    for folder in WORKER_FOLDERS:
        path = plan.state_dir / folder
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)
        if os.geteuid() == 0:
            os.chown(path, user.pw_uid, user.pw_gid)
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
