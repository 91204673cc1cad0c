"""Start child processes, wait for the lines they print, and kill them with SIGKILL.

A child announces each point the test cares about by printing one line and flushing; the
test waits for that exact line (no sleeping and hoping). Children that block at a crash
point are ended with SIGKILL, so nothing in them gets to clean up.
"""

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent.parent


class Child:
    """One child process running ``python -m children.<module> <json args>``."""

    def __init__(self, module: str, args: dict[str, Any], log_dir: Path, label: str) -> None:
        self.label = label
        self.stderr_path = log_dir / f"{label}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"children.{module}", json.dumps(args)],
            cwd=TESTS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, name=f"read-{label}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output: the child exited

    def expect(self, wanted: str | Iterable[str], timeout: float = 30.0) -> None:
        """Wait until the child has printed every line in ``wanted`` (in any order)."""
        missing = {wanted} if isinstance(wanted, str) else set(wanted)
        missing -= set(self.seen)
        end = time.monotonic() + timeout
        while missing:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"{self.label} did not print {sorted(missing)} within {timeout}s; "
                    f"it printed {self.seen}.\n{self.stderr_tail()}"
                ) from None
            if line is None:
                self.proc.wait()
                raise AssertionError(
                    f"{self.label} exited with {self.proc.returncode} before printing "
                    f"{sorted(missing)}; it printed {self.seen}.\n{self.stderr_tail()}"
                )
            self.seen.append(line)
            missing.discard(line)

    def next_lines(self, n: int, timeout: float = 30.0) -> list[str]:
        """The next ``n`` lines the child prints (not yet consumed by :meth:`expect`)."""
        end = time.monotonic() + timeout
        got: list[str] = []
        while len(got) < n:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"{self.label} printed {got} and then nothing more within {timeout}s; "
                    f"{n} lines were expected.\n{self.stderr_tail()}"
                ) from None
            if line is None:
                self.proc.wait()
                raise AssertionError(
                    f"{self.label} exited with {self.proc.returncode} after printing {got}; "
                    f"{n} lines were expected.\n{self.stderr_tail()}"
                )
            self.seen.append(line)
            got.append(line)
        return got

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def sigkill(self) -> None:
        """Kill the child at once (no handlers, no atexit, no flush) and reap it."""
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(timeout=10) == -signal.SIGKILL

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._stderr.close()

    def stderr_tail(self, n: int = 4000) -> str:
        self._stderr.flush()
        text = self.stderr_path.read_text(errors="replace")
        return f"--- stderr of {self.label} ---\n{text[-n:]}"

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


class Spawner:
    """Starts children for one test and kills whichever are still alive at its end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def __call__(self, module: str, args: dict[str, Any], label: str | None = None) -> Child:
        child = Child(module, args, self.log_dir, label or f"child{len(self.children)}")
        self.children.append(child)
        return child

    def cleanup(self) -> None:
        for child in self.children:
            child.cleanup()


def max_overlap(intervals: Iterable[tuple[int, int]]) -> int:
    """The most intervals [start, end) that contain one instant (an end at t comes before a
    start at t: the start was caused by the end freeing a slot)."""
    events: list[tuple[int, int]] = []
    for start, end in intervals:
        assert start <= end, (start, end)
        events.append((start, 1))
        events.append((end, -1))
    events.sort()
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best
