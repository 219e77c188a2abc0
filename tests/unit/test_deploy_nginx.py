"""`chunkcast deploy nginx`: what it refuses, and configs that nginx itself accepts."""

import subprocess
from pathlib import Path

import pytest
from tests.servers.nginx import NGINX

from chunkcast.deploy.nginx import NginxPlan, write
from chunkcast.domain.errors import InvalidInput

SECRET = "ab" * 32


def plan(out: Path, **changes: object) -> NginxPlan:
    fields: dict[str, object] = {
        "apis": ["127.0.0.1:8001", "127.0.0.1:8002"], "origin": "http://127.0.0.1:8001",
        "edge_listen": "127.0.0.1:8080", "lb_listen": "8000", "playback_secret": SECRET,
        "out": out, **changes}
    return NginxPlan(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8001", "http://127.0.0.1:8333/media-bucket"])
def test_the_configs_pass_nginx_own_check(tmp_path: Path, origin: str) -> None:
    written = write(plan(tmp_path, origin=origin))
    assert [p.name for p in written] == ["edge.conf", "lb.conf"]
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in written)
    assert SECRET in (tmp_path / "edge.conf").read_text()
    assert SECRET not in (tmp_path / "lb.conf").read_text()
    for name in ("edge", "lb"):
        done = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c",
                               str(tmp_path / f"{name}.conf"), "-e",
                               str(tmp_path / "logs" / "check.log")],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr


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
    {"cache_size": "lots"},
])
def test_what_would_make_a_broken_or_unsafe_config_is_refused(
    tmp_path: Path, changes: dict[str, object],
) -> None:
    with pytest.raises(InvalidInput):
        write(plan(tmp_path, **changes))
    assert not (tmp_path / "edge.conf").exists()
