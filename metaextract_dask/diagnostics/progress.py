"""A one-line progress bar on the terminal; silent when output is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class ProgressBar:
    """files done/total, bytes, files per second, errors so far."""

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total
        self.done = self.errors = self.bytes = 0
        self.start = time.monotonic()
        self._drawn = 0.0

    def update(self, nbytes: int = 0, failed: bool = False) -> None:
        self.done += 1
        self.bytes += nbytes
        self.errors += failed
        now = time.monotonic()
        if self.enabled and (now - self._drawn > 0.1 or self.done == self.total):
            self._drawn = now
            self.stream.write("\r" + self.line() + "\033[K")
            self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 24)
        return (f"[{bar:<24}] {self.done}/{self.total} files {100 * frac:3.0f}% | {_bytes(self.bytes)} | "
                f"{self.done / elapsed:.1f} files/s | {self.errors} error{'s' if self.errors != 1 else ''}")

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
