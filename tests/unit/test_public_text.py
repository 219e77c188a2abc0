"""Public error texts never carry a path or a URL."""

import pytest

from chunkcast.domain.errors import public_text


@pytest.mark.parametrize(("text", "public"), [
    ("ffmpeg failed: /tmp/chunkcast-x/240p/index.m3u8: No such file",
     "ffmpeg failed: [path] No such file"),
    ("could not open http://127.0.0.1:8333/bucket/chunks/x?X-Amz-Signature=abc now",
     "could not open [url] now"),
    ("file:///etc/passwd and s3://bucket/key", "[url] and [url]"),
    ("duration must be within (0, 10] seconds", "duration must be within (0, 10] seconds"),
    ("chunk 3: 2/3 renditions done", "chunk 3: 2/3 renditions done"),
])
def test_paths_and_urls_are_taken_out(text: str, public: str) -> None:
    assert public_text(text) == public
