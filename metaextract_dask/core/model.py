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

from .errors import MisattributionError, describe


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

    sort_key: tuple[int, float] = field(init=False, repr=False)
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


def failure(task_id: str, path: str, error: BaseException, start: float, end: float | None = None, attempts: int = 1) -> ExtractionResult:
    """A failed file's result: the error in words, starting with the path, and its type."""
    text = describe(error)
    if not text.startswith(f"{path}: "):
        text = f"{path}: {text}"
    return ExtractionResult(task_id, path, False, None, text, type(error).__name__, start,
                            time.time() if end is None else end, attempts=attempts)


def same_as_walked(result: ExtractionResult, walked: str | None) -> ExtractionResult:
    """The result, or a ``FileChangedError`` failure when its record describes another file than the walk saw.

    ``walked`` is the file's identity when the walk listed it
    (``pin.identity``); the record's ``etag`` is the identity of the file the
    readers read (pinned from the probe on). A name swapped between the two
    (for a link to a file the folder's owner cannot read) gives this
    failure, never that file's metadata.
    """
    from .errors import FileChangedError
    from .pin import is_identity

    md = result.metadata if isinstance(result.metadata, dict) else {}
    if not (result.success and is_identity(walked) and is_identity(md.get("etag"))) or md["etag"] == walked:
        return result
    error = FileChangedError(result.file_path, "replaced between the walk and the read (another inode, or changed): "
                                               "nothing read from it is kept")
    return failure(result.task_id, result.file_path, error, result.start_time, result.end_time, result.attempts)


def check_record(path: str, metadata: Any) -> None:
    """Refuse a record that says it is about another file (a misattributed reply)."""
    if isinstance(metadata, dict) and "path" in metadata and metadata["path"] != path:
        raise MisattributionError(path, f"internal error: the record produced for this file names {metadata['path']!r}; "
                                        "it was refused and nothing was recorded for this file")
