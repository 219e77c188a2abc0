"""Closed chunks waiting for an upload thread: a bounded backlog, oldest first."""

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Delivery:
    """One closed chunk to deliver: its file, its report, and the time (monotonic) after
    which it is no longer worth delivering."""

    seq: int
    path: Path
    report: dict[str, Any]
    deadline: float


class Backlog:
    """Chunks cut and not yet taken by an upload thread, in seq order (thread-safe).

    Owned by the broadcast; bound: ``limit`` chunks (files on disk). Putting a chunk into a
    full backlog pushes the oldest waiting one out, for the caller to skip: through a long
    outage the newest chunks are the ones viewers still want."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._waiting: deque[Delivery] = deque()
        self._changed = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._changed:
            return len(self._waiting)

    def put(self, delivery: Delivery) -> Delivery | None:
        """Add ``delivery``; returns the chunk pushed out, if the backlog was full."""
        with self._changed:
            pushed_out = self._waiting.popleft() if len(self._waiting) >= self._limit else None
            self._waiting.append(delivery)
            self._changed.notify()
        return pushed_out

    def take(self) -> Delivery | None:
        """The oldest waiting chunk, once there is one; None once closed and empty."""
        with self._changed:
            while not self._waiting and not self._closed:
                self._changed.wait()
            return self._waiting.popleft() if self._waiting else None

    def close(self) -> None:
        """No chunk will follow: takers get what is left, then None."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def clear(self) -> list[Delivery]:
        """Remove and return every waiting chunk."""
        with self._changed:
            left = list(self._waiting)
            self._waiting.clear()
            return left
