"""The run file of ``chunkcast up`` and the proof its server gives (no server started)."""

import json
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from chunkcast import runfile
from chunkcast.cli import build_parser


@pytest.mark.parametrize(("sockname", "url"), [
    (("127.0.0.1", 8100), "http://127.0.0.1:8100"),
    (("0.0.0.0", 8100), "http://127.0.0.1:8100"),
    (("::", 8100, 0, 0), "http://[::1]:8100"),
    (("::1", 8100, 0, 0), "http://[::1]:8100"),
    (("192.0.2.7", 80), "http://192.0.2.7:80"),
])
def test_the_url_names_the_bound_address_a_local_client_reaches(
        sockname: tuple[object, ...], url: str) -> None:
    assert runfile.served_url(sockname) == url


def test_the_run_file_is_private_and_read_back_whole(tmp_path: Path) -> None:
    run = runfile.RunFile("http://127.0.0.1:8100", 42, runfile.new_key())
    runfile.write(tmp_path, run)
    assert (tmp_path / runfile.RUN_FILE).stat().st_mode & 0o777 == 0o600
    assert runfile.read(tmp_path) == run
    assert [p.name for p in tmp_path.iterdir()] == [runfile.RUN_FILE]  # no partial file left


def test_a_run_removes_only_its_own_file(tmp_path: Path) -> None:
    first = runfile.RunFile("http://127.0.0.1:8100", 1, runfile.new_key())
    second = runfile.RunFile("http://127.0.0.1:8101", 2, runfile.new_key())
    runfile.write(tmp_path, first)
    runfile.write(tmp_path, second)  # another `up` took over the data dir
    runfile.remove(tmp_path, first)
    assert runfile.read(tmp_path) == second
    runfile.remove(tmp_path, second)
    assert runfile.read(tmp_path) is None


@pytest.mark.parametrize("content", ["", "{", "[]", '{"url": "x"}', '{"url": 1, "pid": "a"}'])
def test_a_file_that_is_not_a_run_file_is_no_server(tmp_path: Path, content: str) -> None:
    (tmp_path / runfile.RUN_FILE).write_text(content)
    assert runfile.read(tmp_path) is None


def test_only_the_key_gives_the_proof() -> None:
    run = runfile.RunFile("", 0, runfile.new_key())
    other = runfile.RunFile("", 0, runfile.new_key())
    assert run.proof("challenge-one-xyz") == run.proof("challenge-one-xyz")
    assert run.proof("challenge-one-xyz") != run.proof("challenge-two-xyz")
    assert run.proof("challenge-one-xyz") != other.proof("challenge-one-xyz")


async def _api(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


async def test_the_server_answers_a_challenge_and_passes_everything_else_on() -> None:
    key = runfile.new_key()
    transport = httpx.ASGITransport(app=runfile.ProvesRun(_api, key))
    async with httpx.AsyncClient(transport=transport, base_url="http://up") as client:
        challenge = "a-fresh-challenge-0123"
        answer = await client.get(runfile.PROVE_PATH, params={"challenge": challenge})
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        assert json.loads(answer.content) == {
            "proof": runfile.RunFile("", 0, key).proof(challenge)}
        for bad in ({}, {"challenge": "short"}, {"challenge": "x" * 129},
                    {"challenge": "not/allowed/chars"}):
            assert (await client.get(runfile.PROVE_PATH, params=bad)).status_code == 400
        assert (await client.get("/api/v1/videos")).text == "/api/v1/videos"


@pytest.mark.parametrize("server", ["ftp://example.com", "127.0.0.1:8000", "http://",
                                    "http://host:port", "http://host:0"])
def test_the_cli_refuses_a_server_that_is_not_an_http_url(server: str) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["stream", "create", "--server", server])
    assert exited.value.code == 2
