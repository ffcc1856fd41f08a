"""The seed's names, as thin layers over the one run (``execution/run.py``).

``ParallelExtractor`` runs many files; ``StreamingExtractor`` and
``extract_file`` run one file with its chunks watched. Both choose an
executor (``execution/executors.py``): Dask's local threads, or a
``distributed.Client`` given, current, or started for the run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sized

from ..core.errors import ExtractionError, MetaExtractError, describe
from ..core.model import ChunkSpec, ExtractionResult, ExtractionTask, RowBlock, StreamChunk
from ..core.settings import LoadBalancingStrategy, StreamingConfig, parse_size, setting
from ..diagnostics.stats import ParallelMetrics
from ..planning.batches import Batch
from ..planning.graph import FileGraph, build_graph
from ..planning.plan import Plan, plan_path
from ..sandbox import Isolation
from ..storage.urls import local_path
from .batch import BatchSettings
from .cluster import ClientScope, ExecutionModel
from .executors import executor_for
from .run import Run

Callback = Callable[[StreamChunk, "StreamingMetrics"], Any]


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
    #: the token that lets a watcher follow the run's events on the scheduler (``diagnostics/stream.py``): made for
    #: each run when None (``ParallelExtractor.last_token``)
    watch_token: str | None = None

    def __post_init__(self) -> None:
        self.execution_model = ExecutionModel.parse(self.execution_model)
        self.load_balancing = LoadBalancingStrategy.parse(self.load_balancing)
        if isinstance(self.memory_limit, str):
            self.memory_limit = parse_size(self.memory_limit)
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

    def batch_settings(self, run: str, columns: bool = False) -> BatchSettings:
        """What each batch task of run ``run`` is given (``columns``: ``BatchSettings.columns``)."""
        return BatchSettings(
            timeout=self.timeout,
            retry_limit=self.retry_limit if self.retry_failed else 0,
            retry_delay=self.retry_delay,
            isolation=self.isolation,
            streaming=self.streaming,
            run=run,
            columns=columns,
        )


class ParallelExtractor:
    """Extract many files on Dask (seed name).

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
        #: the most files the last run held split into work at once (``Run.most_held``: a window and what was in flight)
        self.last_held = 0
        #: called with the Client once it is up (the CLI prints the dashboard link)
        self.on_client: Callable[[Any], Any] | None = None
        self._run: Run | None = None

    def add_task(self, file_path: str | os.PathLike, priority: int = 0) -> str:
        """Queue one file; returns its task id."""
        task = ExtractionTask(file_path=os.fspath(file_path), priority=priority)
        self.queue.append(task)
        return task.task_id

    def add_tasks_batch(self, file_paths: Iterable[str | os.PathLike], priority: int = 0) -> list[str]:
        """Queue many files; returns their task ids."""
        return [self.add_task(p, priority) for p in file_paths]

    def _take(self, files: Iterable[str | os.PathLike] | None, names: set[str] | None = None) -> Iterator[ExtractionTask]:
        """Queued tasks, then a task for each of ``files`` as the run asks for it (a file is not run twice); empties the queue.
        ``names``: every queued and given name, when counted already: each is taken out as its task is made (one set of
        the names, shrinking as the run goes, instead of a second growing one)."""
        queued, self.queue = self.queue, []
        seen: set[str] = set()

        def first(path: str) -> bool:
            """Whether ``path`` is not taken yet (and now it is)."""
            if names is None:
                new = path not in seen
                seen.add(path)
                return new
            if path in names:
                names.discard(path)
                return True
            return False

        for task in queued:
            first(task.file_path)
            yield task
        for given in files or ():
            path = os.fspath(given)
            if first(path):
                yield ExtractionTask(file_path=path)

    def scope(self) -> ClientScope | None:
        """The Client to run on (given, or started for the run), or None: LOCAL with nothing given runs on Dask's local threads."""
        cfg = self.config
        if cfg.execution_model is ExecutionModel.LOCAL and self.client is None and self.cluster is None and cfg.scheduler_address is None:
            return None
        return ClientScope(self.client, self.cluster, cfg.scheduler_address, cfg.execution_model, cfg.max_workers,
                           dashboard=cfg.dashboard_address, security=cfg.security)

    def extract(self, files: Iterable[str | os.PathLike] | None = None,
                progress: Callable[[ExtractionResult], Any] | None = None,
                keep_results: bool = True, sizes: Mapping[str, int] | None = None,
                blocks: Callable[[RowBlock], Any] | None = None) -> tuple[list[ExtractionResult], ParallelMetrics]:
        """Extract queued tasks and ``files``: (results in task order, metrics).

        ``keep_results=False`` hands each result to ``progress`` only and
        returns an empty list: memory stays flat over millions of files.
        ``blocks``, when given, takes the results of files that needed no
        parser (and with ``keep_results=False`` of parsed files too) a
        ``RowBlock`` (many files, as catalog columns) at a time instead of
        ``progress`` taking each.
        ``sizes``: file sizes the caller already knows (path -> bytes), so
        those files are not stat-ed again (one round trip each on a parallel
        file system). ``cancel()`` from another thread stops the run: the
        files it finished are returned, the others have no result.
        """
        listed = files is None or isinstance(files, Sized)  # a list can be gone through twice: counted first
        names = {t.file_path for t in self.queue} | {os.fspath(p) for p in files or ()} if listed else None
        total = len(names) if names is not None else None
        total_bytes = sum(sizes.get(p) or 0 for p in names) if names is not None and sizes is not None else None
        tasks = self._take(files, names)  # made as the run takes them, a window at a time
        start = time.perf_counter()
        with executor_for(self.scope(), self.on_client, self.config.max_workers) as executor:
            run = self._run = Run(self.config, executor, self.extraction_fn, progress=progress, keep=keep_results, sizes=sizes,
                                  blocks=blocks)
            try:
                results = run.run(tasks, total, total_bytes)
            finally:
                self._run = None
                self.last_run, self.last_batches, self.last_costs = run.run_id, run.batches, run.costs
                self.last_held = run.most_held
            metrics = executor.metrics(run.run_id, time.perf_counter() - start)
        return results, metrics

    def cancel(self) -> None:
        """Stop the running ``extract`` (from another thread, or a signal handler)."""
        run = self._run
        if run is not None:
            run.cancel()

    async def extract_parallel(self, files: Iterable[str | os.PathLike] | None = None,
                               progress: Callable[[ExtractionResult], Any] | None = None) -> tuple[list[ExtractionResult], ParallelMetrics]:
        """Asynchronous ``extract``: the event loop stays free while files are extracted.

        With an asynchronous Client (``ExecutionModel.ASYNC_IO``) the work runs
        on that Client's cluster, driven from a thread by a synchronous
        connection to the same scheduler, so the caller's event loop is never blocked.
        """
        if self.client is not None and getattr(self.client, "asynchronous", False):
            twin = ParallelExtractor(self.config, self.extraction_fn)
            twin.config = dataclasses.replace(self.config, scheduler_address=self.client.scheduler.address, security=self.client.security)
            twin.queue, self.queue = self.queue, []
            results = await asyncio.to_thread(twin.extract, files, progress)
            self.last_batches, self.last_run, self.last_costs = twin.last_batches, twin.last_run, twin.last_costs
            return results
        return await asyncio.to_thread(self.extract, files, progress)


async def extract_files_parallel(files: Iterable[str | os.PathLike], extraction_fn: Callable | None = None, max_workers: int = 4,
                                 **options: Any) -> tuple[list[ExtractionResult], ParallelMetrics]:
    """Extract ``files`` in parallel (seed name): ``await extract_files_parallel(files, fn, max_workers=4)``."""
    client = options.pop("client", None)
    config = ParallelExtractionConfig(max_workers=max_workers, **options)
    return await ParallelExtractor(config, extraction_fn, client=client).extract_parallel(list(files))


def extract_files(files: Iterable[str | os.PathLike], extraction_fn: Callable | None = None, max_workers: int = 4,
                  **options: Any) -> tuple[list[ExtractionResult], ParallelMetrics]:
    """Synchronous ``extract_files_parallel``."""
    client = options.pop("client", None)
    config = ParallelExtractionConfig(max_workers=max_workers, **options)
    return ParallelExtractor(config, extraction_fn, client=client).extract(list(files))


@dataclass
class StreamingMetrics:
    """Progress of one file's extraction (seed name)."""

    file_path: str = ""
    #: the concrete streaming strategy (``sequential``, ``windowed``, ``sample_based``)
    strategy: str = ""
    chunks_total: int = 0
    bytes_total: int = 0
    chunks_processed: int = 0
    bytes_processed: int = 0
    start_time: float = field(default_factory=time.perf_counter)
    end_time: float | None = None
    #: the graph's shape (``single``, ``chain``, ``window``, ``star``)
    shape: str = ""

    @property
    def elapsed_time(self) -> float:
        """Seconds since the extraction started (until it ended)."""
        return (self.end_time or time.perf_counter()) - self.start_time

    @property
    def throughput(self) -> float:
        """Bytes processed per second."""
        elapsed = self.elapsed_time
        return self.bytes_processed / elapsed if elapsed > 0 else 0.0

    @property
    def progress(self) -> float:
        """Fraction of planned chunks done, 0 to 1."""
        return self.chunks_processed / self.chunks_total if self.chunks_total else 0.0

    def record(self, size: int) -> None:
        self.chunks_processed += 1
        self.bytes_processed += size


def current_client() -> Any | None:
    """The active distributed Client, if distributed is in use."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


class StreamingExtractor:
    """Extract metadata from one file with a streaming strategy (seed name).

    ``client``: a ``distributed.Client`` to run on; ``None`` uses the current
    client if there is one, otherwise Dask's local threads. The file is
    planned where it is read (in a sandbox child for native readers when
    ``isolate``), then its chunk graph runs; callbacks run here as chunk
    tasks finish and see each chunk's summary, never its bytes.
    """

    def __init__(self, config: StreamingConfig | None = None, client: Any | None = None, reader: str | None = None,
                 isolate: bool = True):
        self.config = config or StreamingConfig()
        self.client = client
        self.reader = reader
        #: parse in a sandbox process, as a scan does: a file that crashes its native library (a malformed chunk, a
        #: hostile filter plugin) costs its statistics or its record, never the caller's process (a notebook's kernel)
        self.isolate = isolate

    def plan(self, path: str | os.PathLike) -> Plan:
        """What would be read, without reading it."""
        return plan_path(path, self.config, self.reader)[0]

    def graph(self, path: str | os.PathLike, deadline: float | None = None,
              isolation: Isolation | None = None) -> tuple[Plan, FileGraph]:
        """The plan and its task dictionary, for inspection or custom execution."""
        isolation = isolation or Isolation.off()
        plan, reader = plan_path(path, self.config, self.reader, isolation, deadline)
        return plan, build_graph(plan, reader, self.config, deadline, isolation)

    def extract(self, path: str | os.PathLike, callback: Callback | None = None) -> tuple[dict[str, Any], StreamingMetrics]:
        """Extract synchronously: (metadata, metrics)."""
        path = local_path(path)
        client = self.client or current_client()
        if client is not None and getattr(client, "asynchronous", False):
            raise TypeError("extract() needs a synchronous Client; use 'await extract_streaming()' with an asynchronous one")
        watch = _Watch(path, self.reader, callback)
        config = ParallelExtractionConfig(max_workers=None, retry_failed=False, isolate=self.isolate, streaming=self.config)
        if self.isolate and client is None:  # started from this thread, the child outlives the run's own threads
            from ..sandbox import keep_spares

            keep_spares(1, int(config.memory_limit))
        scope = ClientScope(client, None, None, ExecutionModel.THREAD_POOL, None) if client is not None else None
        with executor_for(scope, None, None, metrics=False) as executor:  # the user's scheduler is left as it was
            [result] = Run(config, executor, watch=watch).run([ExtractionTask(file_path=path)])
        if not result.success:
            error = watch.error
            if isinstance(error, MetaExtractError):
                raise error
            raise ExtractionError(path, describe(error) if error is not None else str(result.error)) from error
        metrics = watch.metrics
        metrics.chunks_processed, metrics.bytes_processed = metrics.chunks_total, metrics.bytes_total
        metrics.end_time = time.perf_counter()
        return result.metadata or {}, metrics

    async def extract_streaming(self, path: str | os.PathLike, callback: Callback | None = None) -> tuple[dict[str, Any], StreamingMetrics]:
        """Extract asynchronously: (metadata, metrics). With an asynchronous Client, a synchronous
        connection to its scheduler drives the work from a thread: the event loop stays free."""
        client = self.client or current_client()
        if client is None or not getattr(client, "asynchronous", False):
            return await asyncio.to_thread(self.extract, path, callback)

        def on_twin() -> tuple[dict[str, Any], StreamingMetrics]:
            from distributed import Client

            with Client(client.scheduler.address, security=client.security, set_as_default=False) as twin:
                return StreamingExtractor(self.config, twin, self.reader, self.isolate).extract(path, callback)

        return await asyncio.to_thread(on_twin)


class _Watch:
    """One file's chunks followed for a ``StreamingExtractor``: its metrics, the user's callback, the error if it failed."""

    def __init__(self, path: str, reader: str | None, callback: Callback | None):
        self.reader, self.callback = reader, callback
        self.error: BaseException | None = None
        self.metrics = StreamingMetrics(path)

    def planned(self, plan: Plan) -> None:
        m = self.metrics
        m.strategy, m.chunks_total, m.bytes_total, m.shape = plan.strategy.value, len(plan.specs), plan.bytes_planned, plan.shape.value
        m.chunks_processed = m.bytes_processed = 0

    def chunk(self, spec: ChunkSpec, summary: dict[str, Any]) -> None:
        self.metrics.record(spec.size)
        if self.callback is not None:
            self.callback(StreamChunk.from_spec(spec, summary), self.metrics)


async def extract_with_streaming(path: str | os.PathLike, config: StreamingConfig | None = None, callback: Callback | None = None,
                                 client: Any | None = None) -> tuple[dict[str, Any], StreamingMetrics]:
    """Extract one file asynchronously (seed name): ``await extract_with_streaming(path)``."""
    return await StreamingExtractor(config, client).extract_streaming(path, callback)


def extract_file(path: str | os.PathLike, config: StreamingConfig | None = None, callback: Callback | None = None, client: Any | None = None,
                 storage_options: dict[str, Any] | None = None) -> tuple[dict[str, Any], StreamingMetrics]:
    """Extract one file synchronously: (metadata, metrics).

    ``path`` may be an fsspec URL (``s3://bucket/key.nc``, ``https://...``);
    ``storage_options`` (fsspec's: credentials, ``endpoint_url``, ``anon``)
    replace the config's.
    """
    if storage_options is not None:
        config = dataclasses.replace(config or StreamingConfig(), storage_options=dict(storage_options))
    return StreamingExtractor(config, client).extract(path, callback)


__all__ = ["ParallelExtractionConfig", "ParallelExtractor", "StreamingExtractor", "StreamingMetrics", "extract_file", "extract_files",
           "extract_files_parallel", "extract_with_streaming"]
