"""The CLI and the server's address: run where ``chunkcast up`` keeps its data, the client
commands find it on whatever port it listens, send the data dir's admin token to it and to
nothing else, and say in one line when no server answers."""

import contextlib
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chunkcast import runfile
from chunkcast.testing import free_port, make_clip, run_chunkcast

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ENV = {"CHUNKCAST_X264_PRESET": "ultrafast", "CHUNKCAST_VOD_CHUNK_SECONDS": "4"}
# How soon a command says that what it was pointed at never answers: two tries of a second,
# and the start of a Python process on a busy machine.
NO_ANSWER_WITHIN_S = 8.0


def reader_env() -> dict[str, str]:
    """A shell after ``make up``: no ``CHUNKCAST_*`` settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CHUNKCAST_")}


def cli(workdir: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``chunkcast ARGS`` run in ``workdir``, as a reader types it."""
    return subprocess.run([sys.executable, "-m", "chunkcast", *args], cwd=workdir,
                          env={**reader_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


@contextlib.contextmanager
def up(workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """``make up PORT=port`` in ``workdir``: ``chunkcast up --port PORT``, its data in
    ``workdir/chunkcast-data``, no ``CHUNKCAST_PUBLIC_URL``."""
    url = f"http://127.0.0.1:{port}"
    with run_chunkcast(["up", "--port", str(port)], workdir / "chunkcast-data",
                       env={**reader_env(), **ENV}, health_url=f"{url}/healthz") as proc:
        yield proc


class Impostor(http.server.BaseHTTPRequestHandler):
    """Claims to be the server (a made-up proof) and refuses everything else as the API does
    without the admin token, keeping each request whole."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(  # type: ignore[attr-defined]
            f"{self.requestline}\n{self.headers}".encode() + body)
        if self.path.startswith(runfile.PROVE_PATH):
            status, answer = 200, b'{"proof": "' + b"0" * 64 + b'"}'
        else:
            status, answer = 401, b'{"error": {"message": "admin token required"}}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def listener(port: int) -> Iterator[list[bytes]]:
    """Something else listening on ``port``; yields every request it received."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Impostor)
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with status 1 and said why in exactly one line, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def readme_stream_sample() -> str:
    """The output the README's "Going live" shows for ``chunkcast stream create``."""
    going_live = (REPO / "README.md").read_text().split("## Going live", 1)[1]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", going_live, re.S | re.M)
    command = next(i for i, (_, code) in enumerate(blocks) if "stream create" in code)
    language, sample = blocks[command + 1]
    assert language == "", blocks
    return str(sample)


def test_the_cli_finds_up_on_another_port_and_its_data_dir(tmp_path: Path) -> None:
    """``make up PORT=…``, then ``upload`` and ``stream create`` without flags, as the README
    shows them; the run file is the server's own and goes when it stops."""
    make_clip(tmp_path / "my.mp4", seconds=2, size="320x240")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "chunkcast-data"
    with up(tmp_path, port) as proc:
        run = runfile.read(data)
        assert run is not None and (run.url, run.pid) == (url, proc.pid)
        assert (data / runfile.RUN_FILE).stat().st_mode & 0o777 == 0o600

        created = cli(tmp_path, "stream", "create", "--title", "Final")
        assert created.returncode == 0, created.stderr
        stream_id = re.search(r"^id: +(\S+)$", created.stdout, re.M)
        key = re.search(r"^stream key: (\S+) ", created.stdout, re.M)
        assert stream_id and key, created.stdout
        sample = readme_stream_sample()
        sample_id = re.search(r"^id: +(\S+)$", sample, re.M)
        sample_key = re.search(r"^stream key: (\S+) ", sample, re.M)
        assert sample_id and sample_key, sample
        assert len(sample_id[1]) == len(stream_id[1]) and len(sample_key[1]) == len(key[1])
        # The key first: it starts with the stream's id.
        assert created.stdout == (sample.replace(sample_key[1], key[1])
                                  .replace(sample_id[1], stream_id[1])
                                  .replace("http://127.0.0.1:8000", url))

        uploaded = cli(tmp_path, "upload", "my.mp4", "--title", "Final")
        assert uploaded.returncode == 0, uploaded.stderr
        assert re.fullmatch(rf"watch: {url}/watch/\w+\nhls:   {url}/play/\w+/master\.m3u8\n",
                            uploaded.stdout), uploaded.stdout
        assert "is ready (240p)" in uploaded.stderr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not (data / runfile.RUN_FILE).exists()


@pytest.mark.parametrize("how", ["--server", "CHUNKCAST_PUBLIC_URL"])
def test_another_server_never_gets_the_data_dirs_token(tmp_path: Path, how: str) -> None:
    """Pointed at something else while ``up`` runs from the data dir: it is asked to prove
    it is that server, fails, and is sent no token."""
    with up(tmp_path, free_port()), listener(other := free_port()) as received:
        token = (tmp_path / "chunkcast-data" / "admin-token").read_text().strip()
        elsewhere = f"http://127.0.0.1:{other}"
        options = ["--server", elsewhere] if how == "--server" else []
        env = {} if options else {"CHUNKCAST_PUBLIC_URL": elsewhere}
        line = one_line(cli(tmp_path, "stream", "create", *options, env=env))
        assert line.startswith("error: 401: admin token required (no admin token was sent"), line
    assert len(received) == 2, received  # the challenge, then the request itself
    assert all(token.encode() not in request for request in received), received
    assert all(b"authorization" not in request.lower() for request in received), received


def test_a_stale_run_file_sends_no_token_to_what_took_the_port(tmp_path: Path) -> None:
    """``up`` was killed (its run file stays); something else now listens on its port and
    claims anything: the CLI run from the data dir refuses it."""
    port = free_port()
    with up(tmp_path, port) as proc:
        proc.kill()
        proc.wait()
    data = tmp_path / "chunkcast-data"
    token = (data / "admin-token").read_text().strip()
    assert runfile.read(data) is not None
    with listener(port) as received:
        for command in (["stream", "create"], ["upload", str(tmp_path / "x.mp4")]):
            (tmp_path / "x.mp4").write_bytes(b"not used")
            line = one_line(cli(tmp_path, *command))
            assert line.startswith(f"what answers at http://127.0.0.1:{port} is not the "
                                   "chunkcast server that"), line
    assert received and all(r.startswith(b"GET " + runfile.PROVE_PATH.encode())
                            for r in received), received
    assert all(token.encode() not in request for request in received)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", [["stream", "create"], ["upload", "x.mp4"]])
def test_no_server_is_one_line_and_status_1(tmp_path: Path, command: list[str],
                                            silent_port: int) -> None:
    (tmp_path / "x.mp4").write_bytes(b"never sent")
    data = tmp_path / "chunkcast-data"
    # No server ever ran from here.
    assert one_line(cli(tmp_path, *command)) == (
        f"no chunkcast server is running from {data}: start one with `make up` (or "
        "`chunkcast up`), or name one with --server URL")
    # One ran on 8100 and was killed: nothing listens there any more (connection refused).
    data.mkdir()
    refused = free_port()
    runfile.write(data, runfile.RunFile(f"http://127.0.0.1:{refused}", 1, runfile.new_key()))
    assert one_line(cli(tmp_path, *command)) == (
        f"no chunkcast server answers at http://127.0.0.1:{refused} (started with `make up`?)")
    # Named explicitly, and it accepts but never answers (time-outs): said within seconds.
    started = time.monotonic()
    assert one_line(cli(tmp_path, *command, "--server", f"http://127.0.0.1:{silent_port}")
                    ) == (f"no chunkcast server answers at http://127.0.0.1:{silent_port} "
                          "(set by --server or CHUNKCAST_PUBLIC_URL)")
    assert time.monotonic() - started < NO_ANSWER_WITHIN_S
