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
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable

from dask.utils import parse_bytes

from ..core.errors import ExtractionTimeout, MisattributionError, describe
from ..core.model import ExtractionResult, ExtractionTask, check_record, failure
from ..core.settings import LoadBalancingStrategy, StreamingConfig, setting
from ..core.text import safe_dict, safe_text
from ..planning.batches import Batch, plan_batches
from ..planning.graph import build_graph
from ..planning.plan import Plan, plan_path
from ..planning.tasks import CHUNK_SUMMARIES, unwrap
from ..sandbox import Isolation
from .batch import BatchSettings, extract_batch, extract_one, file_size, outcome
from .cluster import ClientScope, ExecutionModel

if TYPE_CHECKING:
    from ..diagnostics.stats import ParallelMetrics

#: Dask priority of chunk graphs: above every batch, so a big file's timer
#: starts when it is submitted and it is not stuck behind small ones
GRAPH_PRIORITY = 10**9
#: seconds past a large file's deadline before its future is cancelled (its own tasks time out first)
EXPIRY_GRACE = 5.0


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
    #: HOST:PORT of the embedded cluster's dashboard; None: 127.0.0.1:8787; False: no dashboard
    dashboard_address: str | bool | None = None
    security: Any = None  # a distributed.Security (TLS); see cluster.tls_security
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    #: a ``planning.costs.CostModel``: under SIZE_AWARE, work is ordered by predicted seconds, not bytes, and small
    #: files are batched by predicted time; None: by size
    cost_model: Any = None

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

    @property
    def isolation(self) -> Isolation:
        """``isolate`` and ``memory_limit`` as the one policy object every task is given."""
        return Isolation(self.isolate, int(self.memory_limit)) if self.isolate else Isolation.off()

    def batch_settings(self, run: str) -> BatchSettings:
        return BatchSettings(
            timeout=self.timeout,
            retry_limit=self.retry_limit if self.retry_failed else 0,
            retry_delay=self.retry_delay,
            isolation=self.isolation,
            streaming=self.streaming,
            run=run,
        )


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
        #: task id -> (format, predicted seconds) of the last run, when a cost model ordered it
        self.last_costs: dict[str, tuple[str, float]] = {}
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

    def runs_here(self) -> bool:
        """LOCAL asked for and no Client, cluster or scheduler given: Dask's local scheduler, no cluster (``execution/local.py``)."""
        cfg = self.config
        return cfg.execution_model is ExecutionModel.LOCAL and self.client is None and self.cluster is None and cfg.scheduler_address is None

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
        tasks = self._take(files)
        if self.runs_here():
            from .local import run_here

            return run_here(self, tasks, progress, keep_results, sizes or {})
        from ..diagnostics.plugin import fetch_snapshot
        from ..diagnostics.stats import ParallelMetrics

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
            self.last_batches, self.last_run, self.last_costs = twin.last_batches, twin.last_run, twin.last_costs
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


def split_work(owner: ParallelExtractor, tasks: list[ExtractionTask], known: dict[str, int],
               slots: int) -> tuple[dict[str, int], list[ExtractionTask], list[Batch]]:
    """(sizes by task id, large files in the order they start, batches of the small ones) for ``slots`` threads.

    A file at or above the streaming threshold gets its own chunk graph
    (largest first under SIZE_AWARE); a user's ``extraction_fn`` runs whole
    files, so with one every file is small.
    """
    cfg = owner.config
    sizes = {t.task_id: known[t.file_path] if t.file_path in known else file_size(t.file_path) for t in tasks}
    threshold = cfg.streaming.streaming_threshold
    own_graph = owner.extraction_fn is None
    large = [t for t in tasks if own_graph and sizes[t.task_id] >= threshold]
    small = [t for t in tasks if not (own_graph and sizes[t.task_id] >= threshold)]
    costs = owner.last_costs = predicted_costs(cfg, tasks, sizes)
    if cfg.load_balancing is LoadBalancingStrategy.SIZE_AWARE:
        large.sort(key=lambda t: -(costs[t.task_id][1] if costs else sizes[t.task_id]))
    types = None
    if cfg.load_balancing is LoadBalancingStrategy.FILE_TYPE_AWARE:
        from ..readers.probe import file_type

        types = {t.task_id: file_type(t.file_path, None) for t in small}
    seconds = {k: v[1] for k, v in costs.items()} if costs else None
    batches = owner.last_batches = plan_batches(small, cfg.load_balancing, sizes, slots, cfg.batch_size, types, seconds)
    return sizes, large, batches


def predicted_costs(cfg: ParallelExtractionConfig, tasks: list[ExtractionTask], sizes: dict[str, int]) -> dict[str, tuple[str, float]]:
    """task id -> (kind, predicted seconds) under SIZE_AWARE with a cost model; empty otherwise. Reads no file."""
    if cfg.cost_model is None or cfg.load_balancing is not LoadBalancingStrategy.SIZE_AWARE:
        return {}
    from ..planning.costs import kind_of

    out = {}
    for t in tasks:
        kind = kind_of(t.file_path)
        out[t.task_id] = (kind, cfg.cost_model.predict(kind, sizes[t.task_id]))
    return out


def predicted_by_kind(costs: dict[str, tuple[str, float]]) -> dict[str, float]:
    """Predicted seconds summed per kind of file (extension), for the dashboard's predicted-vs-actual table."""
    out: dict[str, float] = {}
    for fmt, seconds in costs.values():
        out[fmt] = out.get(fmt, 0.0) + seconds
    return out


class _Run:
    """One run's client-side driver: every future in one ``distributed.as_completed``.

    Batches of small files, plan tasks of large files (planned on the
    workers, in their sandboxes) and the chunk graphs built from those plans
    all finish into the same iterator; nothing polls. Timers do the two things
    that are not a future finishing: a retry's backoff ending (it submits the
    file again) and a deadline passing (it cancels the file's future, which
    then comes out of the iterator as that file's timeout).
    """

    def __init__(self, owner: ParallelExtractor, client: Any, tasks: list[ExtractionTask], progress: Callable | None, keep: bool = True,
                 known_sizes: dict[str, int] | None = None):
        self.owner, self.client, self.tasks, self.progress, self.keep = owner, client, tasks, progress, keep
        self.known_sizes = known_sizes or {}
        self.seen: set[str] = set()
        self.cfg = owner.config
        self.run_id = owner.last_run = uuid.uuid4().hex[:12]
        self.settings = self.cfg.batch_settings(self.run_id)
        self.results: dict[str, ExtractionResult] = {}
        #: what each future in flight is: ("batch", Batch) or ("plan" | "graph", _Large)
        self.inflight: dict[Any, tuple[str, Any]] = {}
        self.expired: set[Any] = set()
        #: the deadline timer of each large file's future in flight
        self.expiry: dict[Any, threading.Timer] = {}
        #: retries waiting out their backoff
        self.timers: set[threading.Timer] = set()
        self.lock = threading.RLock()
        self.wake = threading.Event()

    def run(self) -> list[ExtractionResult]:
        from distributed import as_completed

        from ..diagnostics.plugin import ensure_plugin
        from ..diagnostics.stats import EVENT_TOPIC

        client = self.client
        ensure_plugin(client)
        self.slots = sum(client.nthreads().values()) or 1
        sizes, large, batches = split_work(self.owner, self.tasks, self.known_sizes, self.slots)
        self.large = deque(large)
        client.log_event(EVENT_TOPIC, {"kind": "run-start", "run": self.run_id, "files": len(self.tasks), "bytes": sum(sizes.values()),
                                       "predicted": predicted_by_kind(self.owner.last_costs)})
        self.done = as_completed(loop=client.loop)
        try:
            with self.lock:
                self._start_large()  # first: a big file's graph is ahead of every batch
                for i, batch in enumerate(batches):
                    self._submit_batch(i, batch)
            self._drain()
        finally:
            for timer in [*self.timers, *self.expiry.values()]:
                timer.cancel()
        client.log_event(EVENT_TOPIC, {"kind": "run-end", "run": self.run_id})
        return [self.results[t.task_id] for t in self.tasks] if self.keep else []

    def _drain(self) -> None:
        while True:
            if self.done.is_empty():
                with self.lock:
                    if not self.timers:
                        return
                self.wake.wait()  # a retry's backoff is running: its timer submits and sets this
                self.wake.clear()
                continue
            fut = next(self.done)
            with self.lock:
                kind, item = self.inflight.pop(fut)
                timer = self.expiry.pop(fut, None)
                if timer is not None:
                    timer.cancel()
                if kind == "batch":
                    self._batch_done(fut, item)
                else:
                    self._large_done(fut, kind, item)
                self._start_large()

    # -- results

    def _emit(self, results: list[ExtractionResult], tell_plugin: bool) -> None:
        from ..diagnostics.stats import EVENT_TOPIC

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

    def _submit_batch(self, i: int, batch: Batch) -> None:
        import dask

        with dask.annotate(metaextract={"run": self.run_id, "role": "batch", "files": len(batch.tasks)}):
            fut = self.client.submit(extract_batch, [(t.task_id, t.file_path) for t in batch.tasks], self.owner.extraction_fn,
                                     self.settings, key=f"extract-batch-{batch.label}-{self.run_id}-{i}", priority=batch.priority, pure=False)
        self._track(fut, "batch", batch)

    def _track(self, fut: Any, kind: str, item: Any) -> None:
        self.inflight[fut] = (kind, item)
        self.done.add(fut)

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

    # -- large files: a plan task on a worker, then the chunk graph built from its plan

    def _start_large(self) -> None:
        """Plan large files while fewer than one per worker thread are in flight."""
        busy = sum(1 for kind, _ in self.inflight.values() if kind != "batch")
        while busy < self.slots and self.large:
            self._submit_plan(_Large(self.large.popleft(), 1))
            busy += 1

    def _submit_plan(self, large: _Large) -> None:
        import dask

        large.start = time.time()
        large.deadline = large.start + self.cfg.timeout  # until the plan task says when it started
        with dask.annotate(metaextract={"run": self.run_id, "role": "plan", "file": safe_text(large.task.file_path)}):
            fut = self.client.submit(plan_large_file, large.task.file_path, self.cfg.streaming, self.settings.isolation, self.cfg.timeout,
                                     key=f"plan-file-{self.run_id}-{uuid.uuid4().hex[:8]}", priority=GRAPH_PRIORITY, pure=False)
        self._track(fut, "plan", large)
        # the task's own clock starts when a worker thread takes it (it may wait behind a running batch): a wide backstop
        self._expire_at(fut, large.start + 2 * self.cfg.timeout + EXPIRY_GRACE)

    def _submit_graph(self, large: _Large, plan: Plan, reader: Any) -> None:
        import dask

        fg = build_graph(plan, reader, self.cfg.streaming, large.deadline, self.settings.isolation)
        ann = safe_dict({"run": self.run_id, "role": "file", "file": large.task.file_path, "type": plan.info.format, "shape": plan.shape.value})
        with dask.annotate(metaextract=ann):
            fut = self.client.get(fg.dsk, [fg.final_key], sync=False, priority=GRAPH_PRIORITY)[0]
        self._track(fut, "graph", large)
        self._expire_at(fut, large.deadline + EXPIRY_GRACE)

    def _expire_at(self, fut: Any, when: float) -> None:
        """Cancel ``fut`` at ``when``: a graph stuck past its deadline (a hung worker) becomes its file's timeout."""
        def expire() -> None:
            with self.lock:
                if self.expiry.pop(fut, None) is not None:
                    self.expired.add(fut)
                    self.client.cancel([fut])

        timer = self.expiry[fut] = threading.Timer(max(0.0, when - time.time()), expire)
        timer.daemon = True
        timer.start()

    def _large_done(self, fut: Any, kind: str, large: _Large) -> None:
        task = large.task
        try:
            if fut in self.expired:
                self.expired.discard(fut)
                raise ExtractionTimeout(task.file_path, f"timed out after {self.cfg.timeout:g} s")
            value = unwrap(fut.result())
            if kind == "plan":
                plan, reader, large.deadline = value
                large.start = large.deadline - self.cfg.timeout
                fut.release()
                self._submit_graph(large, plan, reader)
                return
            value.pop(CHUNK_SUMMARIES, None)
            check_record(task.file_path, value)
            result = ExtractionResult(task.task_id, task.file_path, True, value, start_time=large.start, end_time=time.time(),
                                      attempts=large.attempt)
        except Exception as exc:  # noqa: BLE001 - a file that cannot be planned or read is that file's record
            fut.release()
            if self.cfg.retry_failed and self.settings.retry.allows(exc, large.attempt):
                self._retry_later(_Large(task, large.attempt + 1), self.settings.retry.wait(large.attempt))
                return
            result = failure(task.task_id, task.file_path, exc, large.start, attempts=large.attempt)
        fut.release()
        self._emit([result], tell_plugin=True)

    def _retry_later(self, large: _Large, delay: float) -> None:
        def resubmit() -> None:
            with self.lock:
                self.timers.discard(timer)
                self._submit_plan(large)
            self.wake.set()

        timer = threading.Timer(delay, resubmit)
        timer.daemon = True
        self.timers.add(timer)
        timer.start()


@dataclass
class _Large:
    """A large file in flight: its task, which attempt this is, and that attempt's clock."""

    task: ExtractionTask
    attempt: int
    start: float = 0.0
    deadline: float = 0.0


def plan_large_file(path: str, config: StreamingConfig, isolation: Isolation, timeout: float) -> Any:
    """A plan task: (plan, reader, deadline) for one large file, planned on a worker (in its sandbox for native readers).

    The file's time starts here, when a worker thread takes it and the
    readers are imported, not when the client submitted it: the whole
    ``timeout`` is the file's own.
    """
    from ..planning.tasks import Failed
    from ..readers.probe import probe
    from ..readers.registry import may_parse_natively

    try:
        may_parse_natively(probe(path))  # the first call in a worker imports the readers: not the file's time
    except Exception:  # noqa: BLE001 - plan_path meets the same problem and reports it
        pass
    deadline = time.time() + timeout
    try:
        return (*plan_path(path, config, None, isolation, deadline), deadline)
    except Exception as exc:  # noqa: BLE001 - the file's failure, as a value: no worker traceback for a bad file
        return Failed(exc)


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
