"""The memory bus's journal: an append-only file of JSON records, rewritten in place when
its owner says most of it is dead.

A line cut short by a crash (the process died mid-write) is skipped when the file is read:
the operation it recorded never completed. A rewrite goes to a temp file that replaces the
journal in one rename, so a crash during it leaves either the old file or the new one.
"""

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

Record = dict[str, Any]


class Journal:
    """``lines`` is how many records the file holds now (its owner compares it with how many
    its live state needs to decide when a rewrite pays off)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._out: IO[str] | None = None
        self.lines = 0

    def read(self) -> Iterator[Record]:
        """Every complete record, oldest first."""
        if not self._path.exists():
            return
        with self._path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: the op never completed
                if isinstance(record, dict):
                    yield record

    def rewrite(self, records: Iterable[Record]) -> None:
        """Replace the file's content with ``records``; later appends go after them."""
        temp = self._path.with_name(self._path.name + ".tmp")
        count = 0
        with temp.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(_line(record))
                count += 1
            out.flush()
            os.fsync(out.fileno())  # the rename must not land before the data
        self.close()
        temp.replace(self._path)
        self._out = self._path.open("a", encoding="utf-8")
        self.lines = count

    def append(self, record: Record) -> None:
        """Add one record (flushed to the OS at once; nothing once closed)."""
        if self._out is None:
            return
        self._out.write(_line(record))
        self._out.flush()
        self.lines += 1

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _line(record: Record) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"
