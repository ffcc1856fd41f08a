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

from collections import Counter
from typing import Any

from dask.utils import key_split
from distributed.diagnostics.plugin import SchedulerPlugin

from .stats import DURATION_BUCKETS, EVENT_TOPIC, RunStats

PLUGIN_NAME = "metaextract-metrics"

#: runs whose details a scheduler keeps; older finished runs are folded into the totals
MAX_RUNS = 20


class Totals:
    """What Prometheus counts since the scheduler started: runs folded in, so counters never go down."""

    def __init__(self) -> None:
        self.files: Counter = Counter()
        self.bytes: Counter = Counter()
        self.chunks: Counter = Counter()
        self.errors: Counter = Counter()
        self.tasks: Counter = Counter()
        self.io_requests: Counter = Counter()
        self.io_bytes: Counter = Counter()
        self.buckets = [0] * len(DURATION_BUCKETS)
        self.duration_sum = 0.0

    def add(self, stats: RunStats) -> None:
        self.files.update(stats.files)
        self.bytes.update(stats.bytes_by_type)
        self.chunks.update(stats.chunks_by_type)
        self.errors.update(stats.error_types)
        self.tasks.update(stats.chunk_tasks_by_shape)
        self.io_requests.update(stats.io_requests_by_type)
        self.io_bytes.update(stats.io_bytes_by_type)
        self.buckets = [a + b for a, b in zip(self.buckets, stats.duration_counts)]
        self.duration_sum += stats.duration_sum

    def merge(self, other: Totals) -> None:
        for mine, theirs in ((self.files, other.files), (self.bytes, other.bytes), (self.chunks, other.chunks),
                             (self.errors, other.errors), (self.tasks, other.tasks), (self.io_requests, other.io_requests),
                             (self.io_bytes, other.io_bytes)):
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
        #: workers that left the cluster while a scan was running (a closed cluster's workers leave after its scans end)
        self.workers_lost = 0
        #: a run's token (sent with its start) -> the run, and the event streams following each run (``stream.py``)
        self.tokens: dict[str, str] = {}
        self.followers: dict[str, set[Any]] = {}

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
            self.tokens = {token: run for token, run in self.tokens.items() if run != oldest}

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
        if any(not stats.finished for stats in self.runs.values()):
            self.workers_lost += 1

    def progress(self) -> tuple[int, int, float | None]:
        """(scans running, files they still expect, when the latest of them last finished a file) for the alert rules."""
        running = [s for s in self.runs.values() if not s.finished]
        remaining = sum(max(0, s.expected_files - sum(s.files.values())) for s in running)
        return len(running), remaining, max((s.last for s in running), default=None)

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        PrometheusCollector.bind(self)
        app = getattr(scheduler, "http_application", None)
        if app is not None:  # the dashboard's HTTP server: the runs' event streams beside it
            from .stream import ROUTE, EventStream

            app.add_handlers(r".*$", [(ROUTE, EventStream, {"plugin": self})])

    def run_of_token(self, token: str) -> str | None:
        """The run a watcher's token follows (compared in constant time), or None."""
        import hmac

        found = None
        for known, run in self.tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                found = run
        return found if found in self.runs else None

    def follow(self, run: str, stream: Any) -> None:
        """A watcher joins: the run so far first, then its events as they come (the end at once if it is over)."""
        from .stream import end_message, state_message

        stats = self.runs[run]
        stream.send(state_message(stats))
        if stats.finished:
            stream.send(end_message(stats))
        else:
            self.followers.setdefault(run, set()).add(stream)

    def unfollow(self, run: str, stream: Any) -> None:
        self.followers.get(run, set()).discard(stream)

    def _tell(self, msg: dict[str, Any]) -> None:
        """The followers of ``msg``'s run get what it says."""
        from .stream import end_message, file_message

        run = msg["run"]
        streams = self.followers.get(run)
        if not streams:
            return
        kind = msg.get("kind")
        if kind == "files":
            messages = [file_message(f) for f in msg["files"]]
            for block in msg.get("blocks") or ():
                messages += [file_message({"path": p, "success": True, "bytes": b, "duration": d})
                             for p, b, d in zip(block["path"], block["bytes"], block["duration"])]
        elif kind == "run-end":
            messages = [end_message(self.runs[run])]
            self.followers.pop(run, None)
        else:
            return
        for stream in list(streams):
            if not all(stream.send(m) for m in messages):
                streams.discard(stream)

    async def close(self) -> None:
        PrometheusCollector.unbind(self)

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
        counted = len(stats.batches_seen)
        stats.apply(msg)
        if msg.get("kind") == "run-start" and isinstance(msg.get("token"), str):
            self.tokens[msg["token"]] = msg["run"]
        if msg.get("batch") is None or len(stats.batches_seen) > counted:  # a recomputed batch's files are told once
            self._tell(msg)
        # the scheduler also keeps each topic's last events (distributed.admin.low-level-log-length, 1,000 batches of
        # outcomes here, 30 MB); counted now, ours need not stay there (subscribers were sent them as they came)
        broker = getattr(self.scheduler, "_broker", None)
        if broker is not None and hasattr(broker, "truncate"):
            broker.truncate(EVENT_TOPIC)

    def snapshot(self, run: str | None = None) -> dict[str, Any] | None:
        """Aggregates of one run (the latest when not named)."""
        if run is None:
            run = self.order[-1] if self.order else None
        return self.runs[run].snapshot() if run in self.runs else None


# ---------------------------------------------------------------- Prometheus

class PrometheusCollector:
    """``metaextract_`` series on a scheduler's ``/metrics``: the totals of that scheduler's plugin.

    prometheus_client serves one registry per process, which every scheduler
    of the process serves (a notebook's in-process cluster and a scan's own
    one, tests). distributed points its own collectors at the scheduler whose
    ``/metrics`` is asked, before each scrape; this one collector, registered
    once per process, serves that scheduler's plugin the same way, and nothing
    for a scheduler without one (before, the first plugin started served every
    scheduler's ``/metrics``: another cluster's counts). When distributed's
    handler names no scheduler, the latest plugin started is served.
    """

    #: the plugins started and not closed in this process, oldest first
    live: list[MetricsPlugin] = []
    registered = False

    @classmethod
    def bind(cls, plugin: MetricsPlugin) -> None:
        """``plugin``'s series served from its scheduler's ``/metrics`` (nothing when prometheus_client is absent)."""
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            return
        cls.live.append(plugin)
        if not cls.registered:
            REGISTRY.register(cls())
            cls.registered = True

    @classmethod
    def unbind(cls, plugin: MetricsPlugin) -> None:
        cls.live[:] = [p for p in cls.live if p is not plugin]

    @classmethod
    def serving(cls) -> MetricsPlugin | None:
        """The plugin of the scheduler being scraped, or None when that scheduler has none."""
        try:
            from distributed.http.scheduler.prometheus.core import PrometheusHandler

            server = PrometheusHandler._collectors[0].server if PrometheusHandler._collectors else None
        except Exception:  # noqa: BLE001 - another distributed: the latest plugin
            server = None
        if server is None:
            return cls.live[-1] if cls.live else None
        return next((p for p in reversed(cls.live) if p.scheduler is server), None)

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        files = CounterMetricFamily("metaextract_files", "Files extracted, by detected type and outcome", labels=["type", "outcome"])
        nbytes = CounterMetricFamily("metaextract_bytes", "Bytes read by extraction, by detected type", labels=["type"])
        chunks = CounterMetricFamily("metaextract_chunks", "Chunks read, by detected type", labels=["type"])
        errors = CounterMetricFamily("metaextract_errors", "Files that failed, by error type", labels=["error_type"])
        chunk_tasks = CounterMetricFamily("metaextract_chunk_tasks", "Chunk tasks run, by graph shape (a task rerun after a lost worker counts again)", labels=["shape"])
        io_requests = CounterMetricFamily("metaextract_io_requests", "Requests made to remote stores (s3://, https://...) while "
                                          "reading their objects, by detected type", labels=["type"])
        io_bytes = CounterMetricFamily("metaextract_io_bytes", "Bytes fetched from remote stores, by detected type", labels=["type"])
        plugin = self.serving()
        if plugin is None:
            return
        totals = plugin.totals()
        for (kind, outcome), n in sorted(totals.files.items()):
            files.add_metric([kind, outcome], n)
        for family, counter in ((nbytes, totals.bytes), (chunks, totals.chunks), (errors, totals.errors), (chunk_tasks, totals.tasks),
                                (io_requests, totals.io_requests), (io_bytes, totals.io_bytes)):
            for kind, n in sorted(counter.items()):
                family.add_metric([kind], n)
        cumulative, running = [], 0
        for bound, n in zip(DURATION_BUCKETS, totals.buckets):
            running += n
            cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
        duration = HistogramMetricFamily("metaextract_file_duration_seconds", "Time to extract one file", buckets=cumulative,
                                         sum_value=totals.duration_sum)
        running, remaining, last = plugin.progress()
        lost = CounterMetricFamily("metaextract_workers_lost", "Workers that left the cluster while a scan was running")
        lost.add_metric([], plugin.workers_lost)
        scans = GaugeMetricFamily("metaextract_scans_running", "Scans started and not finished", value=running)
        left = GaugeMetricFamily("metaextract_files_remaining", "Files the running scans announced and have not finished",
                                 value=remaining)
        out = [files, nbytes, chunks, errors, chunk_tasks, io_requests, io_bytes, duration, lost, scans, left]
        if last is not None:  # absent when no scan runs: the stall rule has nothing to compare
            out.append(GaugeMetricFamily("metaextract_last_progress_timestamp_seconds",
                                         "Unix time at which a running scan last finished a file (or started)", value=last))
        yield from out


def ensure_plugin(client: Any) -> None:
    """Register the plugin on this client's scheduler (once)."""
    client.register_plugin(MetricsPlugin(), name=PLUGIN_NAME)


def fetch_snapshot(client: Any, run: str | None = None) -> dict[str, Any] | None:
    """The plugin's snapshot, read on the scheduler (it holds its own copy)."""

    def read(dask_scheduler: Any, run: str | None = run) -> Any:
        plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
        return plugin.snapshot(run) if plugin else None

    return client.run_on_scheduler(read)


