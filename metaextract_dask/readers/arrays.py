"""What HDF5 and NetCDF readers share: slab grids over arrays and statistics.

An array is cut into a grid of cells: its own storage chunks when it has them,
otherwise virtual chunks of at most a target size. Cells are packed in order
into SECTION chunks of about ``chunk_size`` bytes, several arrays per section
when they are small, so a file's task count follows its bytes, not its number
of arrays or storage chunks. Statistics are accumulated per cell and merged.
"""

from __future__ import annotations

import contextlib
import math
import threading
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

from ..core.model import ArrayCells, ChunkSpec, ChunkType, FileInfo
from ..core.settings import StreamingConfig
from .base import State, StreamChunkReader

#: one cell read in memory at most: caps memory when storage chunks are huge
MAX_CELL_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ArrayInfo:
    """What the planner needs of one array (dataset or variable)."""

    name: str
    shape: tuple[int, ...]
    itemsize: int
    chunks: tuple[int, ...] | None  # storage chunks, if any
    offset: int = 0  # byte offset of its data in the file, when known
    stored_bytes: int = 0  # bytes on disk (compressed), when known

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


def cell_shape(info: ArrayInfo, target: int) -> tuple[int, ...]:
    """The grid cell: the storage chunk when it is reasonable, else a slab of <= target bytes."""
    if not info.shape:
        return ()
    if info.chunks and math.prod(info.chunks) * info.itemsize <= MAX_CELL_BYTES:
        return tuple(info.chunks)
    cell = list(info.shape)
    budget = max(1, target // max(info.itemsize, 1))
    for axis in range(len(cell)):  # keep trailing axes whole while they fit
        inner = math.prod(cell[axis + 1 :])
        if inner <= budget:
            cell[axis] = max(1, min(cell[axis], budget // max(inner, 1)))
            break
        cell[axis] = 1
    return tuple(cell)


def grid(shape: tuple[int, ...], cell: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-(-s // c) for s, c in zip(shape, cell))


def pack_sections(path: str, arrays: list[ArrayInfo], chunk_size: int, first_id: int) -> list[ChunkSpec]:
    """SECTION specs of about ``chunk_size`` bytes; each key is ((name, cell shape, k0, k1), ...)."""
    specs: list[ChunkSpec] = []
    parts: list[ArrayCells] = []
    size = 0
    offset = None

    def flush() -> None:
        nonlocal parts, size, offset
        if parts:
            specs.append(ChunkSpec(path, first_id + len(specs), ChunkType.SECTION, offset or 0, size, tuple(parts)))
        parts, size, offset = [], 0, None

    for info in arrays:
        if math.prod(info.shape) == 0:
            continue
        cell = cell_shape(info, chunk_size)
        ncells = math.prod(grid(info.shape, cell)) if cell else 1
        cell_bytes = max(1, (info.stored_bytes or info.nbytes) // ncells)
        k = 0
        while k < ncells:
            take = max(1, min(ncells - k, (chunk_size - size) // cell_bytes))
            if offset is None:
                offset = info.offset + k * cell_bytes
            parts.append(ArrayCells(info.name, cell, k, k + take))
            size += take * cell_bytes
            k += take
            if size >= chunk_size:
                flush()
    flush()
    return specs


# ---------------------------------------------------------------- statistics


def guarded(entry: dict[str, Any], field: str, fn: Any, default: Any = None) -> Any:
    """``fn()``, or ``default`` with a warning on this object: one odd property never fails a file."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - confined to this property of this object
        entry.setdefault("warnings", []).append(f"{field}: {exc} [{type(exc).__name__}]")
        return default


def is_numeric(dtype: Any) -> bool:
    kind = getattr(dtype, "kind", "")
    return bool(kind) and kind in "biuf"


def dtype_name(dtype: Any) -> str:
    """A NumPy dtype's name whatever its byte order: ``int32`` for ``<i4`` and ``>i4`` alike (the order is how the
    file stores the values, not what they are: ncdump and the variables table name both ``int``); any other name (a
    user-defined type's, ``str``) as it is."""
    import numpy as np

    text = str(dtype)
    if text[:1] not in "<>":
        return text
    try:
        return str(np.dtype(text).newbyteorder("="))
    except Exception:  # noqa: BLE001 - a file's own text that NumPy cannot read (a hostile .zarray's): as it is
        return text


def is_numeric_name(dtype: str) -> bool:
    """is_numeric for a dtype already turned into its string."""
    import numpy as np

    try:
        return is_numeric(np.dtype(dtype))
    except TypeError:
        return False


def cell_stats(values: Any, fill: Any = None) -> dict[str, Any]:
    """Statistics of one block of values (a numpy or masked array), vectorised.

    Masked elements (NetCDF _FillValue / missing_value) are counted as fill
    and left out; NaNs are counted and left out of min, max and mean. The
    common case (no mask, no NaN) costs one pass each for sum, min and max:
    a NaN makes the float64 sum NaN, and only then are NaNs looked for.
    """
    import numpy as np

    fill_count = 0
    if np.ma.isMaskedArray(values):
        if values.mask is np.ma.nomask or not values.mask.any():
            values = values.data
        else:
            fill_count = int(np.ma.count_masked(values))
            values = values.compressed()
    values = np.asarray(values).ravel()
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    nan_count = 0
    total: Any = None
    if values.dtype.kind == "f" and values.size:
        total = float(values.sum(dtype=np.float64))
        if total != total:  # NaN somewhere (or inf - inf): count and drop them
            nan = np.isnan(values)
            nan_count = int(nan.sum())
            if nan_count:
                values = values[~nan]
            total = float(values.sum(dtype=np.float64))
    if fill is not None:
        try:
            fill_count += int(np.count_nonzero(values == fill))
        except (TypeError, ValueError):
            pass
    stats: dict[str, Any] = {"count": int(values.size), "nan_count": nan_count, "fill_count": fill_count, "min": None, "max": None, "sum": 0}
    if values.size:
        stats["min"], stats["max"] = _plain(values.min()), _plain(values.max())
        if total is None:
            total = int(values.sum(dtype=np.int64)) if values.dtype.kind in "iu" else float(values.sum(dtype=np.float64))
        stats["sum"] = total
    return stats


def _plain(value: Any) -> Any:
    """A NumPy scalar as a Python number (long doubles as floats: JSON has nothing wider)."""
    import numpy as np

    item = value.item()
    if isinstance(item, np.generic):
        return float(item) if isinstance(item, np.floating) else int(item)
    return item


def merge_stats(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """Combine two statistics records (associative)."""
    if a is None or b is None:
        return a or b
    if "error" in a or "error" in b:
        return a if "error" in a else b
    pick = lambda f, x, y: y if x is None else x if y is None else f(x, y)  # noqa: E731
    return {
        "count": a["count"] + b["count"],
        "nan_count": a["nan_count"] + b["nan_count"],
        "fill_count": a["fill_count"] + b["fill_count"],
        "min": pick(min, a["min"], b["min"]),
        "max": pick(max, a["max"], b["max"]),
        "sum": a["sum"] + b["sum"],
        "cells": a.get("cells", 0) + b.get("cells", 0),
        "cells_total": max(a.get("cells_total", 0), b.get("cells_total", 0)),
    }


def final_stats(stats: dict[str, Any] | None, total_cells: int) -> dict[str, Any] | None:
    """min, max, mean, counts; ``exact`` when every cell was read."""
    if stats is None:
        return None
    if "error" in stats:
        return {"error": stats["error"]}
    count = stats["count"]
    return {
        "min": stats["min"],
        "max": stats["max"],
        "mean": (stats["sum"] / count) if count else None,
        "count": count,
        "nan_count": stats["nan_count"],
        "fill_count": stats["fill_count"],
        "exact": stats.get("cells", 0) >= total_cells,
        "cells_read": stats.get("cells", 0),
        "cells_total": total_cells,
    }


def section_stats(parts: tuple[ArrayCells, ...], get: Any) -> dict[str, dict[str, Any]]:
    """Per-array statistics of one SECTION chunk, in as few reads as the cells allow.

    ``get(name)`` returns (array, fill) where array slices like numpy (an h5py
    Dataset or netCDF4 Variable). Consecutive cells are read as whole boxes
    (``cell_boxes``): a 40-record variable is one read, not 40. A read error
    costs only that array's statistics: it is recorded as the array's ``error``.
    """
    out: dict[str, Any] = {}
    for part in parts:
        name = part.name
        try:
            array, fill = get(name)
            shape = tuple(array.shape)
            total = math.prod(grid(shape, part.cell)) if shape else 1
            for slices, cells in box_reads(shape, part):
                s = cell_stats(array[slices], fill)
                s["cells"], s["cells_total"] = cells, total
                out[name] = merge_stats(out.get(name), s)
        except Exception as exc:  # noqa: BLE001 - recorded, never raised: other arrays go on
            out[name] = {"error": f"{exc} [{type(exc).__name__}]"}
    return out


def cell_boxes(g: tuple[int, ...], k0: int, k1: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Cells ``k0``..``k1`` (C order) of grid ``g`` as few boxes (lo, hi) in grid coordinates.

    A run of cells is at most a partial first row, a block of whole rows and
    a partial last row, each row split the same way one axis down.
    """
    if not g:
        return [((), ())]
    inner = math.prod(g[1:])
    first, last = k0 // inner, (k1 - 1) // inner
    if first == last:
        return [((first, *lo), (first + 1, *hi)) for lo, hi in cell_boxes(g[1:], k0 - first * inner, k1 - first * inner)]
    out: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    if k0 % inner:
        out += cell_boxes(g, k0, (first + 1) * inner)
        first += 1
    end = last + 1 if k1 % inner == 0 else last
    if end > first:
        out.append(((first, *([0] * (len(g) - 1))), (end, *g[1:])))
    if k1 % inner:
        out += cell_boxes(g, last * inner, k1)
    return out


def box_reads(shape: tuple[int, ...], part: ArrayCells) -> Iterator[tuple[tuple[slice, ...], int]]:
    """(hyperslab, cells in it) for the reads of one section part."""
    if not shape:
        yield (), 1
        return
    for lo, hi in cell_boxes(grid(shape, part.cell), part.start, part.stop):
        slices = tuple(slice(a * w, min(b * w, n)) for a, b, w, n in zip(lo, hi, part.cell, shape))
        yield slices, math.prod(b - a for a, b in zip(lo, hi))


def merge_section_stats(a: dict[str, dict], b: dict[str, dict]) -> dict[str, dict]:
    """Merge per-array statistics of two sections."""
    out: dict[str, Any] = dict(a)
    for name, stats in b.items():
        out[name] = merge_stats(out.get(name), stats)
    return out


def to_jsonable(value: Any, limit: int = 1000) -> Any:
    """Attribute values as JSON-friendly Python (large arrays summarised)."""
    import numpy as np

    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        item = value.item()
        if isinstance(item, np.generic):  # long double and other types wider than Python's
            return to_jsonable(float(item) if isinstance(item, np.floating) else str(item), limit)
        return to_jsonable(item, limit)
    if isinstance(value, np.ndarray):
        if value.size > limit:
            return {"array": list(value.shape), "dtype": str(value.dtype), "truncated": True}
        return [to_jsonable(v, limit) for v in value.tolist()] if value.ndim else to_jsonable(value.item(), limit)
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, limit) for v in value[:limit]]
    if isinstance(value, dict):  # JSON attributes (Zarr's), codec configurations
        return {str(k): to_jsonable(v, limit) for k, v in list(value.items())[:limit]}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


_local = threading.local()


#: files-table columns of readers of arrays: what a user filters files on without the variables table
ARRAY_COLUMNS = (("variables", "list<string>"), ("standard_names", "list<string>"), ("compression", "list<string>"))


def array_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A file's array names, its CF standard names and the storage filters it uses, from its variables-table rows."""
    return {"variables": [r["name"] for r in rows],
            "standard_names": sorted({r["standard_name"] for r in rows if r.get("standard_name")}),
            "compression": sorted({f for r in rows for f in r.get("filters") or []})}


def variable_row(name: str, entry: dict[str, Any], dims: list[str], filters: list[str], fill: Any) -> dict[str, Any]:
    """One array of a record as a row of the variables table: what users filter on, typed; the rest stays in the record."""
    import json

    attrs = entry.get("attrs") or {}
    stats = entry.get("stats") or {}
    text = lambda v: v if isinstance(v, str) else None  # noqa: E731 - an attribute that is not text is not a name
    number = lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None  # noqa: E731
    whole = lambda v: v if isinstance(v, int) and not isinstance(v, bool) else None  # noqa: E731
    ints = lambda vs: [int(v) for v in vs] if isinstance(vs, (list, tuple)) and all(whole(v) is not None for v in vs) else None  # noqa: E731
    return {"name": name, "dims": [str(d) for d in dims], "shape": ints(entry.get("shape")),
            "dtype": dtype_name(entry["dtype"]) if text(entry.get("dtype")) else None,
            "units": text(attrs.get("units")), "standard_name": text(attrs.get("standard_name")), "long_name": text(attrs.get("long_name")),
            "chunks": ints(entry.get("chunks")), "filters": filters, "fill_value": json.dumps(fill, default=str) if fill is not None else None,
            "min": number(stats.get("min")), "max": number(stats.get("max")), "mean": number(stats.get("mean")),
            "count": whole(stats.get("count")), "nan_count": whole(stats.get("nan_count")),
            "exact": stats.get("exact") if isinstance(stats.get("exact"), bool) else None}


@contextlib.contextmanager
def one_open() -> Iterator[None]:
    """Within this block, a file an ``ArrayFileReader`` opens stays open for its next use here.

    A small file is planned (its layout read) and then summarized in the same
    task: one open of the file instead of two. Everything opened is closed
    when the block ends.
    """
    if getattr(_local, "session", None) is not None:
        yield
        return
    from ..core import pin

    session: tuple[contextlib.ExitStack, dict[tuple[type, str], Any]] = (contextlib.ExitStack(), {})
    _local.session = session
    try:
        with pin.session(), session[0]:  # the files stay pinned as long as they stay open (closed first)
            yield
    finally:
        _local.session = None


def session_memo() -> dict[Any, Any] | None:
    """What ``one_open``'s block keeps for its own length (the shared opens, and what is worked out from them), or
    None outside such a block."""
    session = getattr(_local, "session", None)
    return None if session is None else session[1]


def shared(kind: Any, path: str, open_: Callable[[str], AbstractContextManager[Any]]) -> AbstractContextManager[Any]:
    """``open_(path)``: within ``one_open`` opened once and shared by every ``kind`` of open of ``path`` there (the
    HDF5 guard's open serves the reader and its references), else opened for this use only."""
    session = getattr(_local, "session", None)
    if session is None:
        return open_(path)
    stack, handles = session
    key = (kind, path)
    if key not in handles:
        handles[key] = stack.enter_context(open_(path))
    return contextlib.nullcontext(handles[key])


class ArrayFileReader(StreamChunkReader):
    """A format of named arrays (HDF5 datasets, NetCDF variables): a METADATA chunk, then SECTIONs of array slabs.

    The two array formats share their chunking and statistics; a subclass says
    how to open a file, list its arrays, describe its metadata chunk and
    fetch one array. Each task opens the file once for all its chunks.
    """

    native = True
    #: what ``open`` opens, when others open the same (``shared``): None, this reader's own open
    opens_with: ClassVar[str | None] = None
    #: the metadata chunk's key, and the word for an array in progress summaries
    metadata_key: ClassVar[str] = "metadata"
    array_word: ClassVar[str] = "arrays"

    @abstractmethod
    def open(self, path: str) -> AbstractContextManager[Any]:
        """The file opened for reading (held only for one task)."""

    @abstractmethod
    def arrays_of(self, handle: Any) -> list[ArrayInfo]:
        """Every array worth statistics, with its shape, item size and storage chunks."""

    @abstractmethod
    def describe(self, handle: Any, metadata_only: bool = False) -> dict[str, Any]:
        """The METADATA chunk's summary: the structure, attributes, warnings. ``metadata_only``: nothing that
        walks the data's storage (a chunk index)."""

    @abstractmethod
    def array(self, handle: Any, name: str) -> tuple[Any, Any]:
        """(array to slice, fill value or None) for one array name."""

    def check(self, info: FileInfo) -> None:
        """A check of the file before any native library opens it (none by default)."""

    def references(self, handle: Any, path: str) -> dict[str, Any]:
        """Kerchunk references of the open file with its verdict (``h5refs.hdf5_references``); none by default."""
        return {"refs": None, "virtualizable": False, "reasons": [f"the {self.name} reader makes no references"], "n_chunks": 0}

    def _handle(self, path: str) -> AbstractContextManager[Any]:
        """The file open: shared within ``one_open``, else opened for this call only."""
        return shared(self.opens_with or type(self), path, self.open)

    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        self.check(info)
        with self._handle(info.path) as handle:
            found = self.arrays_of(handle)
        meta = ChunkSpec(info.path, 0, ChunkType.METADATA, 0, min(info.size, 4096), self.metadata_key)
        return [meta, *pack_sections(info.path, found, self.section_bytes(info, chunk_size), first_id=1)]

    def section_bytes(self, info: FileInfo, chunk_size: int) -> int:
        """The bytes of one SECTION chunk of this file: the chunk size asked for, unless the format knows better."""
        return chunk_size

    def metadata_layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        """The METADATA chunk alone, without listing the arrays' storage (a remote file's chunk index is
        many requests: a 470 MB HDF5 file's took 40)."""
        self.check(info)
        return [ChunkSpec(info.path, 0, ChunkType.METADATA, 0, min(info.size, 4096), self.metadata_key)]

    def summarize(self, spec: ChunkSpec, config: StreamingConfig) -> State:
        return self.summarize_all([spec], config)[0]

    def summarize_all(self, specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        """Every chunk of one task from a single open of the file."""
        with self._handle(specs[0].path) as handle:
            return [self._summarize(handle, spec, config) for spec in specs]

    def _summarize(self, handle: Any, spec: ChunkSpec, config: StreamingConfig) -> State:
        if spec.chunk_type is ChunkType.METADATA:
            state = {"meta": self.describe(handle, config.metadata_only), "stats": {}}
            if config.references:  # the chunk layout is walked here, with the structure: no second pass over the file
                state["refs"] = self.references(handle, spec.path)
            return state
        return {"meta": None, "stats": section_stats(spec.key, lambda name: self.array(handle, name))}  # type: ignore[arg-type]

    def merge(self, a: State, b: State) -> State:
        out = {"meta": a["meta"] or b["meta"], "stats": merge_section_stats(a["stats"], b["stats"])}
        refs = a.get("refs") or b.get("refs")
        return {**out, "refs": refs} if refs is not None else out

    def record(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        """The reader's section, and under ``references`` the file's kerchunk references when they were asked for."""
        out = super().record(state, info, config)
        if state.get("refs") is not None:
            from .h5refs import encoded

            out["references"] = encoded(state["refs"])
        return out

    def public_summary(self, state: State) -> dict[str, Any]:
        return {f"{self.array_word}_read": sorted(state["stats"]), self.metadata_key: state["meta"] is not None}
