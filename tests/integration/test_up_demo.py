"""`chunkcast up --demo`: the demo goes live, the console stays readable, and every process
`up` started dies with it (SIGTERM: in order, the demo stream ended; SIGKILL: at once)."""

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chunkcast.cli import DEMO_TITLE
from chunkcast.testing import Server, free_port, run_chunkcast
from tests.integration.live_support import wait_for_renditions, watch, ws_url

pytestmark = pytest.mark.integration

ENV = {"CHUNKCAST_X264_PRESET": "ultrafast"}


@contextlib.contextmanager
def up_with_demo(data_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], Server]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with run_chunkcast(["up", "--port", str(port), "--demo"], data_dir,
                       env={**ENV, "CHUNKCAST_PUBLIC_URL": url},
                       health_url=f"{url}/healthz") as proc:
        token = (data_dir / "admin-token").read_text().strip()
        yield proc, Server(url, data_dir, token, proc.pid, data_dir / "server.log")


def demo_stream(server: Server, timeout_s: float = 30) -> dict[str, Any]:
    """The demo stream, once `up` has created it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page = httpx.get(f"{server.url}/api/v1/videos", params={"kind": "live"}).json()
        for video in page["items"]:
            if video["title"] == DEMO_TITLE:
                found: dict[str, Any] = video
                return found
        time.sleep(0.1)
    raise AssertionError("no demo stream")


def wait_until_live(server: Server) -> dict[str, Any]:
    """The demo stream once its viewers get segments."""
    stream = demo_stream(server)
    wait_for_renditions(server, stream["id"])
    asyncio.run(watch(ws_url(server, stream["id"], "240p", since=-1), until_seq=1))
    return stream


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (children, grandchildren …) and its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # after the ")" closing the command name: state, then the parent's pid
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            with contextlib.suppress(OSError):
                found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(
                    b"\0", b" ").decode(errors="replace")
                todo.append(child)
    return found


@contextlib.contextmanager
def exits_of(pids: dict[int, str]) -> Iterator[Any]:
    """Handles on the processes ``pids`` (pidfds: they can't be confused with a later process
    given the same pid); yields a function returning those still running after a wait."""
    fds = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # already gone (a finished transcode)
            fds[os.pidfd_open(pid)] = pid

    def still_running(timeout_s: float) -> dict[int, str]:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)  # readable once the process has exited
        left = set(fds)
        deadline = time.monotonic() + timeout_s
        while left and (wait_ms := (deadline - time.monotonic()) * 1000) > 0:
            for fd, _ in poller.poll(wait_ms):
                left.discard(fd)
                poller.unregister(fd)
        return {fds[fd]: pids[fds[fd]] for fd in left}

    try:
        yield still_running
    finally:
        for fd in fds:
            os.close(fd)


def test_sigterm_ends_the_demo_stream_and_leaves_no_process_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with up_with_demo(data) as (up, server):
        stream = wait_until_live(server)
        family = descendants(up.pid)
        assert any(" broadcast testsrc " in cmd for cmd in family.values()), family
        assert any("ffmpeg" in cmd and "testsrc2" in cmd for cmd in family.values()), family
        with exits_of(family) as still_running:
            up.send_signal(signal.SIGTERM)
            assert up.wait(timeout=30) == 0
            assert still_running(10) == {}
    # In order: the broadcaster ended its stream while the API still answered.
    assert "stream ended after" in (data / "demo-broadcast.log").read_text()
    console = (data / "server.log").read_text()
    assert f"Demo stream: {server.url}/watch/{stream['id']}" in console
    # The console is for people: no line per transcoded chunk. The log file has them all.
    assert "chunk timing" not in console
    assert f'"video_id": "{stream["id"]}"' in (data / "chunkcast.log").read_text()


def test_when_up_is_killed_its_children_die_with_it(tmp_path: Path) -> None:
    with up_with_demo(tmp_path / "data") as (up, server):
        wait_until_live(server)
        family = descendants(up.pid)
        assert len(family) >= 2, family  # the broadcaster and its ffmpeg at least
        with exits_of(family) as still_running:
            up.kill()
            up.wait()
            assert still_running(10) == {}
