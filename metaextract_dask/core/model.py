"""Plain data passed between planner, graph, workers and client.

Everything here is small and picklable: chunk tasks carry a ``ChunkSpec``
(never an open handle) and return a summary, never the chunk's bytes.
"""

from __future__ import annotations

import enum
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Hashable

from .errors import FileChangedError, MisattributionError, describe
from .pin import is_identity
from .text import safe_text


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


@dataclass(order=True, slots=True)
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
    #: the catalog columns its record fills (``catalog.schema.record_columns``), made where the file was extracted;
    #: None when the client makes them (a record whose references or poster frame the catalog writer moves first)
    columns: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float:
        """Seconds between start and end (0 when not timed)."""
        return max(0.0, self.end_time - self.start_time)


@dataclass
class RowBlock:
    """The successful records of many files, made by one sandbox call or one batch, as catalog columns.

    How a batch's files travel to a catalog: one object instead of a result
    and a record dict per file. Files that need no parser come so from one
    sandbox call (``execution.batch.extract_plain``); parsed files, when the
    run writes a catalog (``BatchSettings.columns``), each from its own call,
    gathered by the batch. ``columns`` holds what
    ``catalog.schema.record_columns`` makes of each record, one list per
    column (None where that record leaves the column empty); the record
    itself is its ``metadata`` JSON. ``variables``: for each file, the rows of
    the catalog's variables table its arrays fill (``catalog.schema.variable_rows``;
    empty when no file has any).
    A record whose reference set or poster frame the catalog writer stores
    first never comes in a block.
    """

    task_ids: list[str]
    paths: list[str]
    columns: dict[str, list[Any]]
    starts: list[float]
    ends: list[float]
    worker: str | None = None
    variables: list[list[dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def of_rows(cls, ids: list[str], paths: list[str], rows: list[dict[str, Any]], starts: list[float], ends: list[float],
                variables: list[list[dict[str, Any]]] | None = None) -> "RowBlock":
        """The block of files whose sparse columns are ``rows`` (one dict each, ``record_columns``'s)."""
        names = {k for row in rows for k in row}
        return cls(ids, paths, {k: [row.get(k) for row in rows] for k in names}, starts, ends,
                   variables=variables if variables is not None and any(variables) else [])

    def __len__(self) -> int:
        return len(self.paths)

    def column(self, name: str) -> list[Any]:
        """One column's values, all None when no record fills it."""
        return self.columns.get(name) or [None] * len(self.paths)

    def result(self, i: int) -> ExtractionResult:
        """File ``i`` as the one result every other file gets (its record read back from the JSON)."""
        import json

        text = self.columns["metadata"][i]
        columns = {k: v[i] for k, v in self.columns.items() if v[i] is not None}
        return ExtractionResult(self.task_ids[i], self.paths[i], True, json.loads(text), start_time=self.starts[i],
                                end_time=self.ends[i], worker=self.worker, file_format=columns.get("format"), columns=columns)

    def results(self) -> list[ExtractionResult]:
        return [self.result(i) for i in range(len(self.paths))]

    def keep(self, indices: list[int]) -> "RowBlock":
        """The block of files ``indices`` only."""
        def pick(values: list[Any]) -> list[Any]:
            return [values[i] for i in indices]

        return RowBlock(pick(self.task_ids), pick(self.paths), {k: pick(v) for k, v in self.columns.items()}, pick(self.starts),
                        pick(self.ends), self.worker, pick(self.variables) if self.variables else [])

    def outcomes(self) -> dict[str, Any]:
        """Its files' outcomes as the scheduler plugin is told them (``execution.batch.outcome``'s keys), a list per
        key (``diagnostics.stats.RunStats.add_block``): every file of a block succeeded, on one worker."""
        return {"path": [safe_text(p) for p in self.paths], "type": [t or "unknown" for t in self.column("format")],
                "bytes": [b or 0 for b in self.column("bytes_read")], "chunks": [c or 0 for c in self.column("chunks_read")],
                "shape": self.column("shape"), "duration": [max(0.0, e - s) for s, e in zip(self.starts, self.ends)],
                "io_requests": [r or 0 for r in self.column("io_requests")], "io_bytes": [b or 0 for b in self.column("io_bytes")],
                "worker": self.worker}


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    """``value`` when it is of ``kind`` (a bool is not a number here), else None."""
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class RecordHead:
    """The framework's part of a file's record: the keys every record has, whichever reader made it.

    Records travel and reach users as dicts (the seed's ``metadata``); the
    run, the metrics and the catalog read these keys through this class,
    typed, not by string. ``of`` reads a record that a plugin or an edited
    catalog may have filled oddly: a value of the wrong type reads as None.
    ``checksum`` is the one key a reader's side fills (fixity).
    """

    path: str
    size: int | None = None
    mtime: float | None = None
    format: str | None = None
    reader: str | None = None
    reader_version: str | None = None
    #: a remote object's ETag, a local file's identity (``pin.identity``)
    etag: str | None = None
    version_id: str | None = None
    #: how the file was read: strategy, shape, chunks and bytes read (``planning.plan.Plan.describe``)
    streaming: dict[str, Any] = field(default_factory=dict)
    #: a remote object's requests and bytes fetched
    io: dict[str, Any] | None = None
    checksum: dict[str, Any] | None = None

    #: the keys a reader's own section cannot replace
    KEYS: ClassVar[frozenset[str]] = frozenset({"path", "size", "mtime", "etag", "version_id", "format", "reader", "reader_version",
                                                 "streaming", "io"})

    @classmethod
    def of(cls, record: Any) -> "RecordHead":
        """The framework's keys of a record (a dict), typed; an empty head for anything else."""
        md = record if isinstance(record, dict) else {}
        mtime = _typed(md.get("mtime"), (int, float))
        return cls(path=_typed(md.get("path"), str) or "", size=_typed(md.get("size"), int),
                   mtime=float(mtime) if mtime is not None else None, format=_typed(md.get("format"), str),
                   reader=_typed(md.get("reader"), str), reader_version=_typed(md.get("reader_version"), str),
                   etag=_typed(md.get("etag"), str), version_id=_typed(md.get("version_id"), str),
                   streaming=_typed(md.get("streaming"), dict) or {}, io=_typed(md.get("io"), dict),
                   checksum=_typed(md.get("checksum"), dict))

    def record(self, sections: dict[str, Any]) -> dict[str, Any]:
        """The record as a dict: the file's identity, the readers' sections (which cannot replace it), how it was read."""
        own = {k: v for k, v in sections.items() if k not in self.KEYS}
        identity = {k: v for k, v in (("etag", self.etag), ("version_id", self.version_id)) if v is not None}
        out = {"path": self.path, "size": self.size, "mtime": self.mtime, **identity, "format": self.format, "reader": self.reader,
               "reader_version": self.reader_version, **own, "streaming": self.streaming}
        if self.io is not None:
            out["io"] = self.io
        return out


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
    md = result.metadata if isinstance(result.metadata, dict) else {}
    if not (result.success and differs_from_walk(md.get("etag"), walked)):
        return result
    error = FileChangedError(result.file_path, "replaced between the walk and the read (another inode, or changed): "
                                               "nothing read from it is kept")
    return failure(result.task_id, result.file_path, error, result.start_time, result.end_time, result.attempts)


def differs_from_walk(etag: Any, walked: str | None) -> bool:
    """Whether a record whose identity is ``etag`` describes another file than the walk saw (``walked``)."""
    return is_identity(walked) and is_identity(etag) and etag != walked


def check_record(path: str, metadata: Any) -> None:
    """Refuse a record that says it is about another file (a misattributed reply)."""
    if isinstance(metadata, dict) and "path" in metadata and metadata["path"] != path:
        raise MisattributionError(path, f"internal error: the record produced for this file names {metadata['path']!r}; "
                                        "it was refused and nothing was recorded for this file")
