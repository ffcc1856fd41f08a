"""The reader interface: what a format must supply, and nothing more.

A reader turns a file into a layout of ``ChunkSpec``s, summarizes one chunk
on a worker, merges summaries associatively, and finalizes the merged state
into the file's metadata. Planning, graphs, scheduling and metrics are shared.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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
    #: (format, offset, magic bytes, description) that detection recognises in a file's first bytes; the magic may be
    #: a pattern of bytes (``re.compile(rb"...")``) that must match at the offset (the built-in formats' own magic
    #: bytes, some found by rules rather than at one offset, are in detect.py)
    signatures: ClassVar[tuple[tuple[str, int, bytes | re.Pattern[bytes], str], ...]] = ()
    #: file name extension -> format: names that claim a format of this reader. Detection goes by content (a file
    #: so named without the signature is "unknown", and its description says what the name claimed); a scan
    #: plans a large file so named in a sandbox when the reader is ``native``
    extensions: ClassVar[Mapping[str, str]] = {}
    #: names of regular files that make the folder holding them one file of this reader's format (its first, sorted):
    #: the walk lists such a folder as one entry and never walks into it (a Zarr store's ``zarr.json``, ``.zgroup``)
    folder_markers: ClassVar[frozenset[str]] = frozenset()
    #: format -> IANA media type (the STAC export's asset type; ``media_type`` may look at the record too)
    media_types: ClassVar[Mapping[str, str]] = {}
    #: format -> intake-esm ``format`` of the file itself ("netcdf", "zarr"): files of these formats are ESM assets
    #: (others only through kerchunk references, when the scan made them)
    esm_formats: ClassVar[Mapping[str, str]] = {}
    #: format -> default keyword arguments of ``xarray.open_dataset`` when ``metaextract_dask.open`` opens a file of it
    open_options: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: its library reads the format inside a gzip stream itself (astropy: ``x.fits.gz``): such a stream whose first
    #: decompressed bytes carry one of ``signatures`` is detected as that format, not as gzip, and read in one pass
    opens_gzip: ClassVar[bool] = False

    def media_type(self, fmt: str, section: dict[str, Any]) -> str | None:
        """The media type of a file of format ``fmt`` whose record's section (this reader's) is ``section``; None: unknown."""
        return self.media_types.get(fmt)

    def recognise(self, head: bytes, size: int, read: Any) -> str | None:
        """For a file named like this reader's format (its ``extensions``) with none of its ``signatures`` in its first
        bytes (``head``): the description of the file as this format after all, found further in (``read(offset, n)``
        reads it; ``size`` bytes in all), as the format's own tools find it; None, the default: it is not."""
        return None

    def open_dataset(self, path: str, fmt: str, **kwargs: Any) -> Any:
        """The file as a lazy ``xarray.Dataset`` (``metaextract_dask.open``); None when its format has no arrays to open.

        Called after the catalog and the guard have checked the file, and
        only when its row has no kerchunk references (those open the same way
        for every format).
        """
        return None

    def stac_properties(self, section: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """(properties, the schema URIs of the STAC extensions they belong to) that this reader adds to a file's STAC
        Item, from its record's section (a raster's projection); none by default."""
        return {}, []

    def points_outside(self, path: str) -> list[str]:
        """What in this local file would lead a library that opens it by name outside it, in words ("NAME: why"): an
        export that hands the file to another program (intake-esm) leaves it out then. None found by default (HDF5-based
        files are asked ``guard.refused_references`` whatever their reader)."""
        return []

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

    def one_pass(self, info: FileInfo) -> bool:
        """Whether this file reads only from its start on (a compressed stream, where each chunk task would
        decompress it again from the start): its chunks are then read in order in one task, whatever its size. False
        by default."""
        return False

    def native_spec(self, spec: ChunkSpec) -> bool:
        """Whether reading this chunk runs the native library (and so belongs in the sandbox)."""
        return self.native

    def structure_in_python(self, path: str) -> dict[str, Any] | None:
        """This reader's section for a file its native library crashed on even without reading values, read by
        pure-Python code instead (the framework's last resort, in a fresh sandbox); None: this reader has none."""
        return None

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
