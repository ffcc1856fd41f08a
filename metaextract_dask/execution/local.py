"""Many files on Dask's local threaded scheduler: no cluster, and distributed not even imported.

For a scan that is over in seconds, starting a distributed cluster costs
more than the work (importing distributed alone is 0.4 s of this process's
time; benchmarks/RESULTS-cli.md). ``ExecutionModel.LOCAL`` runs the same
tasks as the threaded Client, from the same plans and graphs: batches of
small files on ``max_workers`` threads, each parsing in its own sandbox
process; large files at most ``max_workers`` at a time (as on a cluster: a
sha256 is one sequential pass per file), each file's chunk graph on
``dask.threaded`` (the path the big-file benchmark measures fastest). There
is no dashboard and no scheduler plugin: the run's metrics are counted here
with the plugin's own ``RunStats``.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

from ..core.errors import describe
from ..core.model import ExtractionResult, ExtractionTask, check_record, failure
from ..diagnostics.stats import ParallelMetrics, RunStats
from ..planning.graph import build_graph, run_local
from ..planning.tasks import CHUNK_SUMMARIES, unwrap
from ..sandbox import release_thread_sandbox
from .batch import BatchSettings, extract_batch, outcome

if TYPE_CHECKING:
    from .driver import ParallelExtractor


def run_here(owner: "ParallelExtractor", tasks: list[ExtractionTask], progress: Callable[[ExtractionResult], Any] | None,
             keep: bool, known_sizes: dict[str, int]) -> tuple[list[ExtractionResult], ParallelMetrics]:
    """``ParallelExtractor.extract`` on this machine's threads: (results in task order, metrics)."""
    from .driver import matched_results, predicted_by_kind, split_work

    start = time.perf_counter()
    cfg = owner.config
    slots = cfg.max_workers or os.cpu_count() or 1
    run = owner.last_run = uuid.uuid4().hex[:12]
    settings = cfg.batch_settings(run)
    sizes, large, batches = split_work(owner, tasks, known_sizes, slots)
    stats = RunStats(run)
    stats.expected_files, stats.expected_bytes = len(tasks), sum(sizes.values())
    stats.predicted_by_kind = predicted_by_kind(owner.last_costs)
    results: dict[str, ExtractionResult] = {}

    def emit(done: list[ExtractionResult]) -> None:
        for r in done:
            if r.task_id in seen:
                continue  # exactly one record per file
            seen.add(r.task_id)
            stats.add_file(outcome(r))
            if keep:
                results[r.task_id] = r
            if progress is not None:
                progress(r)

    seen: set[str] = set()
    finished: queue.Queue = queue.Queue()
    small_work: queue.Queue = queue.Queue()
    for batch in batches:
        small_work.put(batch)
    fn = owner.extraction_fn
    run_batch = lambda b: extract_batch([(t.task_id, t.file_path) for t in b.tasks], fn, settings)  # noqa: E731
    threads = [threading.Thread(target=_worker, args=(small_work, finished, "batch", run_batch), name=f"metaextract-{i}", daemon=True)
               for i in range(min(slots, len(batches)))]
    for _ in threads:
        small_work.put(None)  # one stop sign per batch thread
    large_work: queue.Queue = queue.Queue()
    for task in large:
        large_work.put(task)
    chunk_pool = ThreadPoolExecutor(slots, thread_name_prefix="metaextract-chunks") if large else None
    for i in range(min(slots, len(large))):  # one large file per thread in flight, as on a cluster; their chunks share one pool
        large_work.put(None)
        threads.append(threading.Thread(target=_worker, args=(large_work, finished, "large", lambda t: extract_large(t, cfg, settings, chunk_pool)),
                                        name=f"metaextract-large-{i}", daemon=True))
    for t in threads:
        t.start()
    running = len(threads)
    while running:
        kind, item, value = finished.get()
        if kind == "stop":
            running -= 1
        elif kind == "large":
            emit([value])
        elif isinstance(value, BaseException):  # a batch thread's own failure: its files are lost, said so
            now = time.time()
            emit([ExtractionResult(t.task_id, t.file_path, False, None, f"its batch failed: {describe(value)}", type(value).__name__,
                                   now, now) for t in item.tasks])
        else:
            good, refused = matched_results(item.tasks, value)
            emit(good + refused)
    if chunk_pool is not None:
        chunk_pool.shutdown(wait=False)
    stats.finished = True
    metrics = ParallelMetrics.from_snapshot(stats.snapshot(), time.perf_counter() - start)
    return ([results[t.task_id] for t in tasks] if keep else []), metrics


def _worker(work: queue.Queue, finished: queue.Queue, kind: str, do: Callable[[Any], Any]) -> None:
    """``do`` each item until the stop sign, in the order queued (largest first under SIZE_AWARE); the thread's sandbox ends with it.

    An exception is the item's answer (a batch's files are then reported lost); ``extract_large`` never raises.
    """
    try:
        while (item := work.get()) is not None:
            try:
                finished.put((kind, item, do(item)))
            except Exception as exc:  # noqa: BLE001 - reported for each file of the batch
                finished.put((kind, item, exc))
    finally:
        release_thread_sandbox()
        finished.put(("stop", None, None))


def extract_large(task: ExtractionTask, cfg: Any, settings: BatchSettings, pool: Any = None) -> ExtractionResult:
    """One large file: planned here (in this thread's sandbox for native readers), its chunk graph on dask.threaded
    with the other large files' (``pool``).

    Transient failures are tried again under the run's ``Retry`` rule, as
    on a cluster.
    """
    from .driver import plan_large_file

    attempt = 1
    while True:
        start = time.time()
        try:
            plan, reader, deadline = unwrap(plan_large_file(task.file_path, cfg.streaming, settings.isolation, cfg.timeout))
            start = deadline - cfg.timeout
            record = unwrap(run_local(build_graph(plan, reader, cfg.streaming, deadline, settings.isolation), pool=pool))
            record.pop(CHUNK_SUMMARIES, None)
            check_record(task.file_path, record)
            return ExtractionResult(task.task_id, task.file_path, True, record, start_time=start, end_time=time.time(), attempts=attempt)
        except Exception as exc:  # noqa: BLE001 - a file that cannot be planned or read is that file's record
            if cfg.retry_failed and settings.retry.allows(exc, attempt):
                time.sleep(settings.retry.wait(attempt))
                attempt += 1
                continue
            return failure(task.task_id, task.file_path, exc, start, attempts=attempt)
