"""Where the one run (``execution/run.py``) sends its work: two adapters of one small protocol.

``Threads`` is Dask's local way of running: worker threads of this process
(each parsing in its own sandbox child), chunk graphs on
``dask.threaded``; no cluster, no dashboard, and distributed is not even
imported (importing it alone is 0.4 s of this process's time;
benchmarks/RESULTS-cli.md). ``OnClient`` is a ``distributed.Client``:
threads in this process, worker processes, or a cluster (HPC included).

The run never asks which one it has. It submits functions and graphs, is
told through ``notify`` when each handle finishes (results and cancellations
alike), asks for the result, cancels what passed its deadline, and reports
the run's events to the metrics (the scheduler plugin, or this process's
own ``RunStats``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Hashable, Iterator, Protocol

from ..diagnostics.stats import EVENT_TOPIC, ParallelMetrics, RunStats
from ..sandbox import release_thread_sandbox
from .cluster import ClientScope

Notify = Callable[[Any], None]


class Executor(Protocol):
    """What the run needs of a place to run work."""

    #: worker threads: how many large files are in flight at once, and how batches are sized
    slots: int
    #: batch tasks tell the metrics about their files themselves (on distributed workers); otherwise the run does
    batches_report: bool

    def start(self, run: str, notify: Notify) -> None: ...
    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], key: str, priority: int, annotations: dict[str, Any]) -> Any: ...
    def submit_graph(self, dsk: dict[Hashable, Any], keys: list[Hashable], priority: int, annotations: dict[str, Any]) -> list[Any]: ...
    def result(self, handle: Any) -> Any: ...
    def cancel(self, handles: list[Any]) -> None: ...
    def release(self, handle: Any) -> None: ...
    def report(self, event: dict[str, Any]) -> None: ...
    def metrics(self, run: str, seconds: float) -> ParallelMetrics: ...


class Threads:
    """``slots`` worker threads of this process, highest priority first; graphs on ``dask.threaded``.

    Files' chunk graphs share one chunk pool of ``slots`` threads, so the
    machine has one reading thread per core, not one per core per file. A
    cancelled handle that is already running cannot be stopped (its tasks
    end at their own deadline); it is reported finished at once and its
    result is dropped.
    """

    batches_report = False

    def __init__(self, slots: int):
        self.slots = max(1, slots)
        self._work: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._chunks: ThreadPoolExecutor | None = None
        self._notify: Notify = lambda handle: None
        self.stats = RunStats("")
        #: a handle was cancelled while running: its thread may be stuck, so closing does not wait for the threads
        self.abandoned = False

    def start(self, run: str, notify: Notify) -> None:
        self.stats, self._notify = RunStats(run), notify

    def _put(self, priority: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future:
        fut: Future = Future()
        fut.add_done_callback(self._notify)
        self._work.put((-priority, next(self._order), fut, fn, args))
        if len(self._threads) < self.slots:
            thread = threading.Thread(target=self._serve, name=f"metaextract-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return fut

    def _serve(self) -> None:
        """Run work until the stop sign; the thread's sandbox child goes back to the spares when it is idle or ends."""
        try:
            while (item := self._work.get())[2] is not None:
                _, _, fut, fn, args = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    fut.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - the handle's answer; the run decides what it means
                    fut.set_exception(exc)
                if self._work.empty():  # idle: its sandbox child goes back to the spares, for whichever thread works next
                    release_thread_sandbox()
        finally:
            release_thread_sandbox()

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], key: str, priority: int, annotations: dict[str, Any]) -> Future:
        return self._put(priority, fn, args)

    def submit_graph(self, dsk: dict[Hashable, Any], keys: list[Hashable], priority: int, annotations: dict[str, Any]) -> list[Future]:
        """The graph's first key runs as one job of a worker thread; the other keys' handles finish as their tasks do."""
        if self._chunks is None:
            self._chunks = _ChunkPool(self.slots, thread_name_prefix="metaextract-chunks")
        watched: dict[Hashable, Future] = {k: Future() for k in keys[1:]}
        for fut in watched.values():
            fut.add_done_callback(self._notify)
            fut.set_running_or_notify_cancel()
        final = self._put(priority, _run_graph, (dsk, keys[0], watched, self._chunks))
        return [final, *watched.values()]

    def result(self, handle: Future) -> Any:
        return handle.result()

    def cancel(self, handles: list[Any]) -> None:
        for fut in handles:
            if not fut.cancel() and not fut.done():
                self.abandoned = True
                self._notify(fut)  # running: the run stops waiting for it now

    def release(self, handle: Any) -> None:
        pass

    def report(self, event: dict[str, Any]) -> None:
        self.stats.apply(event)

    def metrics(self, run: str, seconds: float) -> ParallelMetrics:
        return ParallelMetrics.from_snapshot(self.stats.snapshot(), seconds)

    def close(self, wait: bool) -> None:
        """Stop the threads; ``wait``: until each has ended (and its sandbox child with it)."""
        for _ in self._threads:
            self._work.put((float("inf"), next(self._order), None, None, None))
        if self._chunks is not None:  # waited for: its threads' sandbox children are then found ended (sandbox._sweep)
            self._chunks.shutdown(wait=wait and not self.abandoned, cancel_futures=True)
        if wait and not self.abandoned:
            for thread in self._threads:
                thread.join()


class _ChunkPool(ThreadPoolExecutor):
    """The chunk tasks' threads: each task hands its thread's sandbox child back when it ends, for the next task on
    any thread or the next job of a worker thread (else each chunk thread kept a child of its own: a scan with one
    large file among small ones started four children on two cores, where two serve)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return super().submit(_then_release, fn, *args, **kwargs)


def _then_release(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    finally:
        release_thread_sandbox()


def _run_graph(dsk: dict[Hashable, Any], final: Hashable, watched: dict[Hashable, Future], pool: ThreadPoolExecutor) -> Any:
    """One file's graph on ``dask.threaded``; each watched key's handle gets its task's value as it finishes."""
    import dask.threaded
    from dask.callbacks import Callback

    def posttask(key: Hashable, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        fut = watched.get(key)
        if fut is not None and not fut.done():
            fut.set_result(result)

    try:
        if len(dsk) == 1 and not watched:
            fn, *args = dsk[final]
            return fn(*args)
        release_thread_sandbox()  # this thread only waits for the chunk tasks: its child serves one of them meanwhile
        return dask.threaded.get(dsk, final, callbacks=[Callback(posttask=posttask)._callback], pool=pool)  # type: ignore[arg-type]
    finally:
        for fut in watched.values():
            if not fut.done() and not fut.cancel():
                fut.set_exception(RuntimeError("the file's graph ended before this task ran"))


class OnClient:
    """A ``distributed.Client``: work goes to its scheduler, outcomes to the metrics plugin there.

    ``metrics=False`` (one file's extraction, which has its own ``StreamingMetrics``) leaves the user's
    scheduler as it is: no plugin registered, no events logged.
    """

    batches_report = True

    def __init__(self, client: Any, metrics: bool = True):
        self.client, self.counted = client, metrics
        self.slots = sum(client.nthreads().values()) or 1

    def start(self, run: str, notify: Notify) -> None:
        from ..diagnostics.plugin import ensure_plugin

        if self.counted:
            ensure_plugin(self.client)
        self._notify = notify

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], key: str, priority: int, annotations: dict[str, Any]) -> Any:
        import dask

        with dask.annotate(metaextract=annotations):
            fut = self.client.submit(fn, *args, key=key, priority=priority, pure=False)
        fut.add_done_callback(self._notify)
        return fut

    def submit_graph(self, dsk: dict[Hashable, Any], keys: list[Hashable], priority: int, annotations: dict[str, Any]) -> list[Any]:
        import dask

        with dask.annotate(metaextract=annotations):
            futures = self.client.get(dsk, keys, sync=False, priority=priority)
        for fut in futures:
            fut.add_done_callback(self._notify)
        return list(futures)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handles: list[Any]) -> None:
        self.client.cancel(handles)

    def release(self, handle: Any) -> None:
        handle.release()

    def report(self, event: dict[str, Any]) -> None:
        if self.counted:
            self.client.log_event(EVENT_TOPIC, event)

    def metrics(self, run: str, seconds: float) -> ParallelMetrics:
        from ..diagnostics.plugin import fetch_snapshot

        return ParallelMetrics.from_snapshot(fetch_snapshot(self.client, run) if self.counted else None, seconds)


@contextlib.contextmanager
def executor_for(scope: ClientScope | None, on_client: Callable[[Any], Any] | None, slots: int | None,
                 metrics: bool = True) -> Iterator[Executor]:
    """The executor of a run: ``Threads`` without a ``scope`` (LOCAL with nothing given), else the scope's Client.

    ``on_client`` is told the Client once it is up (the CLI prints the dashboard link); ``metrics``: whether a
    Client's scheduler counts the run (``OnClient``).
    """
    if scope is None:
        threads = Threads(slots or os.cpu_count() or 1)
        finished = False
        try:
            yield threads
            finished = True
        finally:
            threads.close(wait=finished)
        return
    with scope as client:
        if getattr(client, "asynchronous", False):
            raise TypeError("extract() needs a synchronous Client; use 'await extract_parallel()' with an asynchronous one")
        if on_client is not None:
            on_client(client)
        with client.as_current():  # distributed.wait looks up the current client
            yield OnClient(client, metrics)

