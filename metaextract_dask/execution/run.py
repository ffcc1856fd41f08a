"""The one run: files in, exactly one record each, on any executor (``execution/executors.py``).

Every way of extracting runs here: ``scan``, ``ParallelExtractor`` and, one
file at a time with its chunks watched, ``StreamingExtractor`` and
``extract_file``. The run splits the files (small ones into batch tasks,
``planning.batches``; each large one into a plan task on a worker, then the
chunk graph built from that plan, at most one per worker thread in flight),
submits them, and turns what comes back into exactly one record per file:
a batch that failed as a whole is each of its files' failure, a result that
names another file is refused, a transient failure of a large file is tried
again after a backoff, and a large file past its deadline is cancelled and
becomes its timeout. Batches retry their own files on the worker
(``execution/batch.py``).

All of the run's state changes on one thread: the executor's completions,
the end of a retry's backoff, a deadline and a cancellation all arrive as
events in one queue. Nothing polls.
"""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Mapping, Protocol, Sequence, Sized

from ..core.errors import ExtractionTimeout, MisattributionError, ParserCrashError, describe
from ..core.model import ChunkSpec, ExtractionResult, ExtractionTask, RowBlock, check_record, failure
from ..core.settings import LoadBalancingStrategy, StreamingConfig
from ..core.text import safe_dict, safe_text
from ..planning.batches import Batch, plan_batches
from ..planning.graph import build_graph
from ..planning.plan import Plan, plan_path
from ..planning.tasks import CHUNK_SUMMARIES, Failed, unwrap
from ..sandbox import Isolation
from .batch import BatchSettings, extract_batch, file_size, outcomes
from .executors import Executor

#: Dask priority of large files' plans and graphs: above every batch, so a big file's clock starts when it is
#: submitted and it is not stuck behind small ones
GRAPH_PRIORITY = 10**9
#: seconds past a large file's deadline before its work is cancelled (its own tasks time out first)
EXPIRY_GRACE = 5.0
#: files split and submitted at a time (``Run.run``): what a run of millions holds of its tasks
WINDOW = 5_000


class RunConfig(Protocol):
    """What the run reads of its configuration (``api.ParallelExtractionConfig`` has it)."""

    @property
    def timeout(self) -> float: ...

    retry_failed: bool
    load_balancing: LoadBalancingStrategy
    batch_size: int | None
    streaming: StreamingConfig
    cost_model: Any
    watch_token: str | None

    def batch_settings(self, run: str, columns: bool = False) -> BatchSettings: ...


class ChunkWatch(Protocol):
    """Who follows one file's chunks as they finish (the seed's streaming callbacks)."""

    reader: str | None
    error: BaseException | None

    def planned(self, plan: Plan) -> None: ...
    def chunk(self, spec: ChunkSpec, summary: dict[str, Any]) -> None: ...


@dataclass
class _Large:
    """A large file in flight: its task, which attempt this is, that attempt's clock, and its plan once made."""

    task: ExtractionTask
    attempt: int
    start: float = 0.0
    deadline: float = 0.0
    plan: Plan | None = None
    reader: Any = None


class Run:
    """One run over an executor. ``run(tasks)`` returns the results in task order (empty when not kept).

    ``fn(path) -> dict`` replaces this project's extraction (every file then
    runs whole, in a batch); ``progress`` is called with each result as it
    arrives, or ``blocks`` with a ``RowBlock`` of many files' results at once
    when it is given (files that need no parser come back so, and with
    ``keep`` off parsed files too: a catalog writes them as columns);
    ``sizes`` are sizes the caller already knows (path -> bytes);
    ``watch`` follows the chunks of each file, every file then getting its
    own graph.
    """

    def __init__(self, config: RunConfig, executor: Executor, fn: Callable[[str], Any] | None = None, *,
                 progress: Callable[[ExtractionResult], Any] | None = None, keep: bool = True,
                 sizes: Mapping[str, int] | None = None, watch: ChunkWatch | None = None,
                 blocks: Callable[[RowBlock], Any] | None = None):
        self.cfg, self.executor, self.fn, self.progress, self.keep, self.blocks = config, executor, fn, progress, keep, blocks
        self.known_sizes, self.watch = sizes or {}, watch
        self.run_id = uuid.uuid4().hex[:12]
        #: who holds it may follow the run's events (``diagnostics/stream.py``): a secret, unlike the run's id
        self.token = config.watch_token or secrets.token_urlsafe(16)
        # parsed files as blocks of columns only for a catalog that keeps no records; a user's function returns records
        self.settings = config.batch_settings(self.run_id, columns=blocks is not None and not keep and fn is None)
        self.batches: list[Batch] = []
        #: task id -> (kind of file, predicted seconds), when a cost model ordered the run
        self.costs: dict[str, tuple[str, float]] = {}
        self.results: dict[str, ExtractionResult] = {}
        #: the task ids split into work and not yet answered: a run of millions holds about a window of them
        self.pending: set[str] = set()
        #: what each handle in flight is: ("batch", Batch), ("plan" | "graph", _Large) or ("chunk", (_Large, ChunkSpec))
        self.inflight: dict[Any, tuple[str, Any]] = {}
        #: how many of those are a large file's plan or graph, and how many a batch (counted, not summed per event)
        self.large_inflight = self.batches_inflight = 0
        #: batches submitted so far (their keys' numbers); kept for ``ParallelExtractor.last_batches`` when results are
        self.submitted = 0
        #: cancelled, or interrupted: no further window is submitted
        self.stopped = False
        #: the most files split into work and not yet answered at once (a window and what is left in flight)
        self.most_held = 0
        self.events: queue.Queue = queue.Queue()
        self.timers: set[threading.Timer] = set()
        #: the deadline timer of each large file's handle in flight
        self.expiry: dict[Any, threading.Timer] = {}
        self.backoffs = 0
        self.large: deque[ExtractionTask] = deque()

    # ---------------------------------------------------------------- the loop

    def run(self, tasks: Sequence[ExtractionTask] | Iterable[ExtractionTask], total: int | None = None,
            total_bytes: int | None = None) -> list[ExtractionResult]:
        """Run ``tasks`` (``total`` of them, of ``total_bytes``, when an iterable does not say) a window of ``WINDOW`` at a time.

        A window is split and submitted when the one before has fewer than two batches per worker thread left in
        flight: a run of millions holds the tasks, sizes and batches of about one window, and the walk's order is
        kept across windows (costliest first within one). Results come back in task order when kept.
        """
        ex = self.executor
        ex.start(self.run_id, lambda handle: self.events.put(("done", handle)))
        kept: list[ExtractionTask] = []
        source = iter(tasks)
        first = list(itertools.islice(source, WINDOW))
        files = total if total is not None else len(tasks) if isinstance(tasks, Sized) else None
        try:
            window = first
            while window and not self.stopped:
                if self.keep:
                    kept.extend(window)
                sizes, large, batches = self.split(window)
                self.pending.update(t.task_id for t in window)
                self.most_held = max(self.most_held, len(self.pending))
                if window is first:
                    ex.report({"kind": "run-start", "run": self.run_id, "files": files if files is not None else len(window),
                               "bytes": total_bytes if total_bytes is not None else sum(sizes.values()),
                               "predicted": predicted_by_kind(self.costs), "token": self.token})
                self.large.extend(large)
                self._start_large()  # first: a big file's plan is ahead of every batch
                for batch in batches:
                    self._submit_batch(batch)
                del sizes, large, batches
                window = list(itertools.islice(source, WINDOW))
                if window:
                    self._drain(low=2 * self.executor.slots)
            if not self.stopped:  # cancelled: nothing more is waited for (a retry's backoff included)
                self._drain()
        except BaseException:
            self._stop()  # Ctrl-C: nothing more is submitted, what is in flight is cancelled
            raise
        finally:
            for timer in list(self.timers):
                timer.cancel()
        ex.report({"kind": "run-end", "run": self.run_id})
        return [self.results[t.task_id] for t in kept if t.task_id in self.results] if self.keep else []

    def cancel(self) -> None:
        """Stop the run from any thread: files not finished get no record (a re-run resumes them)."""
        self.events.put(("cancel", None))

    def _drain(self, low: int = 0) -> None:
        """Handle events until nothing is in flight, or (``low``) until at most ``low`` batches are and no large file waits."""
        while (self.inflight or self.backoffs or self.large) and not (low and self.batches_inflight <= low and not self.large):
            event, item = self.events.get()
            if event == "cancel":
                self._stop()
                return
            if event == "retry":
                self.backoffs -= 1
                self._submit_plan(item)
            elif item in self.inflight:
                kind, what = self.inflight.pop(item)
                self.large_inflight -= kind in ("plan", "graph")
                self.batches_inflight -= kind == "batch"
                timer = self.expiry.pop(item, None)
                if timer is not None:
                    timer.cancel()
                    self.timers.discard(timer)
                if event == "expire":
                    self.executor.cancel([item])
                    self._large_failed(what, ExtractionTimeout(what.task.file_path, f"timed out after {self.cfg.timeout:g} s"))
                elif kind == "batch":
                    self._batch_done(item, what)
                elif kind == "chunk":
                    self._chunk_done(item, *what)
                else:
                    self._large_done(item, kind, what)
            self._start_large()

    def _stop(self) -> None:
        self.large.clear()
        self.executor.cancel(list(self.inflight))
        self.inflight.clear()
        self.large_inflight = self.batches_inflight = 0
        self.stopped = True

    def _later(self, delay: float, event: str, item: Any) -> threading.Timer:
        """Post ``(event, item)`` to the loop after ``delay`` seconds."""
        def post() -> None:
            self.timers.discard(timer)
            self.events.put((event, item))

        timer = threading.Timer(max(0.0, delay), post)
        timer.daemon = True
        self.timers.add(timer)
        timer.start()
        return timer

    # ---------------------------------------------------------------- splitting

    def split(self, tasks: list[ExtractionTask]) -> tuple[dict[str, int], list[ExtractionTask], list[Batch]]:
        """(sizes by task id, large files in the order they start, batches of the small ones).

        A file at or above the streaming threshold gets its own chunk graph
        (largest first under SIZE_AWARE); a user's ``fn`` runs whole files,
        so with one every file is small; with a ``watch`` every file is large.
        """
        cfg = self.cfg
        known = self.known_sizes
        sizes = {t.task_id: size if (size := known.get(t.file_path)) is not None else file_size(t.file_path) for t in tasks}
        threshold = 0 if self.watch is not None else float("inf") if self.fn is not None else cfg.streaming.streaming_threshold
        large = [t for t in tasks if sizes[t.task_id] >= threshold]
        small = [t for t in tasks if sizes[t.task_id] < threshold]
        costs = self.costs = predicted_costs(cfg, tasks, sizes)
        if cfg.load_balancing is LoadBalancingStrategy.SIZE_AWARE:
            large.sort(key=lambda t: -(costs[t.task_id][1] if costs else sizes[t.task_id]))
        types = None
        if cfg.load_balancing is LoadBalancingStrategy.FILE_TYPE_AWARE:
            from ..readers.probe import file_type

            types = {t.task_id: file_type(t.file_path, None) for t in small}
        seconds = {k: v[1] for k, v in costs.items()} if costs else None
        batches = plan_batches(small, cfg.load_balancing, sizes, self.executor.slots, cfg.batch_size, types, seconds)
        return sizes, large, batches

    # ---------------------------------------------------------------- results

    def _emit(self, results: Sequence[ExtractionResult | RowBlock], tell_metrics: bool = True) -> None:
        if tell_metrics and results:  # before progress: outcome() fills each result's file_format once
            self.executor.report({"kind": "files", "run": self.run_id, **outcomes(results)})
        for r in results:
            if isinstance(r, RowBlock):
                self._emit_block(r)
                continue
            if r.task_id not in self.pending:  # exactly one record per file: a second answer for one is dropped
                continue
            self.pending.discard(r.task_id)
            if self.keep:
                self.results[r.task_id] = r
            if self.progress is not None:
                self.progress(r)

    def _emit_block(self, block: RowBlock) -> None:
        """A block's files, as one block to ``blocks`` when someone takes them so, else each as its result."""
        pending = self.pending
        fresh = [i for i, t in enumerate(block.task_ids) if t in pending]
        if len(fresh) < len(block):
            block = block.keep(fresh)
        pending.difference_update(block.task_ids)
        if self.keep or self.blocks is None:
            for r in block.results():
                if self.keep:
                    self.results[r.task_id] = r
                if self.blocks is None and self.progress is not None:
                    self.progress(r)
        if self.blocks is not None:
            self.blocks(block)

    # ---------------------------------------------------------------- batches of small files

    def _submit_batch(self, batch: Batch, failed: BaseException | None = None) -> None:
        """A batch task; ``failed``: its one file's first attempt failed so (a large file's crash: ``_large_failed``)."""
        ann = {"run": self.run_id, "role": "batch", "files": len(batch.tasks)}
        handle = self.executor.submit(extract_batch, ([(t.task_id, t.file_path) for t in batch.tasks], self.fn, self.settings, failed),
                                      f"extract-batch-{batch.label}-{self.run_id}-{self.submitted}", batch.priority, ann)
        self.inflight[handle] = ("batch", batch)
        self.batches_inflight += 1
        self.submitted += 1
        if self.keep:
            self.batches.append(batch)

    def _wait(self, handle: Any) -> tuple[Any, BaseException | None]:
        """(the handle's result, None), or (None, what it raised). Ctrl-C or an exit while waiting is the user's,
        never a file's: it is raised (it had been recorded as the batch's failure, and the run waited on)."""
        try:
            return self.executor.result(handle), None
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - the handle's answer (a CancelledError too): the caller says whose
            return None, exc

    def _batch_done(self, handle: Any, batch: Batch) -> None:
        results, exc = self._wait(handle)
        if exc is not None:  # e.g. the batch's workers kept dying: each file says so
            now = time.time()
            self._emit([ExtractionResult(t.task_id, t.file_path, False, None, f"its batch failed: {describe(exc)}", type(exc).__name__,
                                         now, now) for t in batch.tasks])
        else:
            good, refused = matched_results(batch.tasks, results)
            self._emit(good, tell_metrics=not self.executor.batches_report)
            self._emit(refused)
        self.executor.release(handle)

    # ---------------------------------------------------------------- large files: a plan task, then its chunk graph

    def _start_large(self) -> None:
        """Plan large files while fewer than one per worker thread are in flight."""
        while self.large_inflight < self.executor.slots and self.large:
            self._submit_plan(_Large(self.large.popleft(), 1))

    def _submit_plan(self, large: _Large) -> None:
        cfg = self.cfg
        large.start = time.time()
        large.deadline = large.start + cfg.timeout  # until the plan task says when it started
        reader = self.watch.reader if self.watch is not None else None
        handle = self.executor.submit(plan_large_file, (large.task.file_path, cfg.streaming, self.settings.isolation, cfg.timeout, reader),
                                      f"plan-file-{self.run_id}-{uuid.uuid4().hex[:8]}", GRAPH_PRIORITY,
                                      {"run": self.run_id, "role": "plan", "file": safe_text(large.task.file_path)})
        self.inflight[handle] = ("plan", large)
        self.large_inflight += 1
        # the task's own clock starts when a worker thread takes it (it may wait behind a running batch): a wide backstop
        self.expiry[handle] = self._later(2 * cfg.timeout + EXPIRY_GRACE, "expire", handle)

    def _submit_graph(self, large: _Large) -> None:
        plan = large.plan
        assert plan is not None
        fg = build_graph(plan, large.reader, self.cfg.streaming, large.deadline, self.settings.isolation)
        keys: list[Hashable] = [fg.final_key, *fg.read_keys] if self.watch is not None else [fg.final_key]
        ann = safe_dict({"run": self.run_id, "role": "file", "file": large.task.file_path, "type": plan.info.format, "shape": plan.shape.value})
        final, *chunks = self.executor.submit_graph(fg.dsk, keys, GRAPH_PRIORITY, ann)
        self.inflight[final] = ("graph", large)
        self.large_inflight += 1
        for handle, key in zip(chunks, keys[1:]):
            self.inflight[handle] = ("chunk", (large, fg.read_keys[key]))
        self.expiry[final] = self._later(large.deadline + EXPIRY_GRACE - time.time(), "expire", final)

    def _chunk_done(self, handle: Any, large: _Large, spec: ChunkSpec) -> None:
        state, exc = self._wait(handle)
        if exc is not None:  # cancelled with its file: the file's record says why
            state = Failed(exc)
        self.executor.release(handle)
        if self.watch is not None:
            self.watch.chunk(spec, {"error": describe(state.error)} if isinstance(state, Failed) else large.reader.public_summary(state))

    def _large_done(self, handle: Any, kind: str, large: _Large) -> None:
        task = large.task
        value, error = self._wait(handle)
        self.executor.release(handle)
        if error is None:
            try:
                value = unwrap(value)
                if kind == "plan":
                    large.plan, large.reader, large.deadline = value
                    large.start = large.deadline - self.cfg.timeout
                    if self.watch is not None:
                        self.watch.planned(large.plan)
                    self._submit_graph(large)
                    return
                summaries = value.pop(CHUNK_SUMMARIES, None)
                if self.watch is not None and summaries is not None and large.plan is not None:  # a one-task graph: its chunks now
                    for spec, summary in zip(large.plan.specs, summaries):
                        self.watch.chunk(spec, summary)
                check_record(task.file_path, value)
            except Exception as exc:  # noqa: BLE001 - a file that cannot be planned or read is that file's record
                error = exc
        if error is not None:
            self._large_failed(large, error)
            return
        self._emit([ExtractionResult(task.task_id, task.file_path, True, value, start_time=large.start, end_time=time.time(),
                                     attempts=large.attempt)])

    def _large_failed(self, large: _Large, exc: BaseException) -> None:
        """Try the file again after a backoff when the failure is transient, else it is the file's record."""
        self._forget_chunks(large)
        if self.cfg.retry_failed and self.settings.retry.allows(exc, large.attempt):
            self.backoffs += 1
            self._later(self.settings.retry.wait(large.attempt), "retry", _Large(large.task, large.attempt + 1))
            return
        if isinstance(exc, ParserCrashError) and self.fn is None:
            self._submit_batch(Batch([large.task], GRAPH_PRIORITY, "after-crash"), failed=exc)  # its structure alone, if that reads
            return
        if self.watch is not None:
            self.watch.error = exc
        self._emit([failure(large.task.task_id, large.task.file_path, exc, large.start, attempts=large.attempt)])

    def _forget_chunks(self, large: _Large) -> None:
        chunks = [h for h, (kind, what) in self.inflight.items() if kind == "chunk" and what[0] is large]
        if chunks:
            self.executor.cancel(chunks)
            for h in chunks:
                del self.inflight[h]


def matched_results(tasks: list[ExtractionTask], results: list[ExtractionResult | RowBlock]
                    ) -> tuple[list[ExtractionResult | RowBlock], list[ExtractionResult]]:
    """(results and blocks that answer their own tasks, internal-error results for every other task).

    A batch's results crossed a process boundary: each must carry a task id
    of this batch and that task's path, and its record must name that path
    (a block's records were checked where they were made, and it answers
    only for the files whose task id and path it names).
    """
    wanted = {t.task_id: t.file_path for t in tasks}
    good: list[ExtractionResult | RowBlock] = []
    answered: set[str] = set()
    for r in results:
        if isinstance(r, RowBlock):
            mine = [i for i, (t, p) in enumerate(zip(r.task_ids, r.paths)) if wanted.get(t) == p and t not in answered]
            block = r if len(mine) == len(r) else r.keep(mine)
            answered.update(block.task_ids)
            good.append(block)
            continue
        if wanted.get(r.task_id) != r.file_path or r.task_id in answered:
            continue
        try:
            if r.success:
                check_record(r.file_path, r.metadata)
        except MisattributionError as exc:
            r = failure(r.task_id, r.file_path, exc, r.start_time, r.end_time, r.attempts)
        answered.add(r.task_id)
        good.append(r)
    now = time.time()
    refused = [failure(t.task_id, t.file_path, MisattributionError(t.file_path, "internal error: its batch returned no result "
                                                                   "for this file"), now, now)
               for t in tasks if t.task_id not in answered]
    return good, refused


def predicted_costs(cfg: RunConfig, tasks: list[ExtractionTask], sizes: dict[str, int]) -> dict[str, tuple[str, float]]:
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


def plan_large_file(path: str, config: StreamingConfig, isolation: Isolation, timeout: float, reader: str | None = None) -> Any:
    """A plan task: (plan, reader, deadline) for one large file, planned on a worker (in its sandbox for native readers).

    The file's time starts here, when a worker thread takes it and the
    readers are imported, not when the client submitted it: the whole
    ``timeout`` is the file's own. ``reader`` forces a reader by name.
    """
    from ..readers.probe import probe
    from ..readers.registry import may_parse_natively

    try:
        may_parse_natively(probe(path))  # the first call in a worker imports the readers: not the file's time
    except Exception:  # noqa: BLE001 - plan_path meets the same problem and reports it
        pass
    deadline = time.time() + timeout
    try:
        return (*plan_path(path, config, reader, isolation, deadline), deadline)
    except Exception as exc:  # noqa: BLE001 - the file's failure, as a value: no worker traceback for a bad file
        return Failed(exc)

