"""NetCDF (classic CDF-1/2/5 and NetCDF-4) through netCDF4.

Layout: chunk 0 is the header (METADATA); the rest are SECTIONs of variable
slabs. Statistics honour ``_FillValue`` / ``missing_value`` (netCDF4 masks
them) and are of the unpacked values (``scale_factor`` / ``add_offset``
applied), as users of the data see them. CF coverage (time range, latitude
and longitude bounds) is read from the coordinate variables.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import warnings
from collections.abc import Sequence
from typing import Any, Iterator

from ..core.errors import CorruptFileError
from ..core.model import ChunkSpec, ChunkType, FileInfo
from ..core.settings import StreamingConfig
from . import arrays, cf
from .base import State

EXTRA_HINT = "netCDF4 is not installed: pip install 'metaextract_dask[netcdf]'"

#: libnetcdf (and the HDF5 under it) is not thread-safe, and netCDF4-python
#: releases the GIL around its calls: one netCDF4 call at a time per process.
NETCDF_LOCK = threading.RLock()

#: netCDF4's filter names by the variables table's (zlib is HDF5's deflate: gzip)
NETCDF_FILTERS = {"zlib": "gzip"}

#: a classic file whose records interleave several variables, and no larger than this, has its statistics read from
#: one read of the whole file into memory: libnetcdf reads a record variable with one small read per record, and
#: reading the variables one after the other reads the record section once per variable (benchmarks/RESULTS-stats.md)
WHOLE_FILE_BYTES = arrays.MAX_CELL_BYTES
#: ... and no smaller than this: libnetcdf reads a smaller file in a handful of reads anyway (strace: 10 reads of a
#: 7.7 kB file of three record variables and 93 records, 1,216 of a 404 kB one), and a second open would cost more
WHOLE_FILE_MIN = 64 * 1024


def read_whole(path: str) -> bool:
    """Whether this file's statistics are read from memory (``WHOLE_FILE_BYTES``): a local classic file with records
    of two or more variables."""
    import os

    from ..storage.urls import is_url

    if is_url(path):
        return False
    from ..core.pin import opened

    with open(opened(path), "rb") as f:
        if not WHOLE_FILE_MIN <= os.fstat(f.fileno()).st_size <= WHOLE_FILE_BYTES or f.read(3) != b"CDF":
            return False
    from .cdf_header import interleaved

    return interleaved(path)


def open_dataset(path: str, shown: str | None = None, whole: bool = False) -> Any:
    """Open read-only; the first import of netCDF4 in a process happens after plugins are restricted.

    netCDF4's bundled libhdf5 reads ``HDF5_PLUGIN_PATH`` once, when netCDF4
    is imported (and netCDF4 points it at its own plugin folder when unset).
    ``whole``: the file is read into memory in one pass and libnetcdf reads it there.
    """
    import sys

    if "netCDF4" not in sys.modules:
        from .guard import restrict_plugins

        restrict_plugins()
    import netCDF4

    from ..core.pin import opened

    name = opened(path)  # a pinned file's /proc/self/fd/N: never shown, the file's own path is
    try:
        with warnings.catch_warnings(record=True) as said:  # under NETCDF_LOCK: no other netCDF4 call warns meanwhile
            warnings.simplefilter("always")
            if whole:
                with open(name, "rb") as f:
                    ds = netCDF4.Dataset(shown or path, "r", memory=f.read())
            else:
                ds = netCDF4.Dataset(name, "r")
    except OSError as exc:
        shown = shown or path
        raise CorruptFileError(shown, f"the NetCDF library cannot open it: {str(exc).replace(name, shown).replace(path, shown)}") from exc
    except (TypeError, ValueError) as exc:  # netCDF4-python cannot map a user-defined type (libnetcdf opened the file)
        return HDF5Only(shown or path, f"{exc} [{type(exc).__name__}]")
    _SKIPPED[id(ds)] = [str(w.message).strip(" .") for w in said if "skipping" in str(w.message)]
    return ds


class HDF5Only(contextlib.AbstractContextManager):
    """A netCDF-4 file netCDF4-python cannot open (a type it cannot map): described from HDF5 (``nc4types``)."""

    data_model = "NETCDF4"

    def __init__(self, path: str, why: str):
        self.path, self.why = path, why

    def __exit__(self, *exc: Any) -> None:
        return None


#: an open dataset (by id, while it is open) -> what netCDF4-python said it skipped when opening it (variables and
#: types it cannot map: ``nc4types`` reads them from HDF5)
_SKIPPED: dict[int, list[str]] = {}


#: an open dataset (by id, while it is open) -> the file's own path or URL: libnetcdf was given a loopback URL or a
#: pinned descriptor's ``/proc/self/fd/N``, which ``filepath()`` says
_ORIGIN: dict[int, str] = {}


def source_path(ds: Any) -> str:
    """The path or URL of the file an open dataset reads (not the name libnetcdf was given)."""
    return _ORIGIN.get(id(ds)) or ds.filepath()


@contextlib.contextmanager
def opened(path: str, whole: bool = False) -> Iterator[Any]:
    """The dataset, read-only; a remote file through libnetcdf's byte-range mode on a loopback server; ``whole``: a
    local file read into memory first (``read_whole``).

    libnetcdf reads ``http://...#mode=bytes`` with HTTP Range requests
    (netCDF-3 and netCDF-4 alike); ``storage.loopback`` answers them from the
    object's fsspec file, so s3://, zip members and stores with credentials
    work and every fetch is counted.
    """
    from ..storage.urls import is_url

    with contextlib.ExitStack() as stack:
        if is_url(path):
            from ..storage.loopback import served
            from ..storage.remote import known_size

            url, _count = stack.enter_context(served(path, known_size(path)))
            ds = stack.enter_context(open_dataset(url + "#mode=bytes", shown=path))
        else:
            ds = stack.enter_context(open_dataset(path, whole=whole))
        _ORIGIN[id(ds)] = path
        try:
            yield ds
        finally:
            _ORIGIN.pop(id(ds), None)
            _SKIPPED.pop(id(ds), None)


def walk_groups(ds: Any, prefix: str = "") -> Any:
    """(path prefix, group) for the root and every nested group."""
    yield prefix, ds
    for name, group in ds.groups.items():
        yield from walk_groups(group, f"{prefix}{name}/")


def get_variable(ds: Any, path: str) -> Any:
    """A variable by its path; reads give plain arrays unless some values are fill or missing."""
    *groups, name = path.split("/")
    for g in groups:
        ds = ds.groups[g]
    var = ds.variables[name]
    var.set_always_mask(False)
    return var


def read_attrs(obj: Any, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """Attributes as JSON-friendly values; one that cannot be read is None with a warning on its owner."""
    owner = owner if owner is not None else {}
    out: dict[str, Any] = {}
    for key in arrays.guarded(owner, "attribute names", obj.ncattrs, []):
        try:
            out[key] = arrays.to_jsonable(obj.getncattr(key))
        except Exception as exc:  # noqa: BLE001
            out[key] = None
            owner.setdefault("warnings", []).append(f"attribute {key!r}: value not read: {exc} [{type(exc).__name__}]")
    return out


def describe_header(ds: Any) -> dict[str, Any]:
    """Dimensions, variables and attributes, as ncdump -h shows them."""
    dimensions, unlimited, variables, groups = {}, [], {}, []
    classic = None
    if ds.data_model.startswith("NETCDF3"):  # read once from the header: isunlimited() rescans every dimension
        from .cdf_header import record_dimensions

        classic = set(record_dimensions(source_path(ds)))
    for prefix, group in walk_groups(ds):
        if prefix:
            groups.append(prefix.rstrip("/"))
        for name, dim in group.dimensions.items():
            dimensions[prefix + name] = len(dim)
            if (name in classic) if classic is not None else dim.isunlimited():
                unlimited.append(prefix + name)
        for name, var in group.variables.items():
            entry: dict[str, Any] = {}
            entry["dims"] = arrays.guarded(entry, "dimensions", lambda: list(var.dimensions), [])
            entry["shape"] = arrays.guarded(entry, "shape", lambda: list(var.shape), [])
            entry["dtype"] = arrays.guarded(entry, "dtype", lambda: _dtype_name(var, entry), "unknown")
            entry["attrs"] = read_attrs(var, entry)
            if ds.data_model == "NETCDF4":
                chunking = arrays.guarded(entry, "chunking", var.chunking, "contiguous")
                entry["chunks"] = None if chunking == "contiguous" else list(chunking)
                entry["compression"] = arrays.guarded(entry, "filters", lambda: {k: v for k, v in (var.filters() or {}).items() if v}, {})
            variables[prefix + name] = entry
    root: dict[str, Any] = {}
    attrs = read_attrs(ds, root)
    header = {
        "file_format": ds.data_model,
        "dimensions": dimensions,
        "unlimited_dimensions": unlimited,
        "variables": variables,
        "groups": groups,
        "attrs": attrs,
    }
    if _SKIPPED.get(id(ds)) or any(g.cmptypes or g.vltypes or g.enumtypes for _, g in walk_groups(ds)):
        arrays.guarded(root, "user-defined types", lambda: _hdf5_types(ds, header))
    header["warnings"] = list(root.get("warnings", [])) + [f"{path}: {w}" for path, e in variables.items() for w in e.get("warnings", [])]
    return header


def _hdf5_types(ds: Any, header: dict[str, Any]) -> None:
    """The file's user-defined types (``header['types']``), each typed variable's type by name (``dtype``, ``datatype``)
    and the variables netCDF4-python skipped, all read from HDF5 as libnetcdf sees them (``nc4types``)."""
    from .hdf5 import open_file
    from .nc4types import NamedTypes, hdf5_variables, user_types

    variables = header["variables"]
    with open_file(source_path(ds)) as f:
        named = NamedTypes(f)
        types = header["types"] = user_types(named)
        skipped = hdf5_variables(f, named, skip=set(variables))
        for path, entry in skipped.items():
            entry.setdefault("warnings", []).append("read from HDF5: netCDF4-python skips variables of this type")
        variables.update(skipped)
        for path, entry in variables.items():
            if path in skipped or _is_user_type(get_variable(ds, path).datatype):
                name = named.name_of(f[path].id.get_type())
                if name is not None:
                    entry["dtype"], entry["datatype"] = types[name]["name"], types[name]


def _is_user_type(datatype: Any) -> bool:
    """Whether a netCDF4 datatype is user-defined (an enum, compound or vlen; not the built-in string)."""
    import netCDF4

    return isinstance(datatype, (netCDF4.EnumType, netCDF4.CompoundType)) or (isinstance(datatype, netCDF4.VLType) and datatype.dtype is not str)


def _is_vlen(datatype: Any) -> bool:
    import netCDF4

    return isinstance(datatype, netCDF4.VLType)


def _dtype_name(var: Any, entry: dict[str, Any]) -> str:
    """The variable's type as ncdump names it in spirit: a NumPy dtype in any byte order (``int32``, not ``>i4``: a
    big-endian one is marked ``endianness: big`` on its ``entry``, as ncdump -s's ``_Endianness``), 'str', or a
    user-defined type's own name (``enum_t``, ``obs_t``: not the NumPy dtype it is stored as)."""
    if _is_user_type(var.datatype):
        return str(var.datatype.name)
    dtype = var.dtype
    if isinstance(dtype, type):
        return dtype.__name__
    if dtype.byteorder == ">":
        entry["endianness"] = "big"
    return arrays.dtype_name(dtype)


def cf_coverage(ds: Any, header: dict[str, Any]) -> dict[str, Any]:
    """The file's CF coverage (``cf.coverage``), its coordinates read as users read them (scaled, fill masked)."""

    def values(path: str) -> Any:
        var = get_variable(ds, path)
        var.set_auto_scale(True)
        return var[...]

    return cf.coverage(header, values)


def array_infos(ds: Any) -> list[arrays.ArrayInfo]:
    """Numeric variables whose values chunk tasks read."""
    found = []
    for prefix, group in walk_groups(ds):
        for name, var in group.variables.items():
            if not var.shape or isinstance(var.dtype, type) or not arrays.is_numeric(var.dtype) or _is_vlen(var.datatype):
                continue  # scalars, strings (dtype str), compound and vlen types: structure only
            chunks = None
            if ds.data_model == "NETCDF4":
                chunking = var.chunking()
                chunks = None if chunking == "contiguous" else tuple(chunking)
            found.append(arrays.ArrayInfo(prefix + name, tuple(var.shape), var.dtype.itemsize, chunks))
    return found


class NetCDFChunkReader(arrays.ArrayFileReader):
    """NetCDF classic and NetCDF-4: header, CF coverage, per-variable statistics."""

    name = "netcdf"
    extras = frozenset({"references"})
    formats = frozenset({"netcdf3", "netcdf4"})
    extensions = {".nc": "netcdf3", ".nc4": "netcdf4", ".cdf": "netcdf3"}
    media_types = {"netcdf3": "application/netcdf", "netcdf4": "application/netcdf"}
    esm_formats = {"netcdf3": "netcdf", "netcdf4": "netcdf"}
    columns = (("file_format", "string"), ("n_variables", "int32"), ("n_dimensions", "int32"), *cf.COVERAGE_COLUMNS,
               *arrays.ARRAY_COLUMNS)
    metadata_key = "header"
    array_word = "variables"

    def open_dataset(self, path: str, fmt: str, **kwargs: Any) -> Any:
        """With xarray's netCDF engine."""
        import xarray as xr

        return xr.open_dataset(path, **kwargs)

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        time_range = (record.get("cf_coverage") or {}).get("time") or {}
        return {"file_format": record.get("file_format"), "n_variables": len(record.get("variables") or {}),
                "n_dimensions": len(record.get("dimensions") or {}), **cf.time_columns(time_range), **cf.bounds_columns(record.get("cf_coverage") or {}),
                **arrays.array_columns(self.variable_rows(record))}

    def variable_rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for path, v in (record.get("variables") or {}).items():
            used = [NETCDF_FILTERS.get(k, k) for k, on in (v.get("compression") or {}).items() if on and k != "complevel"]
            rows.append(arrays.variable_row(path, v, list(v.get("dims") or []), used, (v.get("attrs") or {}).get("_FillValue")))
        return rows

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("netCDF4") else EXTRA_HINT

    def check(self, info: FileInfo) -> None:
        if info.format == "netcdf3":  # libnetcdf trusts classic headers: check it first, within the file's bounds
            from .cdf_header import check_classic_header

            check_classic_header(info.path, info.size)

    @contextlib.contextmanager
    def open(self, path: str) -> Iterator[Any]:
        with NETCDF_LOCK, opened(path) as ds:
            yield ds

    def section_bytes(self, info: FileInfo, chunk_size: int) -> int:
        """A file read whole (``read_whole``) is one section: each section's task would read all of it."""
        return info.size if read_whole(info.path) else chunk_size

    def summarize_all(self, specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        """Statistics of a file read whole come from its copy in memory (the header and coverage too, in that task)."""
        path = specs[0].path
        if not any(spec.chunk_type is ChunkType.SECTION for spec in specs) or not read_whole(path):
            return super().summarize_all(specs, config)
        with NETCDF_LOCK, opened(path, whole=True) as ds:
            return [self._summarize(ds, spec, config) for spec in specs]

    def arrays_of(self, handle: Any) -> list[arrays.ArrayInfo]:
        return [] if isinstance(handle, HDF5Only) else array_infos(handle)

    def describe(self, handle: Any, metadata_only: bool = False) -> dict[str, Any]:
        if isinstance(handle, HDF5Only):
            from .hdf5 import open_file
            from .nc4types import hdf5_header

            try:
                f = open_file(handle.path)
            except CorruptFileError as exc:  # not HDF5 underneath: netCDF4-python's own error is the file's
                raise CorruptFileError(handle.path, f"the NetCDF library cannot read it: {handle.why}") from exc
            with f:
                return hdf5_header(f, handle.why)
        header = describe_header(handle)
        try:
            header["cf_coverage"] = cf_coverage(handle, header)
        except Exception as exc:  # noqa: BLE001 - coverage is a summary: its failure is a warning
            header["cf_coverage"] = {}
            header["warnings"].append(f"cf_coverage: {exc} [{type(exc).__name__}]")
        return header

    def array(self, handle: Any, name: str) -> tuple[Any, Any]:
        return get_variable(handle, name), None

    def references(self, handle: Any, path: str) -> dict[str, Any]:
        """netCDF-4 is HDF5: its references come from h5py's view of it; a classic file's from its header
        (``cdf_refs``)."""
        if handle.data_model.startswith("NETCDF3"):
            from .cdf_refs import classic_references

            try:
                return classic_references(path, path)
            except (CorruptFileError, OSError, ValueError) as exc:  # its references' problem, not the file's record
                return {"refs": None, "virtualizable": False, "reasons": [f"references not made: {exc}"], "n_chunks": 0}
        from .h5refs import hdf5_references
        from .hdf5 import shared_file

        with shared_file(path) as f:
            return hdf5_references(f, path)

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        header = state["meta"]
        cf.attach_stats(header, header["variables"], state["stats"])
        return header
