"""From a catalog row to the data: ``open`` gives an xarray Dataset, ``open_catalog`` the intake-esm catalog.

A file with references in the catalog opens through them (fsspec's reference
filesystem and xarray's Zarr engine: only the chunks a computation touches
are read); a netCDF file without references opens with xarray's netCDF
engine; an HDF5 file without references gets them made on the spot, from
the same code a scan uses, and opens through them.
"""

from __future__ import annotations

import builtins
import os
from typing import Any

from .read import _read_part, checked_parts

#: the row fields ``open`` needs
OPEN_COLUMNS = ["path", "format", "success", "references", "virtualizable", "path_bytes"]


def find_row(catalog: str, path: str) -> dict[str, Any]:
    """The catalog's row of ``path`` (as written in the catalog, or the same file by its absolute path)."""
    wanted = {path, os.path.abspath(path)}
    found = None
    for part in checked_parts(catalog):
        for row in _read_part(part, OPEN_COLUMNS):
            if row.get("path") in wanted or os.path.abspath(str(row.get("path"))) in wanted:
                found = row  # later parts are newer
    if found is None:
        raise KeyError(f"{path} has no row in the catalog {catalog}")
    return found


def distinct_phony_dims(refs: dict[str, Any]) -> dict[str, Any]:
    """The reference set with ``phony_dim_N`` names that xarray can open.

    kerchunk (and so the stored references) names the dimensions of an HDF5
    dataset without dimension scales ``phony_dim_0``, ``phony_dim_1``... by
    axis, so a 50-row and a 20000-row dataset of one group both claim
    ``phony_dim_0`` and xarray refuses the file. Here, as h5netcdf's
    ``phony_dims="sort"`` does, each distinct (size, n-th axis of that size)
    of a group gets its own name; the stored references are left as kerchunk makes them.
    """
    import json

    inner = refs.get("refs", refs)
    found: dict[str, list[tuple[str, list[str], list[int]]]] = {}
    for key, value in inner.items():
        if key.endswith("/.zattrs") and isinstance(value, str) and "phony_dim_" in value:
            array = key[: -len("/.zattrs")]
            meta = inner.get(array + "/.zarray")
            attrs, shape = json.loads(value), json.loads(meta)["shape"] if isinstance(meta, str) else None
            dims = attrs.get("_ARRAY_DIMENSIONS")
            if isinstance(dims, list) and shape is not None and len(dims) == len(shape):
                found.setdefault(array.rpartition("/")[0], []).append((array, dims, shape))
    out = dict(inner)
    for arrays in found.values():
        names: dict[tuple[int, int], str] = {}
        for array, dims, shape in arrays:
            seen: dict[int, int] = {}
            renamed = []
            for dim, size in zip(dims, shape):
                if not str(dim).startswith("phony_dim_"):
                    renamed.append(dim)
                    continue
                nth = seen[size] = seen.get(size, -1) + 1
                renamed.append(names.setdefault((size, nth), f"phony_dim_{len(names)}"))
            if renamed != dims:
                attrs = json.loads(inner[array + "/.zattrs"])
                out[array + "/.zattrs"] = json.dumps({**attrs, "_ARRAY_DIMENSIONS": renamed})
    return {**refs, "refs": out} if "refs" in refs else out


def open_references(fo: Any, **kwargs: Any) -> Any:
    """An xarray Dataset over a kerchunk reference set (a dict, a JSON file or a Parquet reference folder).

    A Parquet folder is opened with pyarrow: fsspec's own default for a
    folder path is fastparquet, which this project does not install. A dict
    or JSON file gets distinct phony dimensions (``distinct_phony_dims``).
    """
    import json

    import xarray as xr

    if isinstance(fo, str) and os.path.isdir(fo):
        import fsspec
        from fsspec.implementations.reference import LazyReferenceMapper

        fo = LazyReferenceMapper(fo, fs=fsspec.filesystem("file"), engine="pyarrow")
    elif isinstance(fo, str):
        with builtins.open(fo) as f:
            fo = json.load(f)
    if isinstance(fo, dict):
        fo = distinct_phony_dims(fo)
    backend = {"consolidated": False, "storage_options": {"fo": fo, "remote_protocol": "file"}}
    backend.update(kwargs.pop("backend_kwargs", {}))
    return xr.open_dataset("reference://", engine="zarr", backend_kwargs=backend, **kwargs)


def open(catalog: str | os.PathLike, path_or_row: Any, *, follow_outside: bool = False, **kwargs: Any) -> Any:  # noqa: A001 - the public name
    """The data of one catalog row as an ``xarray.Dataset``, lazily.

    ``path_or_row``: a file's path, or a row of ``read_catalog`` (a dict or a
    pandas Series). ``kwargs`` go to ``xarray.open_dataset`` (``decode_times``,
    ``chunks``...; plain HDF5 files default to ``mask_and_scale=False``). Failed rows, videos and binaries have no arrays to open:
    a ``ValueError`` says so; so does an HDF5 file that cannot be virtualized,
    with the reasons.

    The catalog is input, checked as the scan checks files (``trust``): a row
    whose file lies outside the folders the catalog's scans read, and
    references that point at anything but the row's own file, are refused
    with a ``ValueError``. An HDF5-based file (HDF5, netCDF-4) that points
    outside itself (external links, external raw storage, virtual
    datasets, a filter plugin) is refused with the guard's words, as the scan
    never follows those pointers; ``follow_outside=True`` reads them, for a
    file you trust. Filter plugins load only from
    ``metaextract.hdf5.plugin-paths`` either way.
    """
    from ..readers.guard import restrict_plugins
    from . import references, trust

    catalog = os.fspath(catalog)
    row = dict(path_or_row) if hasattr(path_or_row, "keys") else find_row(catalog, os.fspath(path_or_row))
    path = trust.check_in_roots(catalog, row.get("path"))
    fmt = row.get("format")
    import numpy as np

    success = row.get("success")
    if not (isinstance(success, (bool, np.bool_)) and success):  # a flag, not any truthy value an edited catalog holds
        raise ValueError(f"{path}: its extraction failed; there is nothing to open")
    restrict_plugins()  # before any HDF5 library of this process loads: plugins only from trusted folders
    if not follow_outside:
        _refuse_outside(path)
    if fmt == "hdf5":
        # an HDF5 fill value is what unwritten storage reads as, not a missing-data mark (xarray would mask
        # every 0.0 of a plain file as missing): plain HDF5 opens unmasked unless asked otherwise
        kwargs.setdefault("mask_and_scale", False)
    if isinstance(row.get("references"), str) and row["references"]:
        return open_references(references.checked(catalog, row["references"], path), **kwargs)
    if fmt in ("netcdf3", "netcdf4"):
        import xarray as xr

        return xr.open_dataset(path, **kwargs)
    if fmt == "hdf5":
        return open_references(_references_now(path), **kwargs)
    raise ValueError(f"{path}: a {fmt} file has no arrays to open (open() reads HDF5 and netCDF files)")


def _references_now(path: str) -> dict[str, Any]:
    """References of an HDF5 file made now, or a ValueError saying why it cannot be read through them."""
    from ..readers.h5refs import hdf5_references
    from ..readers.hdf5 import open_file

    with open_file(path) as f:
        found = hdf5_references(f, path)
    if not found["virtualizable"]:
        raise ValueError(f"{path}: cannot be opened as arrays: {'; '.join(found['reasons'][:5])}")
    return found["refs"]


def _refuse_outside(path: str) -> None:
    """A ``ValueError`` when an HDF5-based file points outside itself (``guard.refused_references``), in the guard's words."""
    from ..readers.guard import refused_references

    reasons = refused_references(path)
    if reasons:
        more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        raise ValueError(f"{path}: points outside itself ({'; '.join(reasons[:3])}{more}); the scan never follows that, "
                         "and open refuses it (follow_outside=True reads it, for a file you trust)")


def open_catalog(catalog: str | os.PathLike, **kwargs: Any) -> Any:
    """The catalog as an intake-esm ``esm_datastore``, from its ESM export (made now when missing or older than the catalog).

    intake-esm opens a group's files from a pool of threads unless
    ``ITK_ESM_THREADING`` says otherwise; netCDF4 opened that way crashed
    the process or failed with "NetCDF: HDF error" in one run out of two
    here (intake-esm 2025.12 alone, without this package), so this sets
    ``ITK_ESM_THREADING=False`` unless the environment already chose.
    """
    import intake_esm

    os.environ.setdefault("ITK_ESM_THREADING", "False")
    import ast

    from .exports import export_esm

    catalog = os.fspath(catalog)
    out = os.path.normpath(catalog) + ".esm"  # beside the catalog: dask's read_parquet(catalog) reads every subfolder
    json_path = os.path.join(out, "collection.json")
    manifest = os.path.join(catalog, "_manifest.json")
    if not os.path.exists(json_path) or (os.path.exists(manifest) and os.path.getmtime(manifest) > os.path.getmtime(json_path)):
        import warnings

        for notice in export_esm(catalog, out)[1]:
            warnings.warn(notice, RuntimeWarning, stacklevel=2)
    kwargs.setdefault("read_csv_kwargs", {"converters": {"variable": ast.literal_eval}})
    return intake_esm.esm_datastore(json_path, **kwargs)  # type: ignore[arg-type]  # a path string is what its docs show
