"""A dependency-free progress bar for long runs (demo, benchmarks, fuzzing)."""
from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """A one-line text progress bar on stderr (no dependency).

    ``with Progress(total, "gemm") as bar: bar.step("int8 64x64x64")`` draws
    ``gemm [#####.....] 5/10 int8 64x64x64 (12 s)``. On a terminal the line is redrawn in place; otherwise
    (CI logs, pipes) every step prints its own line so logs stay readable.
    """

    def __init__(self, total: int, title: str = "", stream=None, width: int = 24, enabled: bool = True):
        self.total, self.title, self.width, self.enabled = max(int(total), 1), title, width, enabled
        self.stream = sys.stderr if stream is None else stream
        self.done = 0
        self.start = time.perf_counter()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, label: str = "") -> None:
        """Announce that the next case (``label``) starts; call once per case."""
        self._draw(label)
        self.done += 1

    def finished(self, label: str = "") -> None:
        """Announce that a case (``label``, e.g. with its result) has finished: the count includes it."""
        self.done += 1
        self._draw(label)

    def update(self, done: int, total: int, label: str = "") -> None:
        """Set progress to ``done`` of ``total`` (for work measured rather than stepped); redraws only
        when ``done`` changes."""
        if (done, total) != (self.done, self.total):
            self.done, self.total = done, max(int(total), 1)
            self._draw(label)

    def _draw(self, label: str) -> None:
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"{self.title} [{bar}] {self.done}/{self.total} {label} "
                f"({time.perf_counter() - self.start:.0f} s)")
        if self._tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._draw("done")
        if self._tty and self.enabled:
            self.stream.write("\n")
        self.stream.flush()
        return False
