"""Metrics from the scheduler: one SchedulerPlugin sees every run.

Chunk tasks carry the annotation ``metaextract={"run", "role", ...}`` and are
counted in ``transition``; file outcomes arrive as ``log_event`` messages on
the topic ``metaextract`` (from the worker that extracted a batch, or from the
client for files with their own chunk graph). Every update is constant time;
aggregation happens only in ``snapshot``. ``ParallelMetrics`` and per-file
``StreamingMetrics`` are read from it, whether workers are threads or
separate processes.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from dask.utils import key_split
from distributed.diagnostics.plugin import SchedulerPlugin

PLUGIN_NAME = "metaextract-metrics"
EVENT_TOPIC = "metaextract"

#: upper bounds (seconds) of the per-file duration histogram
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, float("inf"))

#: runs whose details a scheduler keeps; older finished runs are folded into the totals
MAX_RUNS = 20


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
        self.workers: dict[str, Counter] = {}
        self.failures: deque = deque(maxlen=500)
        self.error_types: Counter = Counter()
        self.slowest: list[tuple[float, str, str]] = []  # min-heap of the 20 slowest files
        self.duration_counts = [0] * len(DURATION_BUCKETS)
        self.duration_sum = 0.0
        self.throughput: deque = deque(maxlen=600)  # (time, bytes) per outcome, for rates over time
        self.task_log: deque = deque(maxlen=10_000)  # (start, stop, key, worker) of batch and final tasks
        self.finished = False
        self.batches_seen: set[str] = set()  # batch keys already counted (a recomputed batch reports twice)

    def worker(self, name: str | None) -> Counter:
        return self.workers.setdefault(name or "client", Counter())

    def add_file(self, f: dict[str, Any]) -> None:
        kind = f.get("type") or "unknown"
        outcome = "success" if f.get("success") else "failed"
        self.files[(kind, outcome)] += 1
        self.bytes_by_type[kind] += f.get("bytes", 0)
        self.chunks_by_type[kind] += f.get("chunks", 0)
        if f.get("shape"):
            self.chunks_by_shape[f["shape"]] += f.get("chunks", 0)
        w = self.worker(f.get("worker"))
        w["files"] += 1
        w["bytes"] += f.get("bytes", 0)
        w[outcome] += 1
        duration = float(f.get("duration", 0.0))
        self.duration_sum += duration
        for i, bound in enumerate(DURATION_BUCKETS):
            if duration <= bound:
                self.duration_counts[i] += 1
                break
        item = (duration, f.get("path", ""), kind)
        if len(self.slowest) < 20:
            heapq.heappush(self.slowest, item)
        elif item > self.slowest[0]:
            heapq.heapreplace(self.slowest, item)
        if outcome == "failed":
            self.error_types[f.get("error_type") or "unknown"] += 1
            self.failures.append({"path": f.get("path"), "type": kind, "error": f.get("error"), "error_type": f.get("error_type")})
        self.last = time.time()
        self.throughput.append((self.last, f.get("bytes", 0)))

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
            "chunk_tasks_by_shape": dict(self.chunk_tasks_by_shape),
            "chunks_by_shape": dict(self.chunks_by_shape),
            "file_type_stats": {
                t: {
                    "count": self.files[(t, "success")] + self.files[(t, "failed")],
                    "success": self.files[(t, "success")],
                    "failed": self.files[(t, "failed")],
                    "bytes": self.bytes_by_type[t],
                    "chunks": self.chunks_by_type[t],
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
        }


class Totals:
    """What Prometheus counts since the scheduler started: runs folded in, so counters never go down."""

    def __init__(self) -> None:
        self.files: Counter = Counter()
        self.bytes: Counter = Counter()
        self.chunks: Counter = Counter()
        self.errors: Counter = Counter()
        self.tasks: Counter = Counter()
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.duration_sum = 0.0

    def add(self, stats: RunStats) -> None:
        self.files.update(stats.files)
        self.bytes.update(stats.bytes_by_type)
        self.chunks.update(stats.chunks_by_type)
        self.errors.update(stats.error_types)
        self.tasks.update(stats.chunk_tasks_by_shape)
        self.buckets = [a + b for a, b in zip(self.buckets, stats.duration_counts)]
        self.duration_sum += stats.duration_sum

    def merge(self, other: Totals) -> None:
        for mine, theirs in ((self.files, other.files), (self.bytes, other.bytes), (self.chunks, other.chunks),
                             (self.errors, other.errors), (self.tasks, other.tasks)):
            mine.update(theirs)
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets)]
        self.duration_sum += other.duration_sum


class MetricsPlugin(SchedulerPlugin):
    """Counts metaextract work as the scheduler sees it; its memory stays bounded however many runs it sees."""

    name = PLUGIN_NAME
    idempotent = True  # registering again keeps the running instance and its counts

    def __init__(self) -> None:
        self.runs: dict[str, RunStats] = {}
        self.order: list[str] = []
        self.scheduler: Any = None
        #: counts of runs no longer kept in detail (pruned, or cleared by a restart)
        self.retired = Totals()
        self.collector: PrometheusCollector | None = None

    def restart(self, scheduler: Any) -> None:
        """The cluster restarted: per-run details go, the Prometheus totals stay (counters never decrease)."""
        for stats in self.runs.values():
            self.retired.add(stats)
        self.runs.clear()
        self.order.clear()

    def totals(self) -> Totals:
        """Everything counted since start: retired runs and the ones kept."""
        out = Totals()
        out.merge(self.retired)
        for stats in self.runs.values():
            out.add(stats)
        return out

    def _prune(self) -> None:
        """Keep at most MAX_RUNS runs: the oldest finished ones are folded into the totals."""
        while len(self.order) > MAX_RUNS:
            oldest = next((r for r in self.order if self.runs[r].finished), None)
            if oldest is None:
                return
            self.order.remove(oldest)
            self.retired.add(self.runs.pop(oldest))

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        self.collector = PrometheusCollector.bind(self)

    async def close(self) -> None:
        if self.collector is not None:
            self.collector.unbind()
            self.collector = None

    def run(self, run: str) -> RunStats:
        stats = self.runs.get(run)
        if stats is None:
            stats = self.runs[run] = RunStats(run)
            self.order.append(run)
            self._prune()
        return stats

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish != "memory" or self.scheduler is None:
            return
        ts = self.scheduler.tasks.get(key)
        ann = ts.annotations.get("metaextract") if ts is not None and ts.annotations else None
        if not ann:
            return
        stats = self.run(ann["run"])
        w = stats.worker(kwargs.get("worker"))
        w["tasks"] += 1
        for part in kwargs.get("startstops") or ():
            if part.get("action") == "compute":
                w["compute_seconds"] += part["stop"] - part["start"]
                if ann.get("role") == "batch":
                    stats.task_log.append((part["start"], part["stop"], str(key), kwargs.get("worker")))
        if key_split(key) == "read-chunk":
            stats.chunk_tasks_by_shape[ann.get("shape", "?")] += 1
            w["chunks"] += 1

    def log_event(self, topic: str, msg: Any) -> None:
        if topic != EVENT_TOPIC or not isinstance(msg, dict):
            return
        stats = self.run(msg["run"])
        kind = msg.get("kind")
        if kind == "files":
            batch = msg.get("batch")
            if batch is not None:
                if batch in stats.batches_seen:
                    return
                stats.batches_seen.add(batch)
            for f in msg["files"]:
                f.setdefault("worker", msg.get("worker"))
                stats.add_file(f)
        elif kind == "run-start":
            stats.expected_files += msg.get("files", 0)
            stats.expected_bytes += msg.get("bytes", 0)
        elif kind == "run-end":
            stats.finished = True

    def snapshot(self, run: str | None = None) -> dict[str, Any] | None:
        """Aggregates of one run (the latest when not named)."""
        if run is None:
            run = self.order[-1] if self.order else None
        return self.runs[run].snapshot() if run in self.runs else None


# ---------------------------------------------------------------- Prometheus

class PrometheusCollector:
    """``metaextract_`` series on the scheduler's ``/metrics``: one plugin's totals over every run.

    Bound to its plugin: registered when the plugin starts, removed when it
    closes. prometheus_client serves one registry per process, so when two
    schedulers share a process (tests) the first one's series are served.
    """

    def __init__(self, plugin: MetricsPlugin):
        self.plugin = plugin
        self.registry: Any = None

    @classmethod
    def bind(cls, plugin: MetricsPlugin) -> "PrometheusCollector | None":
        """A collector for ``plugin`` in prometheus_client's registry, or None (not installed, or taken)."""
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            return None
        collector = cls(plugin)
        try:
            REGISTRY.register(collector)
        except ValueError:  # another scheduler in this process already serves these names
            return None
        collector.registry = REGISTRY
        return collector

    def unbind(self) -> None:
        if self.registry is not None:
            self.registry.unregister(self)
            self.registry = None

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        files = CounterMetricFamily("metaextract_files", "Files extracted, by detected type and outcome", labels=["type", "outcome"])
        nbytes = CounterMetricFamily("metaextract_bytes", "Bytes read by extraction, by detected type", labels=["type"])
        chunks = CounterMetricFamily("metaextract_chunks", "Chunks read, by detected type", labels=["type"])
        errors = CounterMetricFamily("metaextract_errors", "Files that failed, by error type", labels=["error_type"])
        chunk_tasks = CounterMetricFamily("metaextract_chunk_tasks", "Chunk tasks run, by graph shape (a task rerun after a lost worker counts again)", labels=["shape"])
        totals = self.plugin.totals()
        for (kind, outcome), n in sorted(totals.files.items()):
            files.add_metric([kind, outcome], n)
        for family, counter in ((nbytes, totals.bytes), (chunks, totals.chunks), (errors, totals.errors), (chunk_tasks, totals.tasks)):
            for kind, n in sorted(counter.items()):
                family.add_metric([kind], n)
        cumulative, running = [], 0
        for bound, n in zip(DURATION_BUCKETS, totals.buckets):
            running += n
            cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
        duration = HistogramMetricFamily("metaextract_file_duration_seconds", "Time to extract one file", buckets=cumulative,
                                         sum_value=totals.duration_sum)
        yield from (files, nbytes, chunks, errors, chunk_tasks, duration)


def ensure_plugin(client: Any) -> None:
    """Register the plugin on this client's scheduler (once)."""
    client.register_plugin(MetricsPlugin(), name=PLUGIN_NAME)


def fetch_snapshot(client: Any, run: str | None = None) -> dict[str, Any] | None:
    """The plugin's snapshot, read on the scheduler (it holds its own copy)."""

    def read(dask_scheduler: Any, run: str | None = run) -> Any:
        plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
        return plugin.snapshot(run) if plugin else None

    return client.run_on_scheduler(read)


@dataclass
class ParallelMetrics:
    """Metrics of a parallel run (seed name), read from the scheduler plugin."""

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
