"""The README's recipes: the ``sh`` blocks it marks for the doc test, and how they are run.

A block belongs to recipe NAME when the line before its fence is the HTML comment
``<!-- doc-test: NAME -->`` (invisible on GitHub); a recipe is its blocks in README order.

Placeholders: the test changes only what the README tells the reader to change. The uploads
and the live stream go to the server in ``CHUNKCAST_PUBLIC_URL`` (with
``CHUNKCAST_ADMIN_TOKEN``), which the test sets to its own; ``make up`` gets a free port as
make's ``PORT`` (the README's ``make up PORT=8100``), from the environment; the local
cluster's ports are the ``CC_*`` settings of ``scripts/local-cluster``, and its API port
``8001`` (``CC_API_PORT``) is replaced in the blocks by the free port the test chose; the
edge's addresses (the API of ``make up`` on 8000, the edge on 8080, the balancer on 8090) are
replaced the same way, and its cache goes under ``TMPDIR``, which the test points at its own
temp dir. Files the reader brings (``my.mp4``, ``match.mp4``) are generated into the working
dir. Nothing else is touched.
"""

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

_MARKER = re.compile(r"^<!--\s*doc-test:\s*([\w-]+)\s*-->\s*$")
_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass(frozen=True)
class Block:
    recipe: str
    code: str
    line: int
    """Line of the README where the code starts (1-based), for messages."""


def recipes(text: str) -> dict[str, list[Block]]:
    """The marked ``sh`` blocks of ``text`` by recipe name, in order."""
    found: dict[str, list[Block]] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        i += 1
        if marker is None:
            continue
        fence = _FENCE.match(lines[i]) if i < len(lines) else None
        if fence is None or fence.group(1) != "sh":
            raise ValueError(f"README line {i}: a doc-test marker must precede a ```sh block")
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        code = "\n".join(lines[start:end]) + "\n"
        found.setdefault(marker.group(1), []).append(Block(marker.group(1), code, start + 1))
        i = end + 1
    return found


def readme_recipes() -> dict[str, list[Block]]:
    return recipes(README.read_text())


def with_ports(code: str, ports: dict[int, int]) -> str:
    """``code`` with each documented port (a whole number, as in ``127.0.0.1:8000`` or
    ``--port 8000``) replaced by the free port the test runs it on."""
    for documented, actual in ports.items():
        code = re.sub(rf"(?<![\w.]){documented}(?!\w)", str(actual), code)
    return code
