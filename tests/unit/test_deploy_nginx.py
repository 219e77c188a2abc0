"""`chunkcast deploy nginx`: what it refuses, and configs that nginx itself accepts."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from tests.servers.nginx import NGINX

from chunkcast.deploy.nginx import NginxPlan, write
from chunkcast.domain.errors import InvalidInput

SECRET = "ab" * 32
EDGE_SECRET = "cd" * 32


def plan(out: Path, **changes: object) -> NginxPlan:
    fields: dict[str, object] = {
        "apis": ["127.0.0.1:8001", "127.0.0.1:8002"], "origin": "http://127.0.0.1:8001",
        "edge_listen": "127.0.0.1:8080", "lb_listen": "8000", "playback_secret": SECRET,
        "edge_secret": EDGE_SECRET, "out": out, **changes}
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
