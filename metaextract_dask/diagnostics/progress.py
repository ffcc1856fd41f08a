"""Progress where the user is: a tqdm bar on a terminal, a widget in a notebook, timed lines in a log.

``Progress.for_output`` picks the kind: a Jupyter kernel gets ``tqdm.auto``'s
widget (and the dashboard link as a clickable link), a terminal gets a bar
with ETA, anything else (a log file, a batch job's output) gets one plain
line every ``interval`` seconds: files done/total, bytes, rate, errors, ETA.

The ETA is the average rate's, shown once it can mean something (``ETA_AFTER``:
a share of the files done and some seconds gone): the first files of a scan
pay for its start, and a rate taken from them once promised 56 minutes for a
23-second scan. ``Phase`` says what a scan does before its bar has anything
to count (walking, starting workers).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ..core.text import human_bytes

#: the kinds of progress, and "off"
KINDS = ("notebook", "bar", "lines", "off")


#: the ETA is shown once this share of the files is done and this many seconds have gone
ETA_AFTER = (0.05, 3.0)
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} files [{elapsed}ETA, {rate_fmt}] {postfix}"


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
        self.eta_shown = False
        self._phase: str | None = None
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
                    smoothing=0, bar_format=_BAR.replace("ETA", ""))

    def _eta_worth(self) -> bool:
        """Whether the ETA may be shown yet (``ETA_AFTER``); once shown, it stays."""
        if not self.eta_shown and self.total and self.done >= ETA_AFTER[0] * self.total and \
                time.monotonic() - self.start >= ETA_AFTER[1]:
            self.eta_shown = True
            if self.bar is not None and self.kind == "bar":
                self.bar.bar_format = _BAR.replace("ETA", "<{remaining}")
        return self.eta_shown

    def phase(self, text: str | None) -> None:
        """What the scan is doing while no file is done yet ("starting"); None (or the first file done): extracting."""
        self._phase = text
        if self.bar is not None and self.kind == "bar":
            self.bar.set_description_str(f"metaextract ({text})" if text else "metaextract")

    def link(self, url: str, label: str = "Dask dashboard") -> None:
        """Show where to watch: a clickable link in a notebook (the CLI prints its own line)."""
        if self.kind == "notebook":
            from html import escape

            from IPython.display import HTML, display

            display(HTML(f'<a href="{escape(url, quote=True)}" target="_blank">{escape(label)}: {escape(url)}</a>'))

    def update(self, nbytes: int = 0, failed: bool = False, files: int = 1) -> None:
        """``files`` more done (``nbytes`` bytes in all; failed, when ``failed``)."""
        self.done += files
        self.bytes += nbytes
        self.errors += files if failed else 0
        self._eta_worth()
        if self._phase is not None:
            self.phase(None)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{human_bytes(self.bytes)}, {self.errors} error{'s' if self.errors != 1 else ''}", refresh=False)
            self.bar.update(files)
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
        return (f"metaextract: {self.done}/{self.total} files, {human_bytes(self.bytes)}, {rate:.1f} files/s "
                f"({human_bytes(self.bytes / elapsed)}/s), {self.errors} error{'s' if self.errors != 1 else ''}, "
                f"elapsed {_duration(elapsed)}" + (f", ETA {_duration(eta)}" if self._eta_worth() or self.done >= self.total else ""))

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


class Phase:
    """One status line for what a scan does before its bar starts: rewritten in place on a terminal, a line when it
    changes elsewhere (nothing in a notebook, whose widget and dashboard link say it)."""

    def __init__(self, enabled: bool | None, stream: TextIO | None = None, every: float = 0.25):
        self.stream = stream or sys.stderr
        self.kind = choose_kind(enabled, self.stream)
        self.every = every
        self._stop: Any = None
        self._shown = ""

    def show(self, text: str) -> None:
        if self.kind == "bar":
            self._write(f"\rmetaextract: {text}\033[K")
        elif self.kind == "lines" and text.split(":")[0] != self._shown.split(":")[0]:  # a new phase, not its count
            self._write(f"metaextract: {text}\n")
        self._shown = text

    def follow(self, label: str, count: Any) -> None:
        """``label: N files so far``, refreshed from ``count()`` until ``stop``."""
        import threading

        stop = threading.Event()

        def loop() -> None:
            while True:
                self.show(f"{label}: {count():,} files so far")
                if stop.wait(self.every):
                    return

        thread = threading.Thread(target=loop, name="metaextract-phase", daemon=True)
        self._stop = (stop, thread)
        thread.start()

    def stop(self) -> None:
        """End the line (a terminal's is cleared: the bar takes its place)."""
        if self._stop is not None:
            stop, thread = self._stop
            stop.set()
            thread.join(timeout=5)
            self._stop = None
        if self.kind == "bar" and self._shown:
            self._write("\r\033[K")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.kind = "off"
