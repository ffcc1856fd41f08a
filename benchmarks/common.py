"""Helpers shared by the benchmarks: timing, process-tree memory, the results file."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from typing import Callable

import psutil

MiB = 1024**2
GiB = 1024**3


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls (the least disturbed run)."""
    return min(timed(fn) for _ in range(repeat))


def cat_seconds(path: str) -> float:
    """``cat FILE > /dev/null``: the page-cache read limit."""
    t = time.perf_counter()
    subprocess.run(f"cat '{path}' > /dev/null", shell=True, check=True)
    return time.perf_counter() - t


class TreeRSS:
    """Samples the resident memory of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak_total = 0
        self.peak_single = 0
        self.peak_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            rss = []
            for p in procs:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            self.peak_total = max(self.peak_total, sum(rss))
            self.peak_single = max(self.peak_single, max(rss, default=0))
            self.peak_processes = max(self.peak_processes, len(rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def machine_line() -> str:
    import dask
    import distributed
    import numpy

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / GiB:.0f} GiB RAM, "
        f"Python {platform.python_version()}, dask {dask.__version__}, distributed {distributed.__version__}, numpy {numpy.__version__}"
    )


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def write_report(report: str, path: str) -> None:
    """Print the report and write it to its results file."""
    print(report)
    with open(path, "w") as f:
        f.write(report)
