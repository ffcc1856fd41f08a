"""From a catalog row to the data: ``open`` gives an xarray Dataset, ``open_catalog`` the intake-esm catalog.

A file with references in the catalog opens through them (fsspec's reference
filesystem and xarray's Zarr engine: only the chunks a computation touches
are read); otherwise its format's reader opens it (``open_dataset``: a
netCDF file with xarray's netCDF engine, an HDF5 file through references
made on the spot from the same code a scan uses, a plugin's format its own way).
"""

from __future__ import annotations

import os
from typing import Any

from ..readers.h5refs import open_references
from ..readers.registry import reader_of_format
from .read import _read_part, checked_parts

#: the row fields ``open`` needs
OPEN_COLUMNS = ["path", "format", "success", "references", "virtualizable", "path_bytes"]


def find_row(catalog: str, path: str) -> dict[str, Any]:
    """The catalog's row of ``path`` (as written in the catalog, or the same file by its absolute path)."""
    return find_rows(catalog, [path])[path]


def find_rows(catalog: str, paths: list[str]) -> dict[str, dict[str, Any]]:
    """{path: the catalog's row of it} for several paths, in one read of the catalog's parts; a ``KeyError`` names a
    path without a row."""
    wanted = {key: path for path in paths for key in (path, os.path.abspath(path))}
    found: dict[str, dict[str, Any]] = {}
    for part in checked_parts(catalog):
        for row in _read_part(part, OPEN_COLUMNS):
            asked = wanted.get(str(row.get("path"))) or wanted.get(os.path.abspath(str(row.get("path"))))
            if asked is not None:
                found[asked] = row  # later parts are newer
    missing = [p for p in paths if p not in found]
    if missing:
        raise KeyError(f"{missing[0]} has no row in the catalog {catalog}")
    return found


def open(catalog: str | os.PathLike[str], path_or_row: Any, *, follow_outside: bool = False, **kwargs: Any) -> Any:  # noqa: A001 - the public name
    """The data of catalog rows as an ``xarray.Dataset``, lazily, from any working folder.

    ``path_or_row``: a file's path, a row of ``read_catalog`` (a dict or a
    pandas Series), several rows (a DataFrame such as ``read_catalog`` or
    ``query_catalog`` returns, a list of rows or paths), or a query (a dict of
    ``query_catalog``'s ``variable``, ``time``, ``bbox``). Several rows open as
    one dataset combined by their coordinates, as ``xarray.open_mfdataset``
    combines files (its defaults; ``chunks={}``), each through its references
    where the catalog has them. ``kwargs`` go to ``xarray.open_dataset``
    (``decode_times``, ``chunks``...; plain HDF5 files default to
    ``mask_and_scale=False``) and, for several rows, ``compat``, ``data_vars``,
    ``coords``, ``join`` and ``combine_attrs`` to ``xarray.combine_by_coords``.

    Paths are found wherever the scan ran: a row keeps its path as the scan
    was given it, and a relative one is found through the catalog's manifest
    (``trust.located``); a file that is not there any more is a
    ``FileNotFoundError`` saying so. Failed rows, videos and binaries have no
    arrays to open: a ``ValueError`` says so; so does an HDF5 file that cannot
    be virtualized, with the reasons.

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
    catalog = os.fspath(catalog)
    rows = _rows(catalog, path_or_row)
    if len(rows) == 1:
        return _open_row(catalog, rows[0], follow_outside, kwargs)
    if not rows:
        raise ValueError(f"{catalog}: no rows to open")
    import inspect

    import xarray as xr

    defaults = inspect.signature(xr.open_mfdataset).parameters  # combined as open_mfdataset combines, in this xarray
    combine = {k: kwargs.pop(k, defaults[k].default) for k in ("compat", "data_vars", "coords", "join", "combine_attrs")}
    kwargs.setdefault("chunks", {})
    datasets = [_open_row(catalog, row, follow_outside, dict(kwargs)) for row in sorted(rows, key=lambda r: str(r.get("path")))]
    return xr.combine_by_coords(datasets, **combine)


#: the keys of a query (``query_catalog``'s conditions)
QUERY_KEYS = {"variable", "time", "bbox"}


def _rows(catalog: str, what: Any) -> list[dict[str, Any]]:
    """The rows ``open`` was asked for, each a dict with at least ``OPEN_COLUMNS`` when the catalog has them."""
    import pandas as pd

    if isinstance(what, dict) and "path" not in what and set(what) <= QUERY_KEYS:
        from .read import query_catalog

        what = query_catalog(catalog, **what)
    if isinstance(what, pd.DataFrame):
        what = what.to_dict("records")
    if isinstance(what, (str, os.PathLike)) or hasattr(what, "keys"):
        what = [what]
    items = [os.fspath(item) if isinstance(item, (str, os.PathLike)) else dict(item) for item in what]
    # paths, and narrow rows (query_catalog's): the rest of their rows from the catalog, all in one read of it
    lookup = [item if isinstance(item, str) else str(item.get("path")) for item in items
              if isinstance(item, str) or not set(OPEN_COLUMNS) <= set(item)]
    known = find_rows(catalog, lookup) if lookup else {}
    return [known[item] if isinstance(item, str) else {**known.get(str(item.get("path")), {}), **item} for item in items]


def _open_row(catalog: str, row: dict[str, Any], follow_outside: bool, kwargs: dict[str, Any]) -> Any:
    """One row's data (``open``)."""
    from ..readers.guard import restrict_plugins
    from ..storage.urls import is_url
    from . import references, trust

    stored = str(row.get("path"))
    path = trust.check_in_roots(catalog, row.get("path"))
    fmt = row.get("format")
    import numpy as np

    success = row.get("success")
    if not (isinstance(success, (bool, np.bool_)) and success):  # a flag, not any truthy value an edited catalog holds
        raise ValueError(f"{path}: its extraction failed; there is nothing to open")
    if not is_url(path) and not os.path.lexists(path):
        raise FileNotFoundError(f"{stored}: file not found (looked for {path}); the catalog's row is older than the file's removal "
                                "or move")
    restrict_plugins()  # before any HDF5 library of this process loads: plugins only from trusted folders
    if not follow_outside:
        _refuse_outside(path)
    reader = reader_of_format(fmt)
    for key, value in (dict(reader.open_options).get(str(fmt), {}) if reader is not None else {}).items():
        kwargs.setdefault(key, value)
    if isinstance(row.get("references"), str) and row["references"]:
        tail = os.sep + os.path.normpath(stored)
        base = path[: -len(tail)] if path != stored and path.endswith(tail) else None  # the folder relative targets are in
        return open_references(references.checked(catalog, row["references"], stored), base=base, **kwargs)
    ds = reader.open_dataset(path, str(fmt), **kwargs) if reader is not None else None
    if ds is None:
        raise ValueError(f"{path}: a {fmt} file has no arrays to open (open() reads the formats whose reader opens them "
                         "as xarray: HDF5, netCDF and plugins')")
    return ds


def _refuse_outside(path: str) -> None:
    """A ``ValueError`` when an HDF5-based file points outside itself (``guard.refused_references``), in the guard's words."""
    from ..readers.guard import refused_references

    reasons = refused_references(path)
    if reasons:
        more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        raise ValueError(f"{path}: points outside itself ({'; '.join(reasons[:3])}{more}); the scan never follows that, "
                         "and open refuses it (follow_outside=True reads it, for a file you trust)")


def open_catalog(catalog: str | os.PathLike[str], **kwargs: Any) -> Any:
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
    return intake_esm.esm_datastore(json_path, **kwargs)  # type: ignore[arg-type,attr-defined]  # a path string is what its docs show
