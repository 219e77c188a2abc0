"""The README's recipes, run as written (``tests/docs/readme.py`` says what a recipe is and
what the test may change in it), each checked for what the README says it does."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chunkcast.testing import free_port, make_clip, origin_served, run_server
from tests.docs.readme import REPO, readme_recipes, recipes, with_ports
from tests.docs.shell import checkout, foreground, reader_env, shell
from tests.integration.media_checks import (
    decodes_cleanly,
    media_segments,
    played_duration,
    starts_with_keyframe,
)

CLIP_SECONDS = 3.0
MATCH_SECONDS = 4.0
# The recipes this suite runs: every marked block of the README.
TESTED = ("quick-start", "uploading", "going-live", "local-cluster", "edge")

pytestmark = pytest.mark.integration

MASTER = re.compile(r"https?://[^\s\"]+/play/(\w+)/master\.m3u8")


def test_the_readme_marks_every_tested_recipe() -> None:
    found = readme_recipes()
    assert sorted(found) == sorted(TESTED)


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


def processes_in(folder: Path) -> dict[int, str]:
    """The running processes whose working dir is ``folder`` or below it, and their command
    lines: what a recipe started there (the shell, make, the server, the broadcaster, ffmpeg)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = Path(os.readlink(entry / "cwd"))
            if (cwd == folder or folder in cwd.parents) and alive(int(entry.name)):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                    b"\0", b" ").decode(errors="replace")
    return found


def refuses_connections(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return True
    return False


def assert_live_and_playing(client: httpx.Client, master: str, timeout_s: float = 40) -> None:
    """``master`` is a live playlist whose first rendition's segments play: each starts
    with a keyframe and decodes, with video and audio."""
    deadline = time.monotonic() + timeout_s
    segments: list[tuple[float, str]] = []
    while len(segments) < 2:
        assert time.monotonic() < deadline, f"{master}: no segments after {timeout_s} s"
        time.sleep(0.5)
        answer = client.get(master)
        if answer.status_code != 200:  # 404 until its first chunk is transcoded
            continue
        rendition = httpx.URL(master).join(first_uri(answer.text))
        playlist = client.get(rendition).text
        assert "#EXT-X-ENDLIST" not in playlist, playlist
        if "#EXT-X-MAP" in playlist:
            init_url, segments = media_segments(playlist)
    init = client.get(init_url).content
    with tempfile.NamedTemporaryFile(suffix=".mp4") as media:
        media.write(init)
        for _, url in segments[:2]:
            segment = client.get(url).content
            assert starts_with_keyframe(init, segment), url
            media.write(segment)
        media.flush()
        assert played_duration(media.name)[1] == {"video", "audio"}
        assert decodes_cleanly(media.name) == ""


def test_quick_start_runs_a_live_demo_until_ctrl_c_which_leaves_nothing_running(
        workdir: Path) -> None:
    """``make up`` in the checkout: the demo stream plays through the API; Ctrl-C (SIGINT to
    make's process group, as a terminal sends it) stops everything it started."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = reader_env(PORT=str(port))
    # The venv is installed: make must not reinstall (that would install this temp dir).
    assert subprocess.run(["make", "-q", ".venv/.installed"], cwd=workdir, env=env,
                          check=False).returncode == 0, "run `make venv` in the checkout"
    (block,) = readme_recipes()["quick-start"]
    with foreground(block, workdir, env) as up:
        demo = up.wait_for(rf"^Demo stream: {re.escape(url)}/watch/(\w+)$", timeout_s=40)
        printed = up.output
        assert printed.startswith(f".venv/bin/chunkcast up --port {port} --demo\n"), printed
        assert f"chunkcast is starting at {url}\n" in printed, printed
        token = (workdir / "chunkcast-data/admin-token").read_text().strip()
        assert f"admin token: {token}\n" in printed, printed
        with httpx.Client(timeout=10) as client:
            assert_live_and_playing(client, f"{url}/play/{demo.group(1)}/master.m3u8")
        started = processes_in(workdir)
        assert any(" up --port " in cmd for cmd in started.values()), started
        assert any(" broadcast testsrc " in cmd for cmd in started.values()), started
        up.interrupt(timeout_s=30)
        left = {pid: cmd for pid, cmd in processes_in(workdir).items() if pid in started}
        assert left == {}, left
    assert not (workdir / "chunkcast-data/server.json").exists()
    assert refuses_connections(f"{url}/healthz")
    assert "stream ended after" in (workdir / "chunkcast-data/demo-broadcast.log").read_text()


def test_going_live_recipe_broadcasts_a_file_whose_replay_plays(workdir: Path) -> None:
    make_clip(workdir / "match.mp4", seconds=MATCH_SECONDS, size="320x240")
    create, broadcast, replay = readme_recipes()["going-live"]
    with run_server(workdir / "chunkcast-data") as server, \
            shell(workdir, reader_env(CHUNKCAST_PUBLIC_URL=server.url), {}) as reader:
        created = reader.run(create)
        # What the README shows it prints.
        found = re.search(r"^id: +(\w+)\nstream key: +(\S+)  \(shown once; .*\)\n"
                          r"broadcast: +chunkcast broadcast testsrc --stream \1 --key \2 "
                          r"--server (\S+)\nhls: +(\S+)\nwatch: +(\S+)$", created, re.MULTILINE)
        assert found is not None, created
        stream = found.group(1)
        assert found.group(3) == server.url
        assert found.group(4) == f"{server.url}/play/{stream}/master.m3u8"
        assert found.group(5) == f"{server.url}/watch/{stream}"

        sent = reader.run(broadcast, timeout_s=60)
        assert re.search(r"stream ended after \d+ chunks \(0 skipped\)", sent), sent

        out = reader.run(replay, timeout_s=60)
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "ended"
        assert summary["hls"] == found.group(4)
        assert abs(summary["duration"] - MATCH_SECONDS) <= 0.2, summary
        assert_plays(summary["hls"], MATCH_SECONDS)


EDGE_PORTS = ("EDGE", "LB")


def nginx_masters(out: Path) -> list[int]:
    return [int(f.read_text()) for f in (out / "logs/edge.pid", out / "logs/lb.pid")
            if f.exists()]


@contextlib.contextmanager
def nginx_stopped_at_the_end(out: Path) -> Iterator[None]:
    """Whatever the recipe did, the nginx it started (daemons, outside the shell's process
    group) is stopped by PID when the test ends."""
    try:
        yield
    finally:
        for pid in nginx_masters(out):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def test_edge_recipe_caches_a_segment_in_front_of_the_server_and_stops(workdir: Path) -> None:
    ports = free_ports(EDGE_PORTS)
    make_clip(workdir / "my.mp4", seconds=CLIP_SECONDS, size="320x240")
    start, fetch, stop = readme_recipes()["edge"]
    out = workdir / "nginx"
    with run_server(workdir / "chunkcast-data") as server:
        api_port = httpx.URL(server.url).port
        assert api_port is not None
        edge = f"http://127.0.0.1:{ports['EDGE']}"
        env = reader_env(CHUNKCAST_PUBLIC_URL=server.url, TMPDIR=str(workdir.parent))
        with nginx_stopped_at_the_end(out), shell(
                workdir, env, {8000: api_port, 8080: ports["EDGE"], 8090: ports["LB"]}
        ) as reader:
            # The reader has uploaded a video (the README's first upload recipe).
            assert_ends_with_a_video_that_plays(reader.run(readme_recipes()["uploading"][0]),
                                                server.url)
            assert reader.run(start).split()[-2:] == ["ok", "ok"]
            for conf in ("edge.conf", "lb.conf"):
                assert (out / conf).stat().st_mode & 0o777 == 0o600
            assert (workdir.parent / "chunkcast-nginx/cache").is_dir()  # under TMPDIR
            masters = nginx_masters(out)
            assert len(masters) == 2 and all(alive(pid) for pid in masters)

            served = origin_served(server).get("segment", 0)
            assert reader.run(fetch).splitlines() == ["X-Cache: MISS", "X-Cache: HIT"]
            assert origin_served(server).get("segment", 0) == served + 1

            reader.run(stop)
            deadline = time.monotonic() + 10
            while any(alive(pid) for pid in masters) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not any(alive(pid) for pid in masters)
            assert refuses_connections(f"{edge}/edge/healthz")
