"""Plan -> a low-level Dask task dictionary.

Graphs are plain dicts of tuples: no HighLevelGraph, no optimisation pass,
because per-task scheduling cost dominates (benchmarks/RESULTS.md). Keys are named so
the dashboard groups them: ``read-chunk``, ``merge-chunks``, ``finalize-file``.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any, Hashable

from .config import StreamingConfig
from .errors import ExtractionError, ExtractionTimeout, FileChangedError, MetaExtractError, describe, io_error
from .model import ChunkSpec, FileInfo
from .readers.base import State, StreamChunkReader
from .strategies import MERGE_FANIN, Plan

#: private field of a single-task result carrying per-chunk summaries for callbacks
CHUNK_SUMMARIES = "_chunk_summaries"


@dataclass(frozen=True)
class Failed:
    """A chunk task's failure, passed along as a value.

    A raising task makes every Dask worker log a traceback, although a bad
    file is an expected outcome; a ``Failed`` travels through the merges to
    the final key and the client raises its error there.
    """

    error: BaseException


def first_failure(values: Any) -> Failed | None:
    """The first ``Failed`` among task results, if any."""
    return next((v for v in values if isinstance(v, Failed)), None)


def unwrap(result: Any) -> Any:
    """A final key's value, or its failure raised."""
    if isinstance(result, Failed):
        raise result.error
    return result


@dataclass
class FileGraph:
    """One file's task dictionary and the keys a client asks for."""

    dsk: dict[Hashable, Any]
    final_key: Hashable
    read_keys: dict[Hashable, ChunkSpec]
    reader: StreamChunkReader


def _check_deadline(deadline: float | None, path: str) -> None:
    if deadline is not None and time.time() > deadline:
        raise ExtractionTimeout(path, "timed out: the file took longer than its timeout")


def read_one_chunk(reader: StreamChunkReader, spec: ChunkSpec, config: StreamingConfig, deadline: float | None) -> State:
    """Read and summarize one chunk; every error names the file and the chunk."""
    _check_deadline(deadline, spec.path)
    try:
        return reader.summarize(spec, config)
    except MetaExtractError:
        raise
    except OSError as exc:
        raise io_error(spec.path, exc, f"reading chunk {spec.chunk_id} at byte {spec.offset} failed") from exc
    except Exception as exc:
        raise ExtractionError(spec.path, f"chunk {spec.chunk_id} ({spec.chunk_type.value}) could not be read: {describe(exc)}") from exc


def run_chunk(reader: StreamChunkReader, spec: ChunkSpec, config: StreamingConfig, deadline: float | None, *after: Any) -> State | Failed:
    """One chunk task. ``after`` holds the results it must wait for: a failure there stops the chain."""
    failed = first_failure(after)
    if failed is not None:
        return failed
    try:
        return read_one_chunk(reader, spec, config, deadline)
    except Exception as exc:  # noqa: BLE001 - a failure is this file's result, not a worker's error
        return Failed(exc)


def run_chunk_isolated(memory_limit: int, reader: StreamChunkReader, spec: ChunkSpec, config: StreamingConfig,
                       deadline: float | None, *after: Any) -> State | Failed:
    """A chunk task of a native reader, read in this worker thread's sandbox:
    a libhdf5 crash on a hostile large file costs that file, not the worker."""
    failed = first_failure(after)
    if failed is not None:
        return failed
    try:
        return in_sandbox(memory_limit, spec.path, deadline, config, read_one_chunk, reader, spec, config, deadline)
    except Exception as exc:  # noqa: BLE001
        return Failed(exc)


def run_single_task(memory_limit: int | None, reader: StreamChunkReader, info: FileInfo, config: StreamingConfig,
                    plan: dict[str, Any], specs: tuple[ChunkSpec, ...], deadline: float | None) -> dict[str, Any] | Failed:
    """``run_single`` as a graph task (in this worker thread's sandbox when ``memory_limit``)."""
    try:
        if memory_limit is not None:
            return in_sandbox(memory_limit, info.path, deadline, config, run_single, reader, info, config, plan, specs, deadline)
        return run_single(reader, info, config, plan, specs, deadline)
    except Exception as exc:  # noqa: BLE001
        return Failed(exc)


def in_sandbox(memory_limit: int, path: str, deadline: float | None, config: StreamingConfig, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in this thread's sandbox, with what is left of the file's time."""
    from .sandbox import sandbox_for_thread

    _check_deadline(deadline, path)
    timeout = deadline - time.time() if deadline is not None else config.timeout
    return sandbox_for_thread(memory_limit).call(path, timeout, fn, *args)


def merge_states(reader: StreamChunkReader, states: list[State]) -> State | Failed:
    """A merge task: fold summaries with the reader's associative merge."""
    failed = first_failure(states)
    if failed is not None:
        return failed
    try:
        return functools.reduce(reader.merge, states)
    except Exception as exc:  # noqa: BLE001
        return Failed(ExtractionError(None, f"merging the {reader.name} reader's chunk summaries failed: {describe(exc)}"))


def finalize_task(reader: StreamChunkReader, info: FileInfo, config: StreamingConfig, plan: dict[str, Any],
                  states: list[State]) -> dict[str, Any] | Failed:
    """The final task of a chunk graph: the record, or the file's failure as a value."""
    failed = first_failure(states)
    if failed is not None:
        return failed
    try:
        return finalize_file(reader, info, config, plan, states)
    except Exception as exc:  # noqa: BLE001
        return Failed(exc)


def finalize_file(reader: StreamChunkReader, info: FileInfo, config: StreamingConfig, plan: dict[str, Any], states: list[State]) -> dict[str, Any]:
    """Merge, check the file did not change, build the record."""
    state = unwrap(merge_states(reader, states))
    try:
        st = os.stat(info.path)
    except OSError as exc:
        raise FileChangedError(info.path, f"file disappeared while being read: {describe(exc)}") from exc
    if st.st_size != info.size or st.st_mtime != info.mtime:
        raise FileChangedError(info.path, f"file changed while being read (size {info.size} -> {st.st_size} bytes)")
    try:
        body = reader.finalize(state, info, config)
    except MetaExtractError:
        raise
    except Exception as exc:
        raise ExtractionError(info.path, f"could not assemble metadata: {describe(exc)}") from exc
    return {
        "path": info.path,
        "size": info.size,
        "mtime": info.mtime,
        "format": info.format,
        "reader": reader.name,
        **body,
        "streaming": plan,
    }


def run_single(reader: StreamChunkReader, info: FileInfo, config: StreamingConfig, plan: dict[str, Any], specs: tuple[ChunkSpec, ...], deadline: float | None) -> dict[str, Any]:
    """The whole file in one task (small files): every chunk, merge, finalize."""
    _check_deadline(deadline, info.path)
    try:
        states = reader.summarize_all(specs, config)
    except MetaExtractError:
        raise
    except OSError as exc:
        raise io_error(info.path, exc, "could not be read") from exc
    except Exception as exc:
        raise ExtractionError(info.path, f"could not be read: {describe(exc)}") from exc
    record = finalize_file(reader, info, config, plan, states)
    record[CHUNK_SUMMARIES] = [reader.public_summary(s) for s in states]
    return record


def build_graph(plan: Plan, reader: StreamChunkReader, config: StreamingConfig, deadline: float | None = None,
                isolate: int | None = None) -> FileGraph:
    """The task dictionary for one file's plan.

    ``isolate``: a memory limit; chunk tasks of a native reader then run in
    the worker thread's sandbox (``None``: in the worker itself).
    """
    token = uuid.uuid4().hex[:16]
    final_key = f"finalize-file-{token}"
    described = plan.describe()
    sandboxed = isolate is not None and reader.native
    dsk: dict[Hashable, Any] = {}
    if plan.shape == "single":
        dsk[final_key] = (run_single_task, isolate if sandboxed else None, reader, plan.info, config, described, plan.specs, deadline)
        return FileGraph(dsk, final_key, {}, reader)

    read = f"read-chunk-{token}"
    read_keys: dict[Hashable, ChunkSpec] = {}
    lag = {"chain": 1, "window": plan.window}.get(plan.shape)
    for i, spec in enumerate(plan.specs):
        key = (read, i)
        after = ((read, i - lag),) if lag and i >= lag else ()
        if sandboxed and reader.native_spec(spec):
            dsk[key] = (run_chunk_isolated, isolate, reader, spec, config, deadline, *after)
        else:
            dsk[key] = (run_chunk, reader, spec, config, deadline, *after)
        read_keys[key] = spec

    leaves: list[Hashable] = list(read_keys)
    if plan.shape != "star":
        leaves = _tree_reduce(dsk, leaves, reader, f"merge-chunks-{token}")
    dsk[final_key] = (finalize_task, reader, plan.info, config, described, leaves)
    return FileGraph(dsk, final_key, read_keys, reader)


def _tree_reduce(dsk: dict[Hashable, Any], keys: list[Hashable], reader: StreamChunkReader, name: str) -> list[Hashable]:
    """Add merge levels until at most MERGE_FANIN keys remain; return them."""
    level = 0
    while len(keys) > MERGE_FANIN:
        merged: list[Hashable] = []
        for j in range(0, len(keys), MERGE_FANIN):
            key = (name, level, j // MERGE_FANIN)
            dsk[key] = (merge_states, reader, keys[j : j + MERGE_FANIN])
            merged.append(key)
        keys, level = merged, level + 1
    return keys
