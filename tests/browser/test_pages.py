"""The web app's pages in a real browser: upload, the home page, the stream dashboard."""

import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Route, expect

from chunkcast.testing import Server, make_clip
from tests.integration.api import upload
from tests.integration.live_support import create_stream, start_broadcast

SLOW_MS = 120_000  # transcoding and going live share two cores with other test runs


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("pages") / "tiny.mp4", seconds=2, size="320x240")


@pytest.fixture
def broadcasts() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Broadcasters started by a test, stopped by PID whatever happens."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def save_token(page: Page, token: str) -> None:
    page.locator("#admin-token").fill(token)
    page.get_by_role("button", name="Save token").click()
    expect(page.get_by_role("button", name="Change token")).to_be_visible()


def title() -> str:
    return f"clip {uuid.uuid4().hex[:8]}"


def fits(page: Page, width: int) -> None:
    """Nothing sticks out sideways at ``width`` CSS pixels (a phone)."""
    page.set_viewport_size({"width": width, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_home_page_loads(page: Page, server: Server) -> None:
    response = page.goto(server.url + "/")
    assert response is not None and response.status == 200
    assert page.title() == "chunkcast"


def test_the_upload_page_uploads_a_clip_that_then_plays(page: Page, server: Server,
                                                        clip: Path) -> None:
    name = title()
    page.goto(server.url + "/upload")
    fits(page, 360)
    save_token(page, server.token)
    page.get_by_label("Video file").set_input_files(clip)
    expect(page.get_by_label("Title")).to_have_value("tiny")  # from the file name
    page.get_by_label("Title").fill(name)
    page.get_by_role("button", name="Upload", exact=True).click()

    expect(page.locator("#upload-progress")).to_be_visible()
    expect(page.get_by_label("Upload", exact=True)).to_have_js_property("value", 100)
    watch = page.get_by_role("link", name=f"Watch “{name}”")
    expect(watch).to_be_visible(timeout=SLOW_MS)
    expect(page.get_by_label("Transcoding")).to_have_js_property("value", 100)
    expect(page.locator("#upload-error")).to_be_hidden()
    watch.click()

    page.wait_for_url(re.compile(r"/watch/[a-z0-9]+$"))
    video = page.locator("video")
    expect(video).to_have_count(1, timeout=30_000)
    page.wait_for_function("document.querySelector('video').currentTime > 0.5",
                           timeout=60_000)


def test_home_lists_the_library_newest_first(page: Page, server: Server, clip: Path) -> None:
    older, newer = title(), title()
    ready = upload(server, clip, older)
    upload(server, clip, newer)
    page.goto(server.url + "/")
    fits(page, 360)
    library = page.locator("#library")
    link = library.get_by_role("link", name=older)
    expect(link).to_have_attribute("href", f"/watch/{ready['id']}")
    expect(link).to_contain_text("ready")
    text = library.inner_text()
    assert text.index(newer) < text.index(older)


def test_the_stream_dashboard_goes_live_and_ends(page: Page, live_server: Server, clip: Path,
                                                 tmp_path: Path,
                                                 broadcasts: list[subprocess.Popen[bytes]]
                                                 ) -> None:
    name = f"live {uuid.uuid4().hex[:8]}"
    page.goto(live_server.url + "/streams/new")
    save_token(page, live_server.token)
    page.get_by_label("Stream title").fill(name)
    page.get_by_role("button", name="Create stream").click()
    page.wait_for_url(re.compile(r"/streams/(?!new$)[a-z0-9]+$"))
    stream_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    fits(page, 360)
    page.set_viewport_size({"width": 1280, "height": 800})

    # The key is hidden, in its field and in the commands, until it is revealed.
    key_field = page.get_by_role("textbox", name="Stream key")
    expect(key_field).to_have_attribute("type", "password")
    key = key_field.input_value()
    assert len(key) >= 32
    command = page.locator("#broadcast-command")
    expect(command).not_to_contain_text(key)
    page.get_by_role("button", name="Show key").click()
    expect(key_field).to_have_attribute("type", "text")
    expect(command).to_have_text(
        f"chunkcast broadcast testsrc --server {live_server.url} --stream {stream_id} "
        f"--key {key} --chunk-seconds 1")
    expect(page.locator("#listen-command")).to_have_text(
        f"chunkcast broadcast 'tcp://127.0.0.1:9000?listen=1' --server {live_server.url} "
        f"--stream {stream_id} --key {key} --chunk-seconds 1 --input-options '-f mpegts'")
    expect(page.locator("#ffmpeg-command")).to_contain_text("-f mpegts tcp://127.0.0.1:9000")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy broadcast command").click()
    expect(page.locator("#copy-status")).to_have_text("Copied broadcast command.")
    assert page.evaluate("navigator.clipboard.readText()") == command.inner_text()
    expect(page.locator("#stream-status")).to_have_text("idle")
    expect(page.locator("#last-chunk")).to_have_text("none yet")

    stream = {"id": stream_id, "stream_key": key}
    broadcasts.append(start_broadcast(live_server, stream, clip, tmp_path / "broadcast.log",
                                      "--loop"))
    expect(page.locator("#stream-status")).to_have_text("live", timeout=SLOW_MS)
    expect(page.locator("#last-chunk")).to_have_attribute("datetime", re.compile("."))
    expect(page.locator("#stream-viewers")).to_have_text("0")
    last_chunk = datetime.fromisoformat(page.locator("#last-chunk").get_attribute("datetime")
                                        or "")
    assert datetime.now(UTC) - last_chunk < timedelta(seconds=10)
    expect(page.locator("#last-chunk")).to_contain_text("s ago")

    home = page.context.new_page()
    home.goto(live_server.url + "/")
    live_now = home.locator("#live-now")
    expect(live_now.get_by_role("link", name=name)).to_have_attribute(
        "href", f"/watch/{stream_id}")
    home.close()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="End stream").click()
    expect(page.locator("#stream-status")).to_have_text("ended", timeout=30_000)
    expect(page.get_by_role("button", name="End stream")).to_be_disabled()
    expect(page.locator("#status-error")).to_be_hidden()


def test_a_missing_or_wrong_admin_token_is_explained(page: Page, server: Server,
                                                     clip: Path) -> None:
    page.goto(server.url + "/streams/new")
    page.get_by_label("Stream title").fill("no token")
    page.get_by_role("button", name="Create stream").click()
    error = page.locator("#stream-error")
    expect(error).to_have_text("Enter the admin token first (chunkcast up prints it).")
    expect(page.locator("#admin-token")).to_be_focused()

    save_token(page, "not-the-token")
    page.get_by_role("button", name="Create stream").click()
    expect(error).to_contain_text("The admin token was refused")
    expect(error).to_contain_text("HTTP 401")
    assert page.url.endswith("/streams/new")

    # The token is kept in the browser: the upload page knows it is wrong too.
    page.goto(server.url + "/upload")
    expect(page.get_by_role("button", name="Change token")).to_be_visible()
    page.get_by_label("Video file").set_input_files(clip)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#upload-error")).to_contain_text("The admin token was refused")
    expect(page.locator("#upload-progress")).to_be_hidden()


def test_an_unknown_stream_has_no_dashboard(page: Page, server: Server) -> None:
    response = page.goto(server.url + "/streams/" + "a" * 16)
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("No such stream")


def test_a_new_key_replaces_one_this_browser_never_saw(page: Page, server: Server) -> None:
    stream = create_stream(server)
    page.goto(f"{server.url}/streams/{stream['id']}")
    save_token(page, server.token)
    key_field = page.get_by_role("textbox", name="Stream key")
    expect(key_field).to_have_value("")
    expect(page.get_by_role("button", name="Show key")).to_be_disabled()
    expect(page.locator("#broadcast-command")).to_contain_text("--key YOUR_STREAM_KEY")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="New key").click()
    expect(key_field).to_have_attribute("type", "text")
    key = key_field.input_value()
    assert key and key != stream["stream_key"]
    expect(page.locator("#broadcast-command")).to_contain_text(f"--key {key}")
    chunks = f"{server.url}/api/v1/streams/{stream['id']}/chunks"
    for used, status in ((stream["stream_key"], 403), (key, 201)):
        response = httpx.post(chunks, json={"seq": 0, "duration": 1.0},
                              headers={"X-Stream-Key": used})
        assert response.status_code == status


def test_a_file_that_is_not_a_video_fails_clearly(page: Page, server: Server,
                                                  tmp_path: Path) -> None:
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"this is not a video\n" * 500)
    page.goto(server.url + "/upload")
    save_token(page, server.token)
    page.get_by_label("Video file").set_input_files(junk)
    page.get_by_role("button", name="Upload", exact=True).click()
    error = page.locator("#upload-error")
    expect(error).to_contain_text("The video could not be processed: ", timeout=SLOW_MS)
    assert len(error.inner_text()) > len("The video could not be processed: ") + 5
    expect(page.locator("#upload-done")).to_be_hidden()


def test_a_big_file_goes_up_in_parts_with_their_etags(page: Page, server: Server,
                                                      tmp_path: Path) -> None:
    """What S3 storage asks of big files, played by routes standing in for the API and the
    bucket (the local store never splits an upload)."""
    data = bytes(range(256)) * 10  # 2560 bytes: parts of 1000, 1000 and 560
    source = tmp_path / "big.mp4"
    source.write_bytes(data)
    video = {"id": "fakebigvideo0001", "title": "big", "status": "processing", "progress": 0,
             "error": None}
    parts = [{"number": n, "url": f"{server.url}/bucket/part/{n}"} for n in (1, 2, 3)]
    received: dict[int, bytes] = {}
    refused: list[int] = []
    completed: list[Any] = []

    def create(route: Route) -> None:
        upload: dict[str, Any] = {
            "url": None, "method": "PUT", "headers": {}, "expires_at": "2099-01-01T00:00:00Z",
            "upload_id": "upload-1", "part_size": 1000, "parts": parts}
        route.fulfill(status=201, json={**video, "upload": upload})

    def bucket(route: Route) -> None:
        number = int(route.request.url.rsplit("/", 1)[1])
        if number == 2 and not refused:  # one failure: the part alone is sent again
            refused.append(number)
            route.fulfill(status=503, body="slow down")
            return
        received[number] = route.request.post_data_buffer or b""
        route.fulfill(status=200, headers={"ETag": f'"etag-{number}"'})

    def complete(route: Route) -> None:
        completed.append(route.request.post_data_json)
        route.fulfill(status=202, json={**video, "status": "ready", "progress": 100})

    page.route(f"{server.url}/api/v1/videos", create)
    page.route(f"{server.url}/bucket/part/*", bucket)
    page.route(f"{server.url}/api/v1/videos/{video['id']}/complete", complete)
    page.goto(server.url + "/upload")
    save_token(page, server.token)
    page.get_by_label("Video file").set_input_files(source)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.get_by_role("link", name="Watch “big”")).to_be_visible(timeout=30_000)
    assert b"".join(received[n] for n in (1, 2, 3)) == data
    assert refused == [2]
    assert completed == [{"upload_id": "upload-1",
                          "parts": [{"number": n, "etag": f'"etag-{n}"'} for n in (1, 2, 3)]}]


def test_pages_run_under_their_own_policy(browser: Any, server: Server, clip: Path) -> None:
    """Without bypassing the Content-Security-Policy the app's own scripts still run: pages
    render, a video plays, and the browser reports no violation."""
    import time

    video = upload(server, clip)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        for path in ("/", "/upload", "/streams/new"):
            response = page.goto(server.url + path)
            assert response is not None and response.status == 200
            assert "content-security-policy" in response.headers
        page.goto(f"{server.url}/watch/{video['id']}")
        deadline = time.monotonic() + SLOW_MS / 1000
        while page.evaluate("document.querySelector('video')?.currentTime ?? 0") < 0.5:
            assert time.monotonic() < deadline, "the video never played"
            page.wait_for_timeout(100)
        violations = [line for line in console if "Content Security Policy" in line]
        assert not violations, violations
    finally:
        context.close()
