"""A plain progress bar on stderr for long operations started from the CLI."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    def __init__(self, label: str, *, width: int = 30, stream=sys.stderr) -> None:
        self.label = label
        self.width = width
        self.stream = stream
        self._started = time.monotonic()
        self._last = ""

    def update(self, done: int, total: int) -> None:
        fraction = 1.0 if total <= 0 else min(1.0, done / total)
        filled = int(self.width * fraction)
        line = f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {done}/{total} ({time.monotonic() - self._started:.1f}s)"
        if line != self._last:
            self.stream.write(line)
            self.stream.flush()
            self._last = line

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
