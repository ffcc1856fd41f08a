"""What HDF5 and NetCDF readers share: slab grids over arrays and statistics.

An array is cut into a grid of cells: its own storage chunks when it has them,
otherwise virtual chunks of at most a target size. Cells are packed in order
into SECTION chunks of about ``chunk_size`` bytes, several arrays per section
when they are small, so a file's task count follows its bytes, not its number
of arrays or storage chunks. Statistics are accumulated per cell and merged.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator

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


def cell_slices(shape: tuple[int, ...], cell: tuple[int, ...], index: int) -> tuple[slice, ...]:
    """The hyperslab of grid cell ``index`` (C order)."""
    coords = []
    for n in reversed(grid(shape, cell)):
        coords.append(index % n)
        index //= n
    return tuple(slice(c * w, min((c + 1) * w, s)) for c, w, s in zip(reversed(coords), cell, shape))


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


def iter_cells(shape: tuple[int, ...], part: ArrayCells) -> Iterator[tuple[slice, ...]]:
    """The hyperslabs of one section part."""
    if not shape:
        yield ()
        return
    for k in range(part.start, part.stop):
        yield cell_slices(shape, part.cell, k)


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


def is_numeric_name(dtype: str) -> bool:
    """is_numeric for a dtype already turned into its string."""
    import numpy as np

    try:
        return is_numeric(np.dtype(dtype))
    except TypeError:
        return False


def cell_stats(values: Any, fill: Any = None) -> dict[str, Any]:
    """Statistics of one block of values (a numpy or masked array).

    Masked elements (NetCDF _FillValue / missing_value) are counted as fill
    and left out; NaNs are counted and left out of min, max and mean.
    """
    import numpy as np

    fill_count = 0
    if np.ma.isMaskedArray(values):
        fill_count = int(np.ma.count_masked(values))
        values = values.compressed()
    values = np.asarray(values).ravel()
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    nan_count = 0
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        nan_count = int(nan.sum())
        if nan_count:
            values = values[~nan]
    if fill is not None:
        try:
            fill_count += int((values == fill).sum())
        except (TypeError, ValueError):
            pass
    stats: dict[str, Any] = {"count": int(values.size), "nan_count": nan_count, "fill_count": fill_count, "min": None, "max": None, "sum": 0}
    if values.size:
        stats["min"], stats["max"] = _plain(values.min()), _plain(values.max())
        stats["sum"] = int(values.sum(dtype=np.int64)) if values.dtype.kind in "iu" else float(values.sum(dtype=np.float64))
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
    """Per-array statistics of one SECTION chunk.

    ``get(name)`` returns (array, fill) where array slices like numpy (an h5py
    Dataset or netCDF4 Variable). A read error costs only that array's
    statistics: it is recorded as the array's ``error``.
    """
    out: dict[str, Any] = {}
    for part in parts:
        name = part.name
        try:
            array, fill = get(name)
            shape = tuple(array.shape)
            total = math.prod(grid(shape, part.cell)) if shape else 1
            for slices in iter_cells(shape, part):
                s = cell_stats(array[slices], fill)
                s["cells"], s["cells_total"] = 1, total
                out[name] = merge_stats(out.get(name), s)
        except Exception as exc:  # noqa: BLE001 - recorded, never raised: other arrays go on
            out[name] = {"error": f"{exc} [{type(exc).__name__}]"}
    return out


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
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class ArrayFileReader(StreamChunkReader):
    """A format of named arrays (HDF5 datasets, NetCDF variables): a METADATA chunk, then SECTIONs of array slabs.

    The two array formats share their chunking and statistics; a subclass says
    how to open a file, list its arrays, describe its metadata chunk and
    fetch one array. Each task opens the file once for all its chunks.
    """

    native = True
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
    def describe(self, handle: Any) -> dict[str, Any]:
        """The METADATA chunk's summary: the structure, attributes, warnings."""

    @abstractmethod
    def array(self, handle: Any, name: str) -> tuple[Any, Any]:
        """(array to slice, fill value or None) for one array name."""

    def check(self, info: FileInfo) -> None:
        """A check of the file before any native library opens it (none by default)."""

    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        self.check(info)
        with self.open(info.path) as handle:
            found = self.arrays_of(handle)
        meta = ChunkSpec(info.path, 0, ChunkType.METADATA, 0, min(info.size, 4096), self.metadata_key)
        return [meta, *pack_sections(info.path, found, chunk_size, first_id=1)]

    def summarize(self, spec: ChunkSpec, config: StreamingConfig) -> State:
        return self.summarize_all([spec], config)[0]

    def summarize_all(self, specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        """Every chunk of one task from a single open of the file."""
        with self.open(specs[0].path) as handle:
            return [self._summarize(handle, spec) for spec in specs]

    def _summarize(self, handle: Any, spec: ChunkSpec) -> State:
        if spec.chunk_type is ChunkType.METADATA:
            return {"meta": self.describe(handle), "stats": {}}
        return {"meta": None, "stats": section_stats(spec.key, lambda name: self.array(handle, name))}  # type: ignore[arg-type]

    def merge(self, a: State, b: State) -> State:
        return {"meta": a["meta"] or b["meta"], "stats": merge_section_stats(a["stats"], b["stats"])}

    def public_summary(self, state: State) -> dict[str, Any]:
        return {f"{self.array_word}_read": sorted(state["stats"]), self.metadata_key: state["meta"] is not None}
