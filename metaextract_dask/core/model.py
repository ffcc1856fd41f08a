"""Plain data passed between planner, graph, workers and client.

Everything here is small and picklable: chunk tasks carry a ``ChunkSpec``
(never an open handle) and return a summary, never the chunk's bytes.
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Hashable


class ChunkType(enum.Enum):
    """What part of a file a chunk is (the seed's names)."""

    HEADER = "header"
    SECTION = "section"
    FRAME = "frame"
    BLOCK = "block"
    METADATA = "metadata"
    FOOTER = "footer"


class Shape(enum.StrEnum):
    """How one file's chunk reads depend on each other in its graph (not the streaming strategy that chose it)."""

    SINGLE = "single"  # one task reads every chunk (ADAPTIVE, small files)
    CHAIN = "chain"  # chunk i waits for chunk i-1 (SEQUENTIAL)
    WINDOW = "window"  # chunk i waits for chunk i-W (WINDOWED)
    STAR = "star"  # header, footer and K spaced chunks into one merge (SAMPLE_BASED)


@dataclass(frozen=True, slots=True)
class ArrayCells:
    """Cells ``start`` to ``stop`` of one array cut into cells of shape ``cell`` (part of a SECTION chunk)."""

    name: str
    cell: tuple[int, ...]
    start: int
    stop: int


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """A media time range in seconds, ``None`` for the file's start or end (a FRAME chunk)."""

    start: float | None
    end: float | None


#: the format's own address of a chunk: a named part ("tree", "header", a fixity block), the array
#: cells of a section, a media interval; None for plain byte ranges
ChunkKey = str | tuple[ArrayCells, ...] | TimeInterval | None


@dataclass(frozen=True)
class ChunkSpec:
    """One chunk read: what a chunk task is given.

    ``key`` is the format's own address of the chunk (a ``ChunkKey``); a
    plugin may use any hashable value.
    """

    path: str
    chunk_id: int
    chunk_type: ChunkType
    offset: int
    size: int
    key: ChunkKey | Hashable = None
    #: the file's identity when it was probed (``FileInfo.etag``): the chunk task reads that file or none (``pin.pinned``)
    identity: str | None = None


@dataclass
class StreamChunk:
    """A chunk as the seed's callbacks see it.

    In callbacks ``data`` is ``None``: chunk bytes stay on the workers and
    ``metadata`` carries the chunk's summary instead.
    """

    chunk_id: int
    chunk_type: ChunkType
    offset: int
    size: int
    data: bytes | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: ChunkSpec, summary: dict[str, Any] | None = None) -> "StreamChunk":
        return cls(spec.chunk_id, spec.chunk_type, spec.offset, spec.size, None, dict(summary or {}))


@dataclass(frozen=True)
class FileInfo:
    """What a cheap probe learns about a file before any reader runs."""

    path: str
    size: int
    mtime: float
    format: str  # detected type, e.g. "hdf5", "mp4", "unknown"
    description: str = ""  # human words for the detected type
    etag: str | None = None  # the store's ETag of a remote object; a local file's identity (``pin.identity``)
    version: str | None = None  # the store's version id of a remote object, where it keeps versions


_task_ids = itertools.count(1)


@dataclass(order=True)
class ExtractionTask:
    """One file to extract in a batch (seed name).

    Ordering is by ``sort_key`` so a heap pops the highest priority first,
    then the oldest task.
    """

    sort_key: tuple = field(init=False, repr=False)
    task_id: str = field(compare=False, default="")
    file_path: str = field(compare=False, default="")
    priority: int = field(compare=False, default=0)
    retries: int = field(compare=False, default=0)
    created_at: float = field(compare=False, default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.task_id:
            self.task_id = f"task-{next(_task_ids)}"
        self.sort_key = (-self.priority, self.created_at)


@dataclass
class ExtractionResult:
    """The outcome of one file (seed name). A failure is a result too."""

    task_id: str
    file_path: str
    success: bool
    metadata: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    start_time: float = 0.0
    end_time: float = 0.0
    worker: str | None = None
    attempts: int = 1
    #: the detected format, also for failures (filled once, where the outcome is first reported)
    file_format: str | None = None

    @property
    def duration(self) -> float:
        """Seconds between start and end (0 when not timed)."""
        return max(0.0, self.end_time - self.start_time)
