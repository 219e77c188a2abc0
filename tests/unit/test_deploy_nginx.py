"""`chunkcast deploy nginx`: what it refuses, and configs that nginx itself accepts."""

import os
import pwd
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from tests.servers.nginx import NGINX, open_folder

from chunkcast.api.routes import play
from chunkcast.deploy.nginx import NginxPlan, write
from chunkcast.domain.errors import InvalidInput
from chunkcast.services.playback import BLOCK_TARGETS, FRESH_WAIT_S
from chunkcast.services.streams import MAX_CHUNK_SECONDS

SECRET = "ab" * 32
EDGE_SECRET = "cd" * 32
ME = pwd.getpwuid(os.geteuid()).pw_name
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (as a service starts nginx)")


def plan(out: Path, **changes: object) -> NginxPlan:
    """A plan whose workers run as whoever runs the tests (who can reach ``out``)."""
    fields: dict[str, object] = {
        "apis": ["127.0.0.1:8001", "127.0.0.1:8002"], "origin": "http://127.0.0.1:8001",
        "edge_listen": "127.0.0.1:8080", "lb_listen": "8000", "playback_secret": SECRET,
        "edge_secret": EDGE_SECRET, "out": out, "user": ME, **changes}
    return NginxPlan(**fields)  # type: ignore[arg-type]


def nginx_check(prefix: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(prefix / f"{name}.conf"),
                           "-e", str(prefix / "logs" / "check.log")],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8001", "http://127.0.0.1:8333/media-bucket"])
def test_the_configs_pass_nginx_own_check(tmp_path: Path, origin: str) -> None:
    written = write(plan(tmp_path, origin=origin))
    assert [p.name for p in written] == ["edge.conf", "lb.conf"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in written)
    edge, lb = (tmp_path / "edge.conf").read_text(), (tmp_path / "lb.conf").read_text()
    assert SECRET in edge and EDGE_SECRET in edge
    assert SECRET not in lb and EDGE_SECRET not in lb
    for name in ("edge", "lb"):
        done = nginx_check(tmp_path, name)
        assert done.returncode == 0, done.stderr


def test_the_edge_secret_goes_to_api_origins_only(tmp_path: Path) -> None:
    """A bucket is not the API: it is never sent the edge secret (the API still is, for its
    privacy answers)."""
    write(plan(tmp_path / "api"))
    write(plan(tmp_path / "bucket", origin="http://127.0.0.1:8333/media-bucket"))
    api = (tmp_path / "api" / "edge.conf").read_text()
    bucket = (tmp_path / "bucket" / "edge.conf").read_text()
    assert api.count(EDGE_SECRET) == 2  # objects from the API origin, privacy answers
    assert bucket.count(EDGE_SECRET) == 1  # privacy answers only


def test_access_logs_leave_query_strings_out(tmp_path: Path) -> None:
    """Signed links (st=, signature=) in a log could be replayed until they expire."""
    write(plan(tmp_path))
    for name in ("edge", "lb"):
        text = (tmp_path / f"{name}.conf").read_text()
        formats = re.findall(r"log_format\s+\w+\s+(.*?);", text, re.DOTALL)
        assert formats, name
        for fmt in formats:
            variables = set(re.findall(r"\$(\w+)", fmt))
            assert not variables & {"request", "request_uri", "args", "query_string",
                                    "is_args", "request_line"}, (name, variables)
            assert not any(v.startswith("arg_") for v in variables), (name, variables)


def test_bodies_are_capped_except_uploads_to_the_store(tmp_path: Path) -> None:
    write(plan(tmp_path))
    for name in ("edge", "lb"):
        text = (tmp_path / f"{name}.conf").read_text()
        assert re.search(r"^    client_max_body_size 64k;", text, re.MULTILINE), name
        unlimited = re.findall(r"location (\S+) \{[^}]*client_max_body_size 0;", text)
        assert unlimited == (["/media/"] if name == "lb" else []), (name, unlimited)


def test_config_files_are_private_even_when_they_existed(tmp_path: Path) -> None:
    tmp_path.joinpath("edge.conf").write_text("stale text")
    tmp_path.joinpath("edge.conf").chmod(0o644)
    previous = os.umask(0)
    try:
        written = write(plan(tmp_path))
    finally:
        os.umask(previous)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in written)
    assert "stale text" not in (tmp_path / "edge.conf").read_text()


def test_a_config_path_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    out = tmp_path / "nginx"
    out.mkdir()
    (out / "edge.conf").symlink_to(target)
    with pytest.raises(OSError):
        write(plan(out))
    assert target.read_text() == "untouched"


@pytest.mark.parametrize("name", ["evil\nserver { listen 9; }", "a;b", "a{b", "a}b", "a b",
                                  'a"b', "a'b", "a$b", "a#b", "a\\b", "a\tb", "a\x01b"])
def test_an_out_folder_that_could_inject_config_is_refused(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    with pytest.raises(InvalidInput, match="--out"):
        write(plan(out))
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder made


@pytest.mark.parametrize("changes", [
    {"apis": []},
    {"apis": ["10.0.0.5"]},
    {"apis": ["10.0.0.5:80; include /etc/passwd"]},
    {"origin": "ftp://10.0.0.5"},
    {"origin": "http://10.0.0.5:8000/?x=1"},
    {"origin": "http://10.0.0.5:8000/a b"},
    {"edge_listen": "eighty"},
    {"lb_listen": "8000;"},
    {"playback_secret": "short"},
    {"edge_secret": "short"},
    {"edge_secret": "x; include /etc/passwd"},
    {"cache_size": "lots"},
])
def test_what_would_make_a_broken_or_unsafe_config_is_refused(
    tmp_path: Path, changes: dict[str, object],
) -> None:
    with pytest.raises(InvalidInput):
        write(plan(tmp_path, **changes))
    assert not (tmp_path / "edge.conf").exists()


def test_the_workers_user_and_their_folders(tmp_path: Path) -> None:
    """The configs name the worker user and its group; the cache and temp folders are that
    user's alone (the cache holds private videos' media)."""
    write(plan(tmp_path))
    for name in ("edge", "lb"):
        assert re.search(rf"^user {ME} \S+;$", (tmp_path / f"{name}.conf").read_text(),
                         re.MULTILINE), name
    for folder in ("cache", "temp"):
        info = (tmp_path / folder).stat()
        assert (info.st_uid, info.st_mode & 0o777) == (os.geteuid(), 0o700), folder


@as_root
def test_as_root_the_folders_are_given_to_the_worker_user(tmp_path: Path) -> None:
    state = open_folder() / "state"
    write(plan(tmp_path / "nginx", user="nobody", cache_dir=state))
    nobody = pwd.getpwnam("nobody")
    for folder in ("cache", "temp"):
        info = (state / folder).stat()
        assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (
            nobody.pw_uid, nobody.pw_gid, 0o700), folder
    edge = (tmp_path / "nginx" / "edge.conf").read_text()
    assert f"proxy_cache_path {state}/cache/edge " in edge
    assert f"proxy_temp_path {state}/temp/edge-proxy;" in edge
    done = nginx_check(tmp_path / "nginx", "edge")  # as root, with a worker user
    assert done.returncode == 0, done.stderr


@as_root
def test_a_cache_the_worker_user_cannot_reach_is_refused_before_anything_is_written() -> None:
    """A folder of root's alone (0700, as /root is) on the way: nginx's workers could never
    open their cache there."""
    private = open_folder() / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(InvalidInput, match=r"'nobody'.*cannot enter .*private \(mode 0700\)"):
        write(plan(private / "nginx", user="nobody"))
    with pytest.raises(InvalidInput, match="--cache-dir"):
        write(plan(open_folder() / "nginx", user="nobody", cache_dir=private / "cache"))
    assert list(private.iterdir()) == []


@pytest.mark.parametrize("user", ["no-such-user-here", "a b", "root;"])
def test_an_unknown_or_malformed_user_is_refused(tmp_path: Path, user: str) -> None:
    with pytest.raises(InvalidInput, match="--user"):
        write(plan(tmp_path / "nginx", user=user))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="for a plain user")
def test_a_plain_user_cannot_give_the_folders_to_another(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="only root"):
        write(plan(tmp_path / "nginx", user="root"))
    assert list(tmp_path.iterdir()) == []


def block(text: str, opening: str) -> str:
    """The body of the block that starts with ``opening`` (e.g. ``location /ws/``)."""
    start = text.index(opening + " {") + len(opening) + 2
    depth, at = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[at], 0)
        at += 1
    return text[start:at - 1]


def seconds(body: str, directive: str) -> float:
    """The duration a directive of ``body`` sets (nginx's ``40s``, ``1m``, ``500ms``)."""
    found = re.findall(rf"^\s*{directive} (\d+)(ms|s|m);", body, re.MULTILINE)
    assert len(found) == 1, (directive, found)
    value, unit = found[0]
    return int(value) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def play_query_names() -> set[str]:
    """The query parameters the API's ``/play/`` routes read."""
    def names(dependant: Dependant) -> Iterator[str]:
        yield from (field.alias for field in dependant.query_params)
        for sub in dependant.dependencies:
            yield from names(sub)
    return {name for route in play.router.routes if isinstance(route, APIRoute)
            for name in names(route.dependant)}


def test_playlists_reach_the_api_with_only_the_arguments_it_reads(tmp_path: Path) -> None:
    """The query the edge builds for ``/play/`` (its cache key too) names what the API
    reads, LL-HLS delivery directives included, and nothing else: made-up arguments neither
    split the cache nor reach the API."""
    write(plan(tmp_path))
    edge = (tmp_path / "edge.conf").read_text()
    plays = block(edge, "location ~ ^/play/(?<chunkcast_video>[a-z2-7]+)/")
    query = re.findall(r'^\s*set \$args "(.*)";$', plays, re.MULTILINE)
    assert len(query) == 1, plays
    # What the maps of the LL-HLS directives put in: "&NAME=VALUE".
    directives = set(re.findall(r'^\s+"[^"]*"\s+"&(\w+)=', edge, re.MULTILINE))
    assert set(re.findall(r"(\w+)=", query[0])) | directives == play_query_names()
    assert re.findall(r"proxy_cache_key (.*);", plays) == ["$uri?$args"]
    assert re.findall(r"proxy_cache_key (.*);", block(edge, "location @chunkcast_blocking")) \
        == ["$uri?$args"]


def test_blocking_playlist_requests_outwait_the_api(tmp_path: Path) -> None:
    """A blocking request is held by the API up to BLOCK_TARGETS target durations (segments
    last at most MAX_CHUNK_SECONDS): the viewers waiting on the one request sent for them,
    that request, and the read of its answer all wait longer; plain playlist requests keep
    the server's shorter lock."""
    write(plan(tmp_path))
    edge = (tmp_path / "edge.conf").read_text()
    longest_hold = BLOCK_TARGETS * MAX_CHUNK_SECONDS
    blocking = block(edge, "location @chunkcast_blocking")
    for directive in ("proxy_read_timeout", "proxy_cache_lock_timeout", "proxy_cache_lock_age"):
        assert seconds(blocking, directive) > longest_hold, directive
    assert "proxy_cache off" not in blocking and "proxy_cache_lock off" not in blocking
    # The request the others wait on goes on when its own viewer leaves.
    assert re.search(r"^\s*proxy_ignore_client_abort on;$", blocking, re.MULTILINE)
    server = block(edge, "server")
    assert re.search(r"^        proxy_cache_lock on;$", server, re.MULTILINE)
    plays = block(edge, "location ~ ^/play/(?<chunkcast_video>[a-z2-7]+)/")
    assert "proxy_cache_lock" not in plays
    assert seconds(server.replace(blocking, ""), "proxy_cache_lock_timeout") <= 10


def test_an_api_host_that_stops_answering_is_given_up_on_within_seconds(tmp_path: Path) -> None:
    """A host cut off sends nothing: connecting to it fails after the connect timeout, but a
    kept-alive connection to it only fails after the read timeout (nginx's default: 60 s).
    What a live API host answers at once (the privacy check) or within FRESH_WAIT_S (a plain
    playlist) is given up on after a few seconds, and the next host is asked."""
    write(plan(tmp_path))
    edge = (tmp_path / "edge.conf").read_text()
    assert seconds(block(edge, "server"), "proxy_connect_timeout") <= 2
    assert seconds(block(edge, "location = /_chunkcast/public"), "proxy_read_timeout") <= 5
    plays = block(edge, "location ~ ^/play/(?<chunkcast_video>[a-z2-7]+)/")
    assert FRESH_WAIT_S < seconds(plays, "proxy_read_timeout") <= 10
