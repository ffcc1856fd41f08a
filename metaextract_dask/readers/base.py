"""The reader interface: what a format must supply, and nothing more.

A reader turns a file into a layout of ``ChunkSpec``s, summarizes one chunk
on a worker, merges summaries associatively, and finalizes the merged state
into the file's metadata. Planning, graphs, scheduling and metrics are shared.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from ..core.model import ChunkSpec, ChunkType, FileInfo
from ..core.settings import StreamingConfig

State = dict[str, Any]


class StreamChunkReader(ABC):
    """Base class of all readers (seed name)."""

    #: registry name, stored in each record's ``reader`` field
    name: ClassVar[str]
    #: stored in each record's ``reader_version``: change it when the records this reader makes change, and
    #: re-scans extract its files again (``catalog.index``)
    version: ClassVar[str] = "1"
    #: detected formats (see detect.py) this reader handles
    formats: ClassVar[frozenset[str]] = frozenset()
    #: parses in-process with a native library (libhdf5, libnetcdf) that a
    #: hostile file can crash: when isolation is on, its layout is planned and
    #: its chunks are read in the sandbox, like small files
    native: ClassVar[bool] = False
    #: the catalog columns this reader fills, (name, type) with type one of
    #: string, int32, int64, float64, bool; the catalog adds them to its schema
    columns: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: what this reader makes besides its record when a scan asks for it: "references" (kerchunk
    #: references), "thumbnail" (a poster frame); a re-scan asking for one extracts again the rows without it
    extras: ClassVar[frozenset[str]] = frozenset()
    #: for plugins: (format, offset, magic bytes, description) that detection recognises
    signatures: ClassVar[tuple[tuple[str, int, bytes, str], ...]] = ()

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        """This reader's columns of one catalog row, from its own section of the file's record."""
        return {}

    def variable_rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows of the catalog's variables table (``catalog.schema.VARIABLE_COLUMNS``), one per array of the file."""
        return []

    def record(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        """The reader's part of the file's record: ``finalize``'s result under the reader's name.

        Under its own key a reader cannot overwrite the framework's ``path``,
        ``size``, ``mtime`` or ``format`` (a video's container size is not the
        file's). ``checksum`` is the one shared key, filled by fixity.
        """
        return {self.name: self.finalize(state, info, config)}

    def native_spec(self, spec: ChunkSpec) -> bool:
        """Whether reading this chunk runs the native library (and so belongs in the sandbox)."""
        return self.native

    def unavailable(self) -> str | None:
        """Why this reader cannot run here (missing library), or None."""
        return None

    def chunk_size(self, requested: int) -> int:
        """The chunk size actually used for a requested one."""
        return requested

    @abstractmethod
    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        """All chunks of the file at this chunk size, in file order."""

    def metadata_layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        """The chunks a metadata-only read takes: every METADATA chunk, else the first and last (signatures,
        trailers). A reader that can say it without listing the file's data overrides this."""
        return metadata_specs(self.layout(info, chunk_size))

    @abstractmethod
    def summarize(self, spec: ChunkSpec, config: StreamingConfig) -> State:
        """Read one chunk (opening the file itself) and return a small summary."""

    def summarize_all(self, specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        """Summaries of several chunks in one task (small files); override to share work."""
        return [self.summarize(spec, config) for spec in specs]

    @abstractmethod
    def merge(self, a: State, b: State) -> State:
        """Combine two summaries; must be associative."""

    @abstractmethod
    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        """The file's metadata from the merged summary of every chunk read."""

    def public_summary(self, state: State) -> dict[str, Any]:
        """What a progress callback sees of a chunk summary."""
        return dict(state)

    def __reduce__(self):
        # readers are stateless: pickle by class so tasks stay tiny
        return (type(self), ())


def metadata_specs(layout: Sequence[ChunkSpec]) -> tuple[ChunkSpec, ...]:
    """The chunks a metadata-only read takes: every METADATA chunk, else the first and last (signatures, trailers)."""
    meta = getattr(layout, "metadata_indices", None)
    if meta is None:
        meta = [i for i, s in enumerate(layout) if s.chunk_type is ChunkType.METADATA]
    picked = sorted(set(meta)) or sorted({0, len(layout) - 1})
    return tuple(layout[i] for i in picked)
