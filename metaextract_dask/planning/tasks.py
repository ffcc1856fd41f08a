"""The functions a file's graph runs: read a chunk, merge summaries, finalize the record.

Every path of one file goes through these: the single task of a small file,
the chunk graph of a large one, the batch of many small files (which calls
``run_single``). Only the graph around them differs (``planning/graph.py``).
A failure travels as a ``Failed`` value to the final key, where the caller
raises it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..core.errors import ExtractionError, FileChangedError, MetaExtractError, describe, io_error
from ..core.model import ChunkSpec, FileInfo, RecordHead
from ..core.pin import is_identity, pinned
from ..core.settings import StreamingConfig
from ..readers.base import State, StreamChunkReader
from ..sandbox import Isolation, check_deadline, in_isolation
from ..storage.remote import counting, stat_now, using
from ..storage.urls import is_url
from .plan import IO_KEY, add_io

#: the record's keys that only the framework fills: a reader's section can never replace them
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


def read_one_chunk(reader: StreamChunkReader, spec: ChunkSpec, config: StreamingConfig, deadline: float | None) -> State:
    """Read and summarize one chunk; every error names the file and the chunk."""
    check_deadline(deadline, spec.path)
    try:
        with using(config.storage_options, config.timeout), counting() as count, pinned(spec.path, spec.identity):
            state = reader.summarize(spec, config)
        if isinstance(state, dict) and count.requests:
            state[IO_KEY] = count.as_tuple()
        return state
    except MetaExtractError:
        raise
    except OSError as exc:
        raise io_error(spec.path, exc, f"reading chunk {spec.chunk_id} at byte {spec.offset} failed") from exc
    except Exception as exc:
        raise ExtractionError(spec.path, f"chunk {spec.chunk_id} ({spec.chunk_type.value}) could not be read: {describe(exc)}") from exc


def run_chunk(isolation: Isolation, reader: StreamChunkReader, spec: ChunkSpec, config: StreamingConfig, deadline: float | None,
              *after: Any) -> State | Failed:
    """One chunk task. ``after`` holds the results it must wait for: a failure there stops the chain.

    ``isolation`` is on only for chunks that run a native library: a
    libhdf5 crash on a hostile large file then costs that file, not the worker.
    """
    failed = first_failure(after)
    if failed is not None:
        return failed
    try:
        state: State = in_isolation(isolation, spec.path, deadline, config, read_one_chunk, reader, spec, config, deadline)
        return state
    except Exception as exc:  # noqa: BLE001 - a failure is this file's result, not a worker's error
        return Failed(exc)


def run_single_task(isolation: Isolation, reader: StreamChunkReader, info: FileInfo, config: StreamingConfig,
                    plan: dict[str, Any], specs: tuple[ChunkSpec, ...], deadline: float | None) -> dict[str, Any] | Failed:
    """``run_single`` as a graph task."""
    try:
        record: dict[str, Any] = in_isolation(isolation, info.path, deadline, config, run_single, reader, info, config, plan, specs,
                                              deadline)
        return record
    except Exception as exc:  # noqa: BLE001
        return Failed(exc)


def merge_states(reader: StreamChunkReader, states: list[State]) -> State | Failed:
    """A merge task: fold summaries with the reader's associative merge."""
    failed = first_failure(states)
    if failed is not None:
        return failed
    try:
        fetched = add_io(*(s.pop(IO_KEY, None) for s in states if isinstance(s, dict)))
        merged = functools.reduce(reader.merge, states)
        if fetched[0] and isinstance(merged, dict):
            merged[IO_KEY] = fetched
        return merged
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
    """Merge, check the file did not change, build the record: the framework's keys, then the reader's section."""
    state = unwrap(merge_states(reader, states))
    plan = dict(plan)
    fetched = add_io(plan.pop(IO_KEY, None), state.pop(IO_KEY, None) if isinstance(state, dict) else None)
    with using(config.storage_options, config.timeout), counting() as count, pinned(info.path, info.etag):
        try:
            sections = reader.record(state, info, config)
        except MetaExtractError:
            raise
        except Exception as exc:
            raise ExtractionError(info.path, f"could not assemble metadata: {describe(exc)}") from exc
        check_unchanged(info)
    io = None
    if is_url(info.path):
        requests, nbytes = add_io(fetched, count.as_tuple())
        io = {"requests": requests, "bytes_read": nbytes, "fraction_read": round(nbytes / info.size, 6) if info.size else None}
    head = RecordHead(info.path, info.size, info.mtime, info.format, reader.name, str(getattr(reader, "version", "1")), info.etag,
                      info.version, plan, io)
    return head.record(sections)


def check_unchanged(info: FileInfo) -> None:
    """Refuse a record of a file that changed while it was read: its size, and its identity (a local file's inode and
    change time, a remote object's ETag) when the probe had one, else its mtime."""
    what = "object" if is_url(info.path) else "file"
    try:
        now = stat_now(info.path, info.etag)
    except (OSError, MetaExtractError) as exc:
        raise FileChangedError(info.path, f"{what} disappeared while being read: {describe(exc)}") from exc
    if now.size != info.size:
        raise FileChangedError(info.path, f"{what} changed while being read (size {info.size} -> {now.size} bytes)")
    if (now.etag != info.etag) if info.etag is not None else (now.mtime != info.mtime):
        why = "its inode or change time differs" if is_identity(info.etag) else "its ETag or mtime differs"
        raise FileChangedError(info.path, f"{what} changed while being read ({why})")


def run_single(reader: StreamChunkReader, info: FileInfo, config: StreamingConfig, plan: dict[str, Any], specs: tuple[ChunkSpec, ...], deadline: float | None) -> dict[str, Any]:
    """The whole file in one task (small files): every chunk, merge, finalize."""
    check_deadline(deadline, info.path)
    if is_url(info.path):
        from ..storage.remote import remember_size

        remember_size(info.path, info.size)
    try:
        with using(config.storage_options, config.timeout), counting() as count, pinned(info.path, info.etag):
            states = reader.summarize_all(specs, config)
        if states and isinstance(states[0], dict) and count.requests:
            states[0][IO_KEY] = count.as_tuple()
    except MetaExtractError:
        raise
    except OSError as exc:
        raise io_error(info.path, exc, "could not be read") from exc
    except Exception as exc:
        raise ExtractionError(info.path, f"could not be read: {describe(exc)}") from exc
    record = finalize_file(reader, info, config, plan, states)
    record[CHUNK_SUMMARIES] = [reader.public_summary(s) for s in states]
    return record
