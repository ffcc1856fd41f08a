"""Plans: which chunks of a file are read, at what size, in what shape.

A plan is plain data, so the planner is tested without Dask. The graph
builder (graph.py) turns it into tasks.

The shapes are ``core.model.Shape``; ``plan_path`` is the one way every
caller (one file, a batch, the run's large files) gets a file's plan.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..core.errors import CorruptFileError, MetaExtractError, describe
from ..core.model import ChunkSpec, ChunkType, FileInfo, Shape
from ..core.pin import pinned
from ..core.settings import StreamingConfig, StreamingStrategy
from ..readers.base import StreamChunkReader
from ..readers.probe import probe
from ..readers.registry import choose_reader, may_parse_natively
from ..storage.remote import counting, remember_size, using
from ..storage.urls import is_url

if TYPE_CHECKING:
    from ..sandbox import Isolation

#: the private key of ``Plan.describe()`` (and of chunk summaries) carrying (requests, bytes) fetched; the
#: record's ``io`` section is made from it (``planning.tasks.finalize_file``)
IO_KEY = "_io"

#: inputs per merge task in tree reductions
MERGE_FANIN = 8


@dataclass(frozen=True)
class Plan:
    """Which chunks one file's graph reads, and how the reads depend on each other."""

    info: FileInfo
    reader: str
    requested: StreamingStrategy
    strategy: StreamingStrategy
    shape: Shape
    chunk_size: int
    chunk_size_grown: bool
    chunks_total: int
    specs: tuple[ChunkSpec, ...]
    window: int = 1
    note: str | None = None
    #: (requests, bytes) fetched from a remote store to probe and plan the file
    io: tuple[int, int] = (0, 0)

    @property
    def bytes_planned(self) -> int:
        return sum(s.size for s in self.specs)

    @property
    def full_scan(self) -> bool:
        """True when every chunk of the file is read."""
        return len(self.specs) == self.chunks_total

    @property
    def task_count(self) -> int:
        """Tasks in this file's graph, merges included."""
        if self.shape is Shape.SINGLE:
            return 1
        if self.shape is Shape.STAR:
            return len(self.specs) + 1
        return len(self.specs) + merge_task_count(len(self.specs))

    def describe(self) -> dict[str, Any]:
        """The ``streaming`` section of the file's metadata."""
        return {
            "requested_strategy": self.requested.value,
            "strategy": self.strategy.value,
            "shape": self.shape.value,
            "chunk_size": self.chunk_size,
            "chunk_size_grown": self.chunk_size_grown,
            "chunks_total": self.chunks_total,
            "chunks_read": len(self.specs),
            "bytes_read": self.bytes_planned,
            "tasks": self.task_count,
            "window": self.window if self.shape is Shape.WINDOW else None,
            "exact": self.full_scan,
            "note": self.note,
            IO_KEY: self.io,
        }


def merge_task_count(n: int, fanin: int = MERGE_FANIN) -> int:
    """Merge tasks (the final one included) of a tree reduction over n inputs."""
    count = 1
    while n > fanin:
        n = -(-n // fanin)
        count += n
    return count


def max_reads(cap: int, fanin: int = MERGE_FANIN) -> int:
    """The most chunk reads whose graph, merges included, stays within cap tasks."""
    n = cap - 1
    while n > 1 and n + merge_task_count(n, fanin) > cap:
        n -= 1
    return max(n, 1)


def resolve(strategy: StreamingStrategy, size: int, config: StreamingConfig) -> tuple[StreamingStrategy, Shape]:
    """(concrete strategy, shape) for a file of this size."""
    if strategy is StreamingStrategy.ADAPTIVE:
        if size < config.streaming_threshold:
            return StreamingStrategy.SEQUENTIAL, Shape.SINGLE
        if size <= config.large_file_threshold:
            return StreamingStrategy.WINDOWED, Shape.WINDOW
        return StreamingStrategy.SAMPLE_BASED, Shape.STAR
    return strategy, {
        StreamingStrategy.SEQUENTIAL: Shape.CHAIN,
        StreamingStrategy.WINDOWED: Shape.WINDOW,
        StreamingStrategy.SAMPLE_BASED: Shape.STAR,
    }[strategy]


def sample_indices(chunks: Sequence[ChunkSpec], count: int) -> list[int]:
    """Header, footer, every METADATA chunk, and ``count`` evenly spaced others."""
    n = len(chunks)
    if n <= count + 2:
        return list(range(n))
    picked = {0, n - 1}
    if count == 1:
        picked.add(n // 2)
    elif count > 1:
        picked.update(1 + round(j * (n - 3) / (count - 1)) for j in range(count))
    meta = getattr(chunks, "metadata_indices", None)  # lazy layouts say it without materialising
    if meta is None:
        meta = [i for i, s in enumerate(chunks) if s.chunk_type is ChunkType.METADATA]
    picked.update(meta)
    return sorted(picked)


def read_layout(reader: StreamChunkReader, info: FileInfo, chunk_size: int, metadata_only: bool = False) -> Sequence[ChunkSpec]:
    """The reader's layout (of a metadata-only read: its metadata chunks), any failure a clear error for this file."""
    try:
        return reader.metadata_layout(info, chunk_size) if metadata_only else reader.layout(info, chunk_size)
    except MetaExtractError:
        raise
    except Exception as exc:
        raise CorruptFileError(info.path, f"the {reader.name} reader cannot read its layout: {describe(exc)}") from exc


def plan_file(info: FileInfo, reader: StreamChunkReader, config: StreamingConfig, note: str | None = None) -> Plan:
    """Plan one file: resolve the strategy, grow the chunk size to respect the cap."""
    strategy, shape = resolve(config.strategy, info.size, config)
    if shape is not Shape.SINGLE and not config.metadata_only and reader.one_pass(info):
        strategy, shape = StreamingStrategy.SEQUENTIAL, Shape.SINGLE
        note = "; ".join(filter(None, [note, "read in one pass, in one task: a compressed stream reads only from its start"]))
    chunk_size = reader.chunk_size(config.chunk_size)
    layout = read_layout(reader, info, chunk_size, config.metadata_only)
    grown = False
    if config.metadata_only:
        specs = tuple(layout)
        shape = Shape.SINGLE if len(specs) == 1 else Shape.STAR
        note = "; ".join(filter(None, [note, "metadata only: structure and attributes, no statistics"]))
    elif shape in (Shape.CHAIN, Shape.WINDOW):
        limit = max_reads(config.max_tasks_per_file)
        while len(layout) > limit:
            chunk_size = reader.chunk_size(max(chunk_size * 2, -(-info.size // limit)))
            layout = read_layout(reader, info, chunk_size)
            grown = True
        specs = tuple(layout)
    elif shape is Shape.STAR:
        count = min(config.sample_count, config.max_tasks_per_file - 3)
        specs = tuple(layout[i] for i in sample_indices(layout, count))
    else:
        specs = tuple(layout)
    if info.etag is not None and not any(s.identity for s in specs):
        specs = tuple(replace(s, identity=info.etag) for s in specs)
    return Plan(
        info=info,
        reader=reader.name,
        requested=config.strategy,
        strategy=strategy,
        shape=shape,
        chunk_size=chunk_size,
        chunk_size_grown=grown,
        chunks_total=len(layout),
        specs=specs,
        window=config.window_size,
        note=note,
    )


def plan_path(path: str | os.PathLike[str], config: StreamingConfig, reader_name: str | None = None,
              isolation: Isolation | None = None, deadline: float | None = None) -> tuple[Plan, StreamChunkReader]:
    """Probe, choose the reader, plan: (plan, reader) for one file, the one way every caller plans.

    With ``isolation`` on, a file a native library would open (the HDF5
    guard, a native reader's layout) is chosen and planned in this thread's
    sandbox; the probe (a stat and the first bytes) runs here.
    """
    with using(config.storage_options, config.timeout), counting() as count:
        info = probe(path)
    if isolation is not None and isolation.enabled and may_parse_natively(info, reader_name):
        from ..sandbox import in_isolation

        plan, reader = in_isolation(isolation, info.path, deadline, config, choose_and_plan, info, config, reader_name)
    else:
        plan, reader = choose_and_plan(info, config, reader_name)
    return (replace(plan, io=add_io(plan.io, count.as_tuple())) if count.requests else plan), reader


def add_io(*counts: tuple[int, int] | None) -> tuple[int, int]:
    """The sum of (requests, bytes) pairs (None counts nothing)."""
    return sum(c[0] for c in counts if c), sum(c[1] for c in counts if c)


def choose_and_plan(info: FileInfo, config: StreamingConfig, reader_name: str | None = None) -> tuple[Plan, StreamChunkReader]:
    if is_url(info.path):
        remember_size(info.path, info.size)
    with using(config.storage_options, config.timeout), counting() as count, pinned(info.path, info.etag):
        info, reader, note = choose_reader(info, config, reader_name)
        plan = plan_file(info, reader, config, note)
    return (replace(plan, io=count.as_tuple()) if count.requests else plan), reader
