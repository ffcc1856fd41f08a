"""Extract one file as a Dask graph (the seed's streaming framework).

The graph runs on a ``distributed.Client`` when one is given or current, and
on Dask's local threaded scheduler otherwise. Progress callbacks run on the
client as chunk tasks finish and see each chunk's summary, never its bytes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..core.errors import ExtractionError, ExtractionTimeout, MetaExtractError, describe
from ..core.model import StreamChunk
from ..core.settings import StreamingConfig
from ..planning.graph import FileGraph, build_graph, run_local
from ..planning.plan import Plan, plan_path
from ..planning.tasks import CHUNK_SUMMARIES, Failed, unwrap
from ..sandbox import Isolation
from ..storage.urls import local_path

Callback = Callable[[StreamChunk, "StreamingMetrics"], Any]


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
    client if there is one, otherwise Dask's local threaded scheduler.
    """

    def __init__(self, config: StreamingConfig | None = None, client: Any | None = None, reader: str | None = None):
        self.config = config or StreamingConfig()
        self.client = client
        self.reader = reader

    def plan(self, path: str | os.PathLike) -> Plan:
        """What would be read, without reading it."""
        return plan_path(path, self.config, self.reader)[0]

    def graph(self, path: str | os.PathLike, deadline: float | None = None,
              isolation: Isolation | None = None) -> tuple[Plan, FileGraph]:
        """The plan and its task dictionary, for inspection or custom execution.

        With ``isolation`` on, a native reader (h5py, netCDF4) plans in this
        thread's sandbox, since planning opens the file, and its chunk tasks
        read in the workers' sandboxes: a file that crashes the library costs
        that file, never this process or a worker.
        """
        isolation = isolation or Isolation.off()
        plan, reader = plan_path(path, self.config, self.reader, isolation, deadline)
        return plan, build_graph(plan, reader, self.config, deadline, isolation)

    def extract(self, path: str | os.PathLike, callback: Callback | None = None) -> tuple[dict[str, Any], StreamingMetrics]:
        """Extract synchronously: (metadata, metrics)."""
        path = local_path(path)
        deadline = time.time() + self.config.timeout
        plan, fg = self.graph(path, deadline)
        metrics = StreamingMetrics(path, plan.strategy.value, len(plan.specs), plan.bytes_planned, shape=plan.shape.value)
        client = self.client or current_client()
        try:
            if client is None:
                record = _run_local(fg, metrics, callback)
            else:
                record = _run_distributed(client, fg, metrics, callback, deadline)
        except MetaExtractError:
            raise
        except Exception as exc:
            raise ExtractionError(path, describe(exc)) from exc
        _finish(record, plan, metrics, callback)
        return record, metrics

    async def extract_streaming(self, path: str | os.PathLike, callback: Callback | None = None) -> tuple[dict[str, Any], StreamingMetrics]:
        """Extract asynchronously: (metadata, metrics)."""
        client = self.client or current_client()
        if client is not None and getattr(client, "asynchronous", False):
            return await self._extract_async_client(client, local_path(path), callback)
        return await asyncio.to_thread(self.extract, path, callback)

    async def _extract_async_client(self, client: Any, path: str, callback: Callback | None):
        from distributed import as_completed

        deadline = time.time() + self.config.timeout
        plan, fg = self.graph(path, deadline)
        metrics = StreamingMetrics(path, plan.strategy.value, len(plan.specs), plan.bytes_planned, shape=plan.shape.value)
        keys = [fg.final_key, *fg.read_keys] if callback else [fg.final_key]
        futures = dict(zip(keys, client.get(fg.dsk, keys, sync=False)))
        try:
            if callback:
                async for fut in as_completed([futures[k] for k in fg.read_keys], loop=client.loop):
                    _on_chunk(fg.read_keys[fut.key], _public(fg, await fut), metrics, callback)
            record = unwrap(await asyncio.wait_for(futures[fg.final_key], max(0.0, deadline - time.time())))
        except asyncio.TimeoutError:
            raise ExtractionTimeout(path, f"timed out after {self.config.timeout:g} s") from None
        except MetaExtractError:
            raise
        except Exception as exc:
            raise ExtractionError(path, describe(exc)) from exc
        finally:
            await client.cancel(list(futures.values()))
        _finish(record, plan, metrics, callback)
        return record, metrics


def _public(fg: FileGraph, state: Any) -> dict[str, Any]:
    """What a callback sees of a chunk's summary (of a failed read: the error)."""
    if isinstance(state, Failed):
        return {"error": describe(state.error)}
    return fg.reader.public_summary(state)


def _on_chunk(spec: Any, summary: dict[str, Any], metrics: StreamingMetrics, callback: Callback | None) -> None:
    """Count one finished chunk and tell the user's callback."""
    metrics.record(spec.size)
    if callback is not None:
        callback(StreamChunk.from_spec(spec, summary), metrics)


def _run_local(fg: FileGraph, metrics: StreamingMetrics, callback: Callback | None) -> dict[str, Any]:
    """Run here; chunk callbacks fire as tasks finish."""
    from dask.callbacks import Callback as DaskCallback

    class _Progress(DaskCallback):
        def _posttask(self, key, result, dsk, state, worker_id):
            spec = fg.read_keys.get(key)
            if spec is not None:
                _on_chunk(spec, _public(fg, result) if callback else {}, metrics, callback)

    return unwrap(run_local(fg, [_Progress()._callback] if fg.read_keys else None))


def _run_distributed(client: Any, fg: FileGraph, metrics: StreamingMetrics, callback: Callback | None, deadline: float) -> dict[str, Any]:
    """Run on a distributed Client; chunk summaries travel only if a callback wants them."""
    from distributed import as_completed

    keys = [fg.final_key, *fg.read_keys] if callback else [fg.final_key]
    futures = dict(zip(keys, client.get(fg.dsk, keys, sync=False)))
    path = metrics.file_path
    try:
        if callback:
            for fut in as_completed([futures[k] for k in fg.read_keys], loop=client.loop):
                _on_chunk(fg.read_keys[fut.key], _public(fg, fut.result()), metrics, callback)
        try:
            return unwrap(futures[fg.final_key].result(timeout=max(0.0, deadline - time.time())))
        except TimeoutError:
            raise ExtractionTimeout(path, "timed out: the file took longer than its timeout") from None
    finally:
        client.cancel(list(futures.values()))


def _finish(record: dict[str, Any], plan: Plan, metrics: StreamingMetrics, callback: Callback | None) -> None:
    """Close the metrics; replay single-task chunk summaries to the callback."""
    summaries = record.pop(CHUNK_SUMMARIES, None)
    if summaries is not None:
        for spec, summary in zip(plan.specs, summaries):
            _on_chunk(spec, summary, metrics, callback)
    metrics.chunks_processed = len(plan.specs)
    metrics.bytes_processed = plan.bytes_planned
    metrics.end_time = time.perf_counter()


async def extract_with_streaming(path: str | os.PathLike, config: StreamingConfig | None = None, callback: Callback | None = None, client: Any | None = None) -> tuple[dict[str, Any], StreamingMetrics]:
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
