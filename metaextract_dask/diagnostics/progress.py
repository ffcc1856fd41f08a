"""Progress where the user is: a tqdm bar on a terminal, a widget in a notebook, timed lines in a log.

``Progress.for_output`` picks the kind: a Jupyter kernel gets ``tqdm.auto``'s
widget (and the dashboard link as a clickable link), a terminal gets a bar
with ETA, anything else (a log file, a batch job's output) gets one plain
line every ``interval`` seconds: files done/total, bytes, rate, errors, ETA.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

#: the kinds of progress, and "off"
KINDS = ("notebook", "bar", "lines", "off")


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a widget can draw)."""
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def choose_kind(enabled: bool | None, stream: TextIO) -> str:
    """``enabled`` None: the kind that suits where output goes; False: off; True: a bar (or the widget in a notebook)."""
    if enabled is False:
        return "off"
    if in_notebook():
        return "notebook"
    if enabled or stream.isatty():
        return "bar"
    return "lines"


class Progress:
    """files done/total, bytes, rate, errors, ETA: as a bar, a widget or timed lines."""

    def __init__(self, total: int, kind: str = "bar", stream: TextIO | None = None, interval: float = 10.0):
        if kind not in KINDS:
            raise ValueError(f"unknown progress kind {kind!r} (one of {', '.join(KINDS)})")
        self.kind, self.total = kind, total
        self.stream = stream or sys.stderr
        self.interval = interval
        self.done = self.errors = self.bytes = 0
        self.start = self._last_line = time.monotonic()
        self.bar: Any = None
        if kind in ("bar", "notebook") and total:
            self.bar = self._tqdm(kind)

    @classmethod
    def for_output(cls, total: int, enabled: bool | None = None, stream: TextIO | None = None, interval: float = 10.0) -> "Progress":
        stream = stream or sys.stderr
        return cls(total, choose_kind(enabled, stream), stream, interval)

    def _tqdm(self, kind: str) -> Any:
        if kind == "notebook":
            from tqdm.auto import tqdm

            return tqdm(total=self.total, unit="file", desc="metaextract")
        import shutil

        from tqdm import tqdm

        # a terminal that reports no size (a fresh pty: 0 x 0) gets 100 x 20; tqdm would draw nothing there
        size = shutil.get_terminal_size((100, 20))
        return tqdm(total=self.total, unit="file", desc="metaextract", file=self.stream, ncols=size.columns, nrows=size.lines,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} files [{elapsed}<{remaining}, {rate_fmt}] {postfix}")

    def link(self, url: str, label: str = "Dask dashboard") -> None:
        """Show where to watch: a clickable link in a notebook (the CLI prints its own line)."""
        if self.kind == "notebook":
            from html import escape

            from IPython.display import HTML, display

            display(HTML(f'<a href="{escape(url, quote=True)}" target="_blank">{escape(label)}: {escape(url)}</a>'))

    def update(self, nbytes: int = 0, failed: bool = False) -> None:
        self.done += 1
        self.bytes += nbytes
        self.errors += failed
        if self.bar is not None:
            self.bar.set_postfix_str(f"{_bytes(self.bytes)}, {self.errors} error{'s' if self.errors != 1 else ''}", refresh=False)
            self.bar.update(1)
        elif self.kind == "lines":
            now = time.monotonic()
            if now - self._last_line >= self.interval:
                self._last_line = now
                self._write_line()

    def line(self) -> str:
        """One plain status line."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 and self.done < self.total else 0.0
        return (f"metaextract: {self.done}/{self.total} files, {_bytes(self.bytes)}, {rate:.1f} files/s "
                f"({_bytes(self.bytes / elapsed)}/s), {self.errors} error{'s' if self.errors != 1 else ''}, "
                f"elapsed {_duration(elapsed)}, ETA {_duration(eta)}")

    def _write_line(self) -> None:
        try:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # the log went away: progress is not worth failing for
            self.kind = "off"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.kind == "lines" and self.done and self.total:
            self._write_line()
