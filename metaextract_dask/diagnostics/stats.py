"""Counters of one run, and the seed's ParallelMetrics read from them.

Plain Python, no distributed import: the scheduler plugin keeps one
``RunStats`` per run, and a run on Dask's local scheduler keeps its own.
"""

from __future__ import annotations

import heapq
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

#: the event topic of file outcomes (workers and the client tell the scheduler plugin)
EVENT_TOPIC = "metaextract"

#: upper bounds (seconds) of the per-file duration histogram
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))

class RunStats:
    """Counters of one run; every update O(1)."""

    def __init__(self, run: str):
        self.run = run
        self.started = time.time()
        self.last = self.started
        self.expected_files = 0
        self.expected_bytes = 0
        self.files: Counter = Counter()  # (type, "success"|"failed") -> n
        self.bytes_by_type: Counter = Counter()
        self.chunks_by_type: Counter = Counter()
        self.chunk_tasks_by_shape: Counter = Counter()
        self.chunks_by_shape: Counter = Counter()
        #: remote objects: requests made to their stores and bytes fetched, by detected type
        self.io_requests_by_type: Counter = Counter()
        self.io_bytes_by_type: Counter = Counter()
        self.workers: dict[str, Counter] = {}
        self.failures: deque = deque(maxlen=500)
        self.error_types: Counter = Counter()
        #: a cost model's predicted seconds per kind of file (extension; all files of the run), and the seconds files took
        self.predicted_by_kind: dict[str, float] = {}
        self.seconds_by_kind: dict[str, float] = {}
        self.files_by_kind: dict[str, int] = {}
        self.slowest: list[tuple[float, str, str]] = []  # min-heap of the 20 slowest files
        self.duration_counts = [0] * len(DURATION_BUCKETS)
        self.duration_sum = 0.0
        self.throughput: deque = deque(maxlen=600)  # (time, bytes) per outcome, for rates over time
        self.task_log: deque = deque(maxlen=10_000)  # (start, stop, key, worker) of batch and final tasks
        self.finished = False
        self.batches_seen: set[str] = set()  # batch keys already counted (a recomputed batch reports twice)

    def apply(self, msg: dict[str, Any]) -> None:
        """One event of the run (``EVENT_TOPIC``): its start, files' outcomes (a batch counted once), its end."""
        kind = msg.get("kind")
        if kind == "files":
            batch = msg.get("batch")
            if batch is not None:
                if batch in self.batches_seen:
                    return
                self.batches_seen.add(batch)
            for f in msg["files"]:
                f.setdefault("worker", msg.get("worker"))
                self.add_file(f)
            for block in msg.get("blocks") or ():
                self.add_block(block)
        elif kind == "run-start":
            self.expected_files += msg.get("files", 0)
            self.expected_bytes += msg.get("bytes", 0)
            predicted = msg.get("predicted")
            if isinstance(predicted, dict):
                for k, v in predicted.items():
                    if isinstance(v, (int, float)):
                        self.predicted_by_kind[str(k)] = self.predicted_by_kind.get(str(k), 0.0) + float(v)
        elif kind == "run-end":
            self.finished = True

    def worker(self, name: str | None) -> Counter:
        return self.workers.setdefault(name or "client", Counter())

    def add_file(self, f: dict[str, Any]) -> None:
        kind = f.get("type") or "unknown"
        outcome = "success" if f.get("success") else "failed"
        self.files[(kind, outcome)] += 1
        self.bytes_by_type[kind] += f.get("bytes", 0)
        self.chunks_by_type[kind] += f.get("chunks", 0)
        if f.get("io_requests"):
            self.io_requests_by_type[kind] += f["io_requests"]
            self.io_bytes_by_type[kind] += f.get("io_bytes", 0)
        if f.get("shape"):
            self.chunks_by_shape[f["shape"]] += f.get("chunks", 0)
        w = self.worker(f.get("worker"))
        w["files"] += 1
        w["bytes"] += f.get("bytes", 0)
        w[outcome] += 1
        duration = float(f.get("duration", 0.0))
        self.duration_sum += duration
        self._timed(f.get("path"), duration)
        self._slow((duration, f.get("path", ""), kind))
        if outcome == "failed":
            self.error_types[f.get("error_type") or "unknown"] += 1
            self.failures.append({"path": f.get("path"), "type": kind, "error": f.get("error"), "error_type": f.get("error_type")})
        self.last = time.time()
        self.throughput.append((self.last, f.get("bytes", 0)))

    def add_block(self, b: dict[str, Any]) -> None:
        """Many successful files of one worker at once (``RowBlock.outcomes``: a list per key): what ``add_file`` does
        for each, counted a column at a time."""
        n = len(b["path"])
        if not n:
            return
        types, sizes, chunks, durations = b["type"], b["bytes"], b["chunks"], b["duration"]
        self.files.update((t, "success") for t in types)
        for t, size, c, shape in zip(types, sizes, chunks, b["shape"]):
            self.bytes_by_type[t] += size
            self.chunks_by_type[t] += c
            if shape:
                self.chunks_by_shape[shape] += c
        for t, requests, fetched in zip(types, b.get("io_requests") or (), b.get("io_bytes") or ()):
            if requests:  # remote files' requests, as ``add_file`` counts them
                self.io_requests_by_type[t] += requests
                self.io_bytes_by_type[t] += fetched
        w = self.worker(b.get("worker"))
        w.update(files=n, bytes=sum(sizes), success=n)
        self.duration_sum += sum(durations)
        for path, duration in zip(b["path"], durations):
            self._timed(path, duration)
        for item in heapq.nlargest(20, zip(durations, b["path"], types)):
            self._slow(item)
        self.last = time.time()
        self.throughput.append((self.last, sum(sizes)))

    def _timed(self, path: Any, duration: float) -> None:
        """One file's seconds, by the cost model's kind (its extension, ``planning.costs``) and in the histogram."""
        ext = os.path.splitext(str(path or ""))[1].lower() or "(none)"
        self.seconds_by_kind[ext] = self.seconds_by_kind.get(ext, 0.0) + duration
        self.files_by_kind[ext] = self.files_by_kind.get(ext, 0) + 1
        for i, bound in enumerate(DURATION_BUCKETS):
            if duration <= bound:
                self.duration_counts[i] += 1
                break

    def _slow(self, item: tuple[float, str, str]) -> None:
        """(seconds, path, type) among the 20 slowest files, if it is one of them."""
        if len(self.slowest) < 20:
            heapq.heappush(self.slowest, item)
        elif item > self.slowest[0]:
            heapq.heapreplace(self.slowest, item)

    def snapshot(self) -> dict[str, Any]:
        types = sorted({t for t, _ in self.files})
        return {
            "run": self.run,
            "started": self.started,
            "last": self.last,
            "finished": self.finished,
            "expected_files": self.expected_files,
            "expected_bytes": self.expected_bytes,
            "files": sum(self.files.values()),
            "successful": sum(n for (_, o), n in self.files.items() if o == "success"),
            "failed": sum(n for (_, o), n in self.files.items() if o == "failed"),
            "bytes": sum(self.bytes_by_type.values()),
            "chunks": sum(self.chunks_by_type.values()),
            "io_requests": sum(self.io_requests_by_type.values()),
            "io_bytes": sum(self.io_bytes_by_type.values()),
            "chunk_tasks_by_shape": dict(self.chunk_tasks_by_shape),
            "chunks_by_shape": dict(self.chunks_by_shape),
            "file_type_stats": {
                t: {
                    "count": self.files[(t, "success")] + self.files[(t, "failed")],
                    "success": self.files[(t, "success")],
                    "failed": self.files[(t, "failed")],
                    "bytes": self.bytes_by_type[t],
                    "chunks": self.chunks_by_type[t],
                    "io_requests": self.io_requests_by_type[t],
                    "io_bytes": self.io_bytes_by_type[t],
                }
                for t in types
            },
            "worker_stats": {w: dict(c) for w, c in self.workers.items()},
            "failures": list(self.failures),
            "slowest": [{"duration": d, "path": p, "type": t} for d, p, t in sorted(self.slowest, reverse=True)],
            "duration_buckets": list(zip(DURATION_BUCKETS, self.duration_counts)),
            "duration_sum": self.duration_sum,
            "throughput": list(self.throughput),
            "task_log": sorted(self.task_log),
            # predicted vs actual seconds per file type, when a cost model ordered the run
            "costs": {t: {"predicted": self.predicted_by_kind[t], "actual": self.seconds_by_kind.get(t, 0.0),
                          "files": self.files_by_kind.get(t, 0)}
                      for t in sorted(self.predicted_by_kind)},
        }


@dataclass
class ParallelMetrics:
    """Metrics of a parallel run (seed name): the scheduler plugin's counts, or the local run's own."""

    total_files: int = 0
    successful: int = 0
    failed: int = 0
    bytes_processed: int = 0
    chunks_processed: int = 0
    elapsed_time: float = 0.0
    file_type_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    worker_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    chunk_tasks_by_shape: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    slowest: list[dict[str, Any]] = field(default_factory=list)
    task_log: list[tuple[float, float, str, str]] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        """Percent of files that succeeded."""
        return 100.0 * self.successful / self.total_files if self.total_files else 0.0

    @property
    def throughput_files_per_sec(self) -> float:
        return self.total_files / self.elapsed_time if self.elapsed_time > 0 else 0.0

    @property
    def bytes_per_sec(self) -> float:
        return self.bytes_processed / self.elapsed_time if self.elapsed_time > 0 else 0.0

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any] | None, elapsed: float) -> "ParallelMetrics":
        if not snap:
            return cls(elapsed_time=elapsed)
        return cls(
            total_files=snap["files"],
            successful=snap["successful"],
            failed=snap["failed"],
            bytes_processed=snap["bytes"],
            chunks_processed=snap["chunks"],
            elapsed_time=elapsed,
            file_type_stats=snap["file_type_stats"],
            worker_stats=snap["worker_stats"],
            chunk_tasks_by_shape=snap["chunk_tasks_by_shape"],
            failures=snap["failures"],
            slowest=snap["slowest"],
            task_log=[tuple(t) for t in snap["task_log"]],
        )
