"""Many files on a distributed Client (the seed's parallel extraction).

Small files go many to a task (``batching.extract_batch``); files at or above
the streaming threshold get their own chunk graph (``graph.build_graph``),
at most one per worker thread in flight. Load balancing maps onto Dask:
priorities for FIFO, PRIORITY and SIZE_AWARE, batches of one type for
FILE_TYPE_AWARE, and Dask's own placement and work stealing over small
batches for LEAST_LOADED. Metrics come from the scheduler plugin.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from dask.utils import parse_bytes

from .batching import BatchSettings, check_record, extract_batch, extract_one, failure, file_size, outcome
from .cluster import ClientScope, ExecutionModel
from .config import OptionEnum, StreamingConfig, setting
from .errors import ExtractionTimeout, MisattributionError, describe, is_transient
from .graph import CHUNK_SUMMARIES, unwrap
from .model import ExtractionResult, ExtractionTask
from .text import safe_dict

if TYPE_CHECKING:
    from .metrics import ParallelMetrics

#: Dask priority of chunk graphs: above every batch, so a big file's timer
#: starts when it is submitted and it is not stuck behind small ones
GRAPH_PRIORITY = 10**9
MAX_BATCH = 256


class LoadBalancingStrategy(OptionEnum):
    """How files are ordered and grouped onto workers (seed names)."""

    FIFO = "fifo"
    PRIORITY = "priority"
    LEAST_LOADED = "least_loaded"
    FILE_TYPE_AWARE = "file_type_aware"
    SIZE_AWARE = "size_aware"


LoadBalancingStrategy._label = "load balancing"  # type: ignore[attr-defined]


@dataclass
class ParallelExtractionConfig:
    """Settings for extracting many files (seed name)."""

    max_workers: int | None = 4
    execution_model: ExecutionModel = ExecutionModel.PROCESS_POOL
    #: None: ``streaming.timeout`` (``metaextract.streaming.timeout``, 300 s)
    timeout_per_file: float | None = None
    retry_failed: bool = True
    retry_limit: int = field(default_factory=lambda: int(setting("parallel.retry-limit")))
    retry_delay: float = field(default_factory=lambda: float(setting("parallel.retry-delay")))
    load_balancing: LoadBalancingStrategy = LoadBalancingStrategy.SIZE_AWARE
    isolate: bool = True
    memory_limit: int | str = field(default_factory=lambda: setting("sandbox.memory-limit"))
    batch_size: int | None = None
    scheduler_address: str | None = None
    dashboard_address: str | None = None
    security: Any = None  # a distributed.Security (TLS); see cluster.tls_security
    streaming: StreamingConfig = field(default_factory=StreamingConfig)

    def __post_init__(self) -> None:
        self.execution_model = ExecutionModel.parse(self.execution_model)
        self.load_balancing = LoadBalancingStrategy.parse(self.load_balancing)
        if isinstance(self.memory_limit, str):
            self.memory_limit = int(parse_bytes(self.memory_limit))
        if self.timeout_per_file is None:
            self.timeout_per_file = self.streaming.timeout
        if self.retry_limit < 0:
            raise ValueError("retry_limit must be >= 0")
        if self.timeout_per_file <= 0:
            raise ValueError("timeout_per_file must be positive")

    @property
    def timeout(self) -> float:
        """The per-file timeout, resolved (``timeout_per_file`` or the streaming one)."""
        return float(self.timeout_per_file if self.timeout_per_file is not None else self.streaming.timeout)

    def batch_settings(self, run: str) -> BatchSettings:
        return BatchSettings(
            timeout=self.timeout,
            retry_limit=self.retry_limit if self.retry_failed else 0,
            retry_delay=self.retry_delay,
            isolate=self.isolate,
            memory_limit=int(self.memory_limit),
            streaming=self.streaming,
            run=run,
        )


@dataclass
class Batch:
    """One batch task: its files, Dask priority and a label for its key."""

    tasks: list[ExtractionTask]
    priority: int
    label: str


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def plan_batches(tasks: list[ExtractionTask], strategy: LoadBalancingStrategy, sizes: dict[str, int],
                 nthreads: int, batch_size: int | None = None, types: dict[str, str] | None = None) -> list[Batch]:
    """Group small files into batch tasks, ordered and prioritised by strategy."""
    if not tasks:
        return []
    # about 16 batches per thread: few enough that task overhead vanishes, enough that
    # the last batches do not leave threads idle while one finishes
    per_batch = batch_size or max(1, min(MAX_BATCH, math.ceil(len(tasks) / (16 * max(nthreads, 1)))))
    S = LoadBalancingStrategy
    if strategy is S.LEAST_LOADED:
        per_batch = batch_size or max(1, per_batch // 2)  # more, smaller tasks: stealing evens the load
        return [Batch(b, 0, "any") for b in _chunks(tasks, per_batch)]
    if strategy is S.FILE_TYPE_AWARE:
        groups: dict[str, list[ExtractionTask]] = {}
        for t in tasks:
            groups.setdefault((types or {}).get(t.task_id, "unknown"), []).append(t)
        out = [Batch(b, 0, kind) for kind, group in groups.items() for b in _chunks(group, per_batch)]
    elif strategy is S.PRIORITY:
        ordered = sorted(tasks, key=lambda t: t.sort_key)
        return [Batch(b, max(t.priority for t in b), "priority") for b in _chunks(ordered, per_batch)]
    elif strategy is S.SIZE_AWARE:
        ordered = sorted(tasks, key=lambda t: -sizes.get(t.task_id, 0))
        out = [Batch(b, 0, "size") for b in _chunks(ordered, per_batch)]
    else:  # FIFO
        out = [Batch(b, 0, "fifo") for b in _chunks(tasks, per_batch)]
    for i, batch in enumerate(out):  # earlier batches first
        batch.priority = len(out) - i
    return out


class ParallelExtractor:
    """Extract many files on a Dask cluster (seed name).

    ``extraction_fn(path) -> dict`` replaces this project's own extraction.
    ``client`` / ``cluster``: run on these instead of starting a LocalCluster.
    """

    def __init__(self, config: ParallelExtractionConfig | None = None, extraction_fn: Callable | None = None,
                 client: Any = None, cluster: Any = None):
        self.config = config or ParallelExtractionConfig()
        self.extraction_fn = extraction_fn
        self.client = client
        self.cluster = cluster
        self.queue: list[ExtractionTask] = []
        self.last_batches: list[Batch] = []
        self.last_run: str | None = None
        #: called with the Client once it is up (the CLI prints the dashboard link)
        self.on_client: Callable[[Any], Any] | None = None

    # ---------------------------------------------------------------- tasks

    def add_task(self, file_path: str | os.PathLike, priority: int = 0) -> str:
        """Queue one file; returns its task id."""
        task = ExtractionTask(file_path=os.fspath(file_path), priority=priority)
        self.queue.append(task)
        return task.task_id

    def add_tasks_batch(self, file_paths: Iterable[str | os.PathLike], priority: int = 0) -> list[str]:
        """Queue many files; returns their task ids."""
        return [self.add_task(p, priority) for p in file_paths]

    def _take(self, files: Iterable[str | os.PathLike] | None) -> list[ExtractionTask]:
        """Queued tasks plus ``files`` (a queued file is not run twice); empties the queue."""
        tasks, seen = list(self.queue), {t.file_path for t in self.queue}
        for path in files or ():
            path = os.fspath(path)
            if path not in seen:
                seen.add(path)
                tasks.append(ExtractionTask(file_path=path))
        self.queue.clear()
        return tasks

    # ---------------------------------------------------------------- running

    def scope(self) -> ClientScope:
        cfg = self.config
        return ClientScope(self.client, self.cluster, cfg.scheduler_address, cfg.execution_model, cfg.max_workers,
                           dashboard=cfg.dashboard_address, security=cfg.security)

    def extract(self, files: Iterable[str | os.PathLike] | None = None,
                progress: Callable[[ExtractionResult], Any] | None = None,
                keep_results: bool = True, sizes: dict[str, int] | None = None) -> tuple[list[ExtractionResult], "ParallelMetrics"]:
        """Extract queued tasks and ``files``: (results in task order, metrics).

        ``keep_results=False`` hands each result to ``progress`` only and
        returns an empty list: memory stays flat over millions of files.
        ``sizes``: file sizes the caller already knows (path -> bytes), so
        those files are not stat-ed again (one round trip each on a parallel
        file system).
        """
        from .metrics import ParallelMetrics, fetch_snapshot

        tasks = self._take(files)
        start = time.perf_counter()
        with self.scope() as client:
            if getattr(client, "asynchronous", False):
                raise TypeError("extract() needs a synchronous Client; use 'await extract_parallel()' with an asynchronous one")
            if self.on_client is not None:
                self.on_client(client)
            with client.as_current():  # distributed.wait looks up the current client
                results = _Run(self, client, tasks, progress, keep_results, sizes).run()
            snapshot = fetch_snapshot(client, self.last_run)
        return results, ParallelMetrics.from_snapshot(snapshot, time.perf_counter() - start)

    async def extract_parallel(self, files: Iterable[str | os.PathLike] | None = None,
                               progress: Callable[[ExtractionResult], Any] | None = None) -> tuple[list[ExtractionResult], "ParallelMetrics"]:
        """Asynchronous ``extract``: the event loop stays free while files are extracted.

        With an asynchronous Client (``ExecutionModel.ASYNC_IO``) the work runs
        on that Client's cluster, driven from a thread by a synchronous
        connection to the same scheduler, so the caller's event loop is never blocked.
        """
        if self.client is not None and getattr(self.client, "asynchronous", False):
            twin = ParallelExtractor(self.config, self.extraction_fn)
            twin.config = replace(self.config, scheduler_address=self.client.scheduler.address, security=self.client.security)
            twin.queue, self.queue = self.queue, []
            results = await asyncio.to_thread(twin.extract, files, progress)
            self.last_batches, self.last_run = twin.last_batches, twin.last_run
            return results
        return await asyncio.to_thread(self.extract, files, progress)


def matched_results(tasks: list[ExtractionTask], results: list[ExtractionResult]) -> tuple[list[ExtractionResult], list[ExtractionResult]]:
    """(results that answer their own task, internal-error results for every other task).

    A batch's results crossed a process boundary: each must carry a task id
    of this batch and that task's path, and its record must name that path.
    """
    wanted = {t.task_id: t.file_path for t in tasks}
    good: dict[str, ExtractionResult] = {}
    for r in results:
        if wanted.get(r.task_id) != r.file_path or r.task_id in good:
            continue
        try:
            if r.success:
                check_record(r.file_path, r.metadata)
        except MisattributionError as exc:
            r = failure(r.task_id, r.file_path, exc, r.start_time, r.end_time, r.attempts)
        good[r.task_id] = r
    now = time.time()
    refused = [failure(t.task_id, t.file_path, MisattributionError(t.file_path, "internal error: its batch returned no result "
                                                                   "for this file"), now, now)
               for t in tasks if t.task_id not in good]
    return list(good.values()), refused


class _Run:
    """One run's client-side loop: submit, collect, retry and time out chunk graphs."""

    def __init__(self, owner: ParallelExtractor, client: Any, tasks: list[ExtractionTask], progress: Callable | None, keep: bool = True,
                 known_sizes: dict[str, int] | None = None):
        self.owner, self.client, self.tasks, self.progress, self.keep = owner, client, tasks, progress, keep
        self.known_sizes = known_sizes or {}
        self.seen: set[str] = set()
        self.cfg = owner.config
        self.run_id = owner.last_run = uuid.uuid4().hex[:12]
        self.settings = self.cfg.batch_settings(self.run_id)
        self.results: dict[str, ExtractionResult] = {}

    def run(self) -> list[ExtractionResult]:
        import dask
        from distributed import wait

        from .metrics import EVENT_TOPIC, ensure_plugin

        client, cfg = self.client, self.cfg
        ensure_plugin(client)
        known = self.known_sizes
        sizes = {t.task_id: known[t.file_path] if t.file_path in known else file_size(t.file_path) for t in self.tasks}
        threshold = cfg.streaming.streaming_threshold
        own_graph = self.owner.extraction_fn is None
        large = deque(t for t in self.tasks if own_graph and sizes[t.task_id] >= threshold)
        small = [t for t in self.tasks if not (own_graph and sizes[t.task_id] >= threshold)]
        nthreads = sum(client.nthreads().values()) or 1
        types = None
        if cfg.load_balancing is LoadBalancingStrategy.FILE_TYPE_AWARE:
            from .batching import file_type

            types = {t.task_id: file_type(t.file_path, None) for t in small}
        batches = self.owner.last_batches = plan_batches(small, cfg.load_balancing, sizes, nthreads, cfg.batch_size, types)
        client.log_event(EVENT_TOPIC, {"kind": "run-start", "run": self.run_id, "files": len(self.tasks), "bytes": sum(sizes.values())})

        pending: dict[Any, tuple[str, Any]] = {}
        for i, batch in enumerate(batches):
            with dask.annotate(metaextract={"run": self.run_id, "role": "batch", "files": len(batch.tasks)}):
                fut = client.submit(extract_batch, [(t.task_id, t.file_path) for t in batch.tasks], self.owner.extraction_fn,
                                    self.settings, key=f"extract-batch-{batch.label}-{self.run_id}-{i}", priority=batch.priority, pure=False)
            pending[fut] = ("batch", batch)

        graphs: dict[Any, tuple[ExtractionTask, float, int, float]] = {}
        waiting: deque = deque()  # (not before, task, attempt) for retries of chunk graphs
        while pending or large or waiting:
            self._top_up_graphs(large, waiting, graphs, pending, nthreads)
            if not pending:
                time.sleep(0.05)
                continue
            try:
                done, _ = wait(list(pending), timeout=0.5, return_when="FIRST_COMPLETED")
            except TimeoutError:  # nothing finished in this slice: check deadlines, top up
                done = set()
            for fut in done:
                kind, item = pending.pop(fut)
                if kind == "batch":
                    self._batch_done(fut, item)
                else:
                    self._graph_done(fut, graphs.pop(fut), waiting)
            self._expire_graphs(graphs, pending)
        client.log_event(EVENT_TOPIC, {"kind": "run-end", "run": self.run_id})
        return [self.results[t.task_id] for t in self.tasks] if self.keep else []

    # -- results

    def _emit(self, results: list[ExtractionResult], tell_plugin: bool) -> None:
        from .metrics import EVENT_TOPIC

        if tell_plugin and results:  # before progress: outcome() fills each result's file_format once
            self.client.log_event(EVENT_TOPIC, {"kind": "files", "run": self.run_id, "files": [outcome(r) for r in results]})
        for r in results:
            if r.task_id in self.seen:  # exactly one record per file
                continue
            self.seen.add(r.task_id)
            if self.keep:
                self.results[r.task_id] = r
            if self.progress is not None:
                self.progress(r)

    def _batch_done(self, fut: Any, batch: Batch) -> None:
        try:
            results = fut.result()
        except Exception as exc:  # noqa: BLE001 - e.g. the batch's workers kept dying
            now = time.time()
            lost = [ExtractionResult(t.task_id, t.file_path, False, None, f"its batch failed: {describe(exc)}", type(exc).__name__, now, now)
                    for t in batch.tasks]
            self._emit(lost, tell_plugin=True)
        else:
            good, refused = matched_results(batch.tasks, results)
            self._emit(good, tell_plugin=False)  # the worker told the plugin
            self._emit(refused, tell_plugin=True)
        fut.release()

    # -- chunk graphs of large files

    def _top_up_graphs(self, large: deque, waiting: deque, graphs: dict, pending: dict, limit: int) -> None:
        now = time.time()
        while len(graphs) < limit and (large or (waiting and waiting[0][0] <= now)):
            if waiting and waiting[0][0] <= now:
                _, task, attempt = waiting.popleft()
            else:
                task, attempt = large.popleft(), 1
            self._submit_graph(task, attempt, graphs, pending)

    def _submit_graph(self, task: ExtractionTask, attempt: int, graphs: dict, pending: dict) -> None:
        import dask

        from .streaming import StreamingExtractor

        start = time.time()
        deadline = start + self.cfg.timeout
        try:
            isolate = self.settings.memory_limit if self.settings.isolate else None
            plan, fg = StreamingExtractor(self.cfg.streaming).graph(task.file_path, deadline, isolate)
        except Exception as exc:  # noqa: BLE001 - a file that cannot be planned is that file's record
            self._emit([ExtractionResult(task.task_id, task.file_path, False, None, describe(exc), type(exc).__name__, start, time.time(), attempts=attempt)], True)
            return
        ann = safe_dict({"run": self.run_id, "role": "file", "file": task.file_path, "type": plan.info.format, "strategy": plan.shape})
        with dask.annotate(metaextract=ann):
            fut = self.client.get(fg.dsk, [fg.final_key], sync=False, priority=GRAPH_PRIORITY)[0]
        graphs[fut] = (task, deadline, attempt, start)
        pending[fut] = ("graph", task)

    def _graph_done(self, fut: Any, entry: tuple, waiting: deque) -> None:
        task, _, attempt, start = entry
        try:
            record = unwrap(fut.result())
            record.pop(CHUNK_SUMMARIES, None)
            result = ExtractionResult(task.task_id, task.file_path, True, record, start_time=start, end_time=time.time(), attempts=attempt)
        except Exception as exc:  # noqa: BLE001
            if self.cfg.retry_failed and attempt <= self.cfg.retry_limit and is_transient(exc):
                waiting.append((time.time() + self.cfg.retry_delay * 2 ** (attempt - 1), task, attempt + 1))
                fut.release()
                return
            result = failure(task.task_id, task.file_path, exc, start, attempts=attempt)
        fut.release()
        self._emit([result], tell_plugin=True)

    def _expire_graphs(self, graphs: dict, pending: dict) -> None:
        now = time.time()
        for fut, (task, deadline, attempt, start) in list(graphs.items()):
            if now > deadline + 5.0:
                self.client.cancel([fut])
                del graphs[fut], pending[fut]
                exc = ExtractionTimeout(task.file_path, f"timed out after {self.cfg.timeout:g} s")
                self._emit([ExtractionResult(task.task_id, task.file_path, False, None, describe(exc), type(exc).__name__, start, now, attempts=attempt)], True)


async def extract_files_parallel(files: Iterable[str | os.PathLike], extraction_fn: Callable | None = None, max_workers: int = 4,
                                 **options: Any) -> tuple[list[ExtractionResult], "ParallelMetrics"]:
    """Extract ``files`` in parallel (seed name): ``await extract_files_parallel(files, fn, max_workers=4)``."""
    client = options.pop("client", None)
    config = ParallelExtractionConfig(max_workers=max_workers, **options)
    return await ParallelExtractor(config, extraction_fn, client=client).extract_parallel(list(files))


def extract_files(files: Iterable[str | os.PathLike], extraction_fn: Callable | None = None, max_workers: int = 4,
                  **options: Any) -> tuple[list[ExtractionResult], "ParallelMetrics"]:
    """Synchronous ``extract_files_parallel``."""
    client = options.pop("client", None)
    config = ParallelExtractionConfig(max_workers=max_workers, **options)
    return ParallelExtractor(config, extraction_fn, client=client).extract(list(files))


__all__ = ["ExtractionResult", "ExtractionTask", "ExtractionTimeout", "LoadBalancingStrategy", "ParallelExtractionConfig",
           "ParallelExtractor", "extract_files", "extract_files_parallel", "extract_one"]
