"""A reader at a terminal: one bash that runs a recipe's blocks in turn, keeping its variables
and background jobs between them, in a working dir laid out like the checkout."""

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from chunkcast.media.process import die_with_parent
from tests.docs.readme import REPO, Block, with_ports

STOP_GRACE_S = 15.0


class RecipeFailed(AssertionError):
    pass


def reader_env(**settings: str) -> dict[str, str]:
    """This process's environment as a reader's shell would have it after ``make up``: no
    ``CHUNKCAST_*``/``AWS_*`` settings, the virtualenv not on the PATH (the README says
    ``.venv/bin/chunkcast``), not inside a ``make`` (as under ``make test``: a nested make
    prints "Entering directory"), plus ``settings``."""
    venv_bin = str(Path(sys.prefix) / "bin")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHUNKCAST_", "AWS_", "CC_"))
           and k not in ("VIRTUAL_ENV", "MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and p != venv_bin)
    return {**env, **settings}


def checkout(workdir: Path) -> Path:
    """Make ``workdir`` look like the checkout for the recipes (``.venv``, ``scripts``, the
    ``Makefile`` and ``pyproject.toml`` are links to the real ones); what the recipes write
    stays in it."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in (".venv", "scripts", "Makefile", "pyproject.toml"):
        link = workdir / name
        if not link.exists():
            link.symlink_to(REPO / name)
    return workdir


class Shell:
    """``bash`` reading the blocks from its stdin, as typed; ``set -e -o pipefail``, so the
    first failing command ends it (and the recipe). Its output, with that of its background
    jobs, is collected per block."""

    def __init__(self, workdir: Path, env: dict[str, str], ports: dict[int, int]) -> None:
        self.workdir = workdir
        self._ports = ports
        self._blocks = workdir.parent / f"{workdir.name}-blocks"
        self._blocks.mkdir(exist_ok=True)
        self._done = f"--doc-test-{uuid.uuid4().hex}--"
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.transcript: list[str] = []
        self._proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-s"], cwd=workdir, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True, preexec_fn=die_with_parent)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._send("set -e -o pipefail\n")

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _send(self, text: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(text)
        self._proc.stdin.flush()

    def run(self, block: Block, *, timeout_s: float = 120.0) -> str:
        """Run ``block`` (its ports replaced) in the shell, as if pasted (stdin: nothing);
        returns what it printed. A failing command, or ``timeout_s``, fails the recipe."""
        script = self._blocks / f"{block.recipe}-{block.line}.sh"
        script.write_text(with_ports(block.code, self._ports))
        self._send(f". '{script}' < /dev/null\necho; echo {self._done}\n")
        out: list[str] = []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise self._failed(block, out, f"still running after {timeout_s:.0f} s"
                                   ) from None
            if line is None:
                self._proc.wait()
                raise self._failed(block, out, f"the shell exited ({self._proc.returncode})")
            if line.strip() == self._done:
                break
            out.append(line)
        if out and out[-1] == "\n":
            out.pop()  # the newline echoed before the marker
        self.transcript += out
        return "".join(out)

    def _failed(self, block: Block, out: list[str], why: str) -> RecipeFailed:
        return RecipeFailed(f"README recipe {block.recipe!r}, block at line {block.line}: "
                            f"{why}\n--- block ---\n{block.code}--- output ---\n"
                            + "".join(self.transcript + out)[-6000:])

    def close(self) -> None:
        """End the shell and whatever it left running in its process group (background
        jobs the recipe did not stop): SIGTERM, SIGKILL after a grace period."""
        with contextlib.suppress(OSError):
            self._send("exit 0\n")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and _group_alive(self._proc.pid):
            self._proc.poll()
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        assert self._proc.stdin is not None and self._proc.stdout is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        self._reader.join(timeout=5)  # at the end of the output: every writer is gone
        self._proc.stdout.close()


class Foreground:
    """A block that runs until Ctrl-C (``make up``): bash in a process group of its own, as
    a terminal's foreground job is, with its output collected as it comes."""

    def __init__(self, block: Block, workdir: Path, env: dict[str, str]) -> None:
        script = workdir.parent / f"{workdir.name}-{block.recipe}-{block.line}.sh"
        script.write_text(block.code)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._out: list[str] = []
        self._proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", str(script)],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
            preexec_fn=die_with_parent)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    @property
    def output(self) -> str:
        """What it printed so far."""
        return "".join(self._out)

    def wait_for(self, pattern: str, *, timeout_s: float) -> re.Match[str]:
        """The first line of its output that ``pattern`` matches, once printed; it failing,
        exiting or ``timeout_s`` first fails the recipe."""
        deadline = time.monotonic() + timeout_s
        for printed in self._out:
            if found := re.search(pattern, printed):
                return found
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RecipeFailed(f"no line matching {pattern!r} after {timeout_s:.0f} s:\n"
                                   + self.output[-6000:]) from None
            if line is None:
                raise RecipeFailed(f"it exited ({self._proc.wait()}) before printing a line "
                                   f"matching {pattern!r}:\n" + self.output[-6000:])
            self._out.append(line)
            if found := re.search(pattern, line):
                return found

    def interrupt(self, *, timeout_s: float) -> int:
        """Ctrl-C: SIGINT to its process group; returns its exit status once every process
        of the group is gone (a timeout fails the recipe)."""
        os.killpg(self._proc.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while _group_alive(self._proc.pid) and time.monotonic() < deadline:
            self._proc.poll()
            time.sleep(0.1)
        if _group_alive(self._proc.pid):
            raise RecipeFailed(f"still running {timeout_s:.0f} s after Ctrl-C:\n"
                               + self.output[-6000:])
        code = self._proc.wait()
        self._reader.join(timeout=5)
        with contextlib.suppress(queue.Empty):
            while (line := self._lines.get_nowait()) is not None:
                self._out.append(line)
        return code

    def close(self) -> None:
        """Whatever is left of its process group: SIGKILL."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        self._reader.join(timeout=5)
        assert self._proc.stdout is not None
        self._proc.stdout.close()


@contextlib.contextmanager
def foreground(block: Block, workdir: Path, env: dict[str, str]) -> Iterator[Foreground]:
    running = Foreground(block, workdir, env)
    try:
        yield running
    finally:
        running.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def shell(workdir: Path, env: dict[str, str], ports: dict[int, int]) -> Iterator[Shell]:
    running = Shell(workdir, env, ports)
    try:
        yield running
    finally:
        running.close()
