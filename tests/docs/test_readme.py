"""The README's recipes, run as written (``tests/docs/readme.py`` says what a recipe is and
what the test may change in it), each checked for what the README says it does."""

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chunkcast.testing import free_port, make_clip, run_server
from tests.docs.readme import REPO, readme_recipes, recipes, with_ports
from tests.docs.shell import checkout, reader_env, shell
from tests.integration.media_checks import decodes_cleanly, played_duration

CLIP_SECONDS = 3.0
# The recipes this suite runs. Quick start, going live and the edge are not in it yet: their
# blocks are synopses with placeholders (ID, KEY, …) rather than commands that run as written.
TESTED = ("uploading", "local-cluster")

pytestmark = pytest.mark.integration

MASTER = re.compile(r"https?://[^\s\"]+/play/(\w+)/master\.m3u8")


def test_the_readme_marks_every_tested_recipe() -> None:
    found = readme_recipes()
    assert all(found.get(name) for name in TESTED), sorted(found)


def test_recipes_are_found_by_marker_and_ports_replaced_whole() -> None:
    text = ("<!-- doc-test: a -->\n```sh\necho http://127.0.0.1:8000/x --port 8000\n```\n"
            "```sh\nnot marked\n```\n<!-- doc-test: a -->\n```sh\necho 18000 8000k\n```\n")
    blocks = recipes(text)["a"]
    assert [b.line for b in blocks] == [3, 10]
    assert with_ports(blocks[0].code, {8000: 5}) == "echo http://127.0.0.1:5/x --port 5\n"
    assert with_ports(blocks[1].code, {8000: 5}) == "echo 18000 8000k\n"


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A checkout-like working dir outside pytest's private temp dir: the postgres user must
    reach what the local cluster puts in it, and unix socket paths must stay short."""
    root = Path(tempfile.mkdtemp(prefix="chunkcast-doc-"))
    root.chmod(0o755)
    try:
        yield checkout(root / "w")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def assert_plays(url: str, seconds: float) -> None:
    """The HLS playlist plays to the end, as long as the source, without a decoding error."""
    played, kinds = played_duration(url)
    assert abs(played - seconds) <= 0.2, (url, played)
    assert kinds == {"video", "audio"}
    assert decodes_cleanly(url) == ""


def assert_ends_with_a_video_that_plays(out: str, server_url: str) -> str:
    """What an upload recipe printed ends with a ready video whose playlist, on
    ``server_url``, plays; returns the video's id."""
    assert "ready" in out and "failed" not in out, out
    *_, master = MASTER.finditer(out)
    assert master.group(0).startswith(f"{server_url}/play/"), out
    assert_plays(master.group(0), CLIP_SECONDS)
    return master.group(1)


def test_uploading_recipes_end_with_a_video_that_plays(workdir: Path) -> None:
    """Both uploads (the CLI, then curl and jq over HTTP) against ``chunkcast up``, whose
    URL the README says to export when it is not the default."""
    make_clip(workdir / "my.mp4", seconds=CLIP_SECONDS, size="320x240")
    with run_server(workdir / "chunkcast-data") as server, \
            shell(workdir, reader_env(CHUNKCAST_PUBLIC_URL=server.url), {}) as reader:
        for block in readme_recipes()["uploading"]:
            assert_ends_with_a_video_that_plays(reader.run(block), server.url)


def first_uri(playlist: str) -> str:
    return next(line for line in playlist.splitlines() if line and not line.startswith("#"))


CLUSTER_PORTS = ("PG_PORT", "REDIS_PORT", "S3_PORT", "S3_GRPC_PORT", "MASTER_PORT",
                 "MASTER_GRPC_PORT", "VOLUME_PORT", "VOLUME_GRPC_PORT", "FILER_PORT",
                 "FILER_GRPC_PORT", "API_PORT")


def free_ports(names: tuple[str, ...]) -> dict[str, int]:
    ports: set[int] = set()
    while len(ports) < len(names):
        ports.add(free_port())
    return dict(zip(names, sorted(ports), strict=True))


def cluster_pids(cluster: Path) -> list[int]:
    files = [cluster / "postgres/data/postmaster.pid", cluster / "redis/redis.pid",
             cluster / "s3/weed.pid"]
    return [int(f.read_text().split()[0]) for f in files if f.exists()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"
    return False


@contextlib.contextmanager
def stopped_at_the_end(cluster: Path, env: dict[str, str]) -> Iterator[None]:
    """Whatever the recipe did, the cluster it started is stopped (by PID, through the
    script) when the test ends."""
    try:
        yield
    finally:
        if cluster.exists() and any(alive(pid) for pid in cluster_pids(cluster)):
            subprocess.run([str(REPO / "scripts/local-cluster"), "stop", str(cluster)],
                           env=env, capture_output=True, timeout=60, check=False)


def test_local_cluster_recipe_processes_an_upload_on_s3_postgres_and_redis(
        workdir: Path) -> None:
    ports = free_ports(CLUSTER_PORTS)
    env = reader_env(**{f"CC_{name}": str(port) for name, port in ports.items()})
    api = f"http://127.0.0.1:{ports['API_PORT']}"
    make_clip(workdir / "my.mp4", seconds=CLIP_SECONDS, size="320x240")
    start, stop = readme_recipes()["local-cluster"]
    cluster = workdir / "chunkcast-cluster"
    with stopped_at_the_end(cluster, env), shell(workdir, env, {8001: ports["API_PORT"]}
                                                 ) as reader:
        out = reader.run(start, timeout_s=180)
        assert f"export CHUNKCAST_PUBLIC_URL='{api}'" in out, out
        video = assert_ends_with_a_video_that_plays(out, api)
        master = f"{api}/play/{video}/master.m3u8"
        with httpx.Client(timeout=10) as client:
            # Objects come from the bucket: /media/ redirects to a pre-signed GET on S3.
            rendition = httpx.URL(master).join(first_uri(client.get(master).text))
            segment = rendition.join(first_uri(client.get(rendition).text))
            answer = client.get(segment)
            assert answer.is_redirect, answer
            assert answer.headers["location"].startswith(
                f"http://127.0.0.1:{ports['S3_PORT']}/chunkcast/"), answer.headers
        # The HTTP upload recipe, in the same shell: its PUT goes to S3, which checks that
        # the signed headers were sent.
        http_upload = readme_recipes()["uploading"][-1]
        assert_ends_with_a_video_that_plays(reader.run(http_upload), api)
        created = json.loads((workdir / "created.json").read_text())
        assert created["upload"]["url"].startswith(f"http://127.0.0.1:{ports['S3_PORT']}/")
        # The catalogue is in PostgreSQL and the events went through Redis.
        status = subprocess.run(
            ["/usr/lib/postgresql/15/bin/psql", "-h", "127.0.0.1", "-p", str(ports["PG_PORT"]),
             "-U", "postgres", "-d", "chunkcast", "-tAc",
             f"SELECT status FROM videos WHERE id = '{video}'"],
            capture_output=True, text=True, check=True).stdout.strip()
        assert status == "ready"
        segments = subprocess.run(
            ["redis-cli", "-p", str(ports["REDIS_PORT"]), "XLEN", "chunkcast:segments"],
            capture_output=True, text=True, check=True).stdout.strip()
        assert int(segments) > 0

        servers = cluster_pids(cluster)
        assert len(servers) == 3 and all(alive(pid) for pid in servers)
        reader.run(stop, timeout_s=60)
        assert not any(alive(pid) for pid in servers)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{api}/healthz", timeout=2)
