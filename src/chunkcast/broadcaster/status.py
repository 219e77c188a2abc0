"""The broadcaster's status line.
"""

import threading
import time
from typing import Any

from rich.console import Console
from rich.text import Text


class Status:
    """Counters shown on stderr: a live line on a terminal, else one line per chunk."""

    def __init__(self, console: Console, *, live: bool) -> None:
        self._console = console
        self._live = live
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.sent = self.retries = self.skipped = 0
        self.last_ms: int | None = None
        self.last_captured = ""

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def chunk_sent(self, seq: int, ms: int, report: dict[str, Any]) -> None:
        with self._lock:
            self.sent += 1
            self.last_ms, self.last_captured = ms, report["captured_at"]
        if not self._live:
            self._console.print(f"chunk {seq} sent in {ms} ms ({report['duration']:.3f} s, "
                                f"captured {report['captured_at']})", highlight=False)

    def chunk_skipped(self, seq: int, message: str) -> None:
        with self._lock:
            self.skipped += 1
        self._console.print(f"[red]chunk {seq} skipped: {message}[/]", highlight=False)

    def __rich__(self) -> Text:
        with self._lock:
            elapsed = int(time.monotonic() - self._started)
            last = "-" if self.last_ms is None else f"{self.last_ms} ms"
            line = (f"● live {elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
                    f"  chunks sent {self.sent}  last upload {last}  failures {self.retries}"
                    f"  skipped {self.skipped}  captured {self.last_captured or '-'}")
        return Text(line, style="bold red" if self.skipped else "bold")


