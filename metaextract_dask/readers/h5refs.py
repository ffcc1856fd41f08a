"""Kerchunk references of an HDF5-based file (HDF5, netCDF-4), made from the chunk layout h5py already knows.

The output is the reference set ``kerchunk.hdf.SingleHdf5ToZarr(path).translate()``
gives for the same file (version 1: Zarr v2 metadata as JSON text, each stored
chunk as ``[url, offset, size]``, chunks under ``INLINE`` bytes inlined), so
``fsspec``'s reference filesystem and xarray open it as a Zarr store. It is
made with h5py's own chunk iteration, without zarr, in the task that already
walks the file.

A file gets references only when every array can be read through them; else
``virtualizable`` is false and ``reasons`` says what stands in the way
(variable-length or string types, compound types, a filter with no Zarr
codec, external or virtual storage, chunks that skip different filters).
Nothing outside the file is followed: links are walked the way the HDF5
reader walks them.
"""

from __future__ import annotations

import base64
import builtins
import json
import math
import operator
import os
from collections.abc import Callable
from typing import Any

#: chunks smaller than this many bytes are stored in the references themselves (kerchunk's default)
INLINE = 500

#: attributes netCDF-4 and HDF5 dimension scales use for their own bookkeeping (kerchunk and h5netcdf hide them)
HIDDEN_ATTRS = frozenset({"REFERENCE_LIST", "CLASS", "DIMENSION_LIST", "NAME", "_Netcdf4Dimid", "_Netcdf4Coordinates",
                          "_nc3_strict", "_NCProperties"})

#: HDF5 filters with a Zarr (numcodecs) codec, by the name h5py gives them
CODECS = {"gzip", "shuffle", "32015"}


class NotVirtualizable(Exception):
    """One array cannot be read through references; the message says why."""


def attrs_json(obj: Any, items: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object's attributes (``items`` when already read) as the Zarr ``.zattrs`` of kerchunk: hidden ones left out,
    single values unwrapped."""
    import h5py
    import numpy as np

    out: dict[str, Any] = {}
    for name, value in (items if items is not None else dict(obj.attrs.items())).items():
        if name in HIDDEN_ATTRS:
            continue
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace") or " "
        elif isinstance(value, (np.ndarray, np.number, np.bool_)):
            if name == "_FillValue":
                continue
            if value.dtype.kind == "S":
                value = value.astype(str)
            if value.size == 1:
                value = value.flatten()[0]
                value = value.tolist() if isinstance(value, (np.ndarray, np.number, np.bool_)) else value
            else:
                value = value.tolist()
        elif isinstance(value, h5py.Empty):
            value = ""
        if isinstance(value, str) and value == "DIMENSION_SCALE":
            continue
        if isinstance(value, (str, int, float)):
            out[name] = value
        elif isinstance(value, (tuple, set, list)) and all(isinstance(v, (str, int, float)) for v in value):
            out[name] = list(value)
        else:
            out[name] = str(value)
    return out


def metadata_json(value: dict[str, Any]) -> str:
    """Zarr v2 metadata as kerchunk writes it: an attribute of infinity or NaN as Python's JSON writes it
    (``Infinity``, ``NaN``), which Python's, zarr's and fsspec's readers read."""
    return json.dumps(value, separators=(",", ":"))


def fill_json(value: Any, dtype: Any) -> Any:
    """A fill value as Zarr v2 writes it in ``.zarray``."""
    import numpy as np

    if value is None:
        return None
    v = np.asarray(value, dtype=dtype).squeeze()
    if dtype.kind == "f":
        x = float(v)
        return "NaN" if math.isnan(x) else "Infinity" if x == math.inf else "-Infinity" if x == -math.inf else x
    if dtype.kind in "iu":
        return int(v)
    if dtype.kind == "b":
        return bool(v)
    raise NotVirtualizable(f"fill value of dtype {dtype}")


def _codecs(dset: Any) -> list[dict[str, Any]]:
    """The dataset's filters as Zarr v2 codec configurations, in the order they decode."""
    if dset.scaleoffset:
        raise NotVirtualizable("the scaleoffset filter has no Zarr codec")
    out: list[dict[str, Any]] = []
    if dset.shuffle:
        out.append({"id": "shuffle", "elementsize": dset.dtype.itemsize})
    for fid, options in dset._filters.items():
        key = str(fid)
        if key not in CODECS:
            raise NotVirtualizable(f"the {key} filter has no Zarr codec here")
        if key == "gzip":
            out.append({"id": "zlib", "level": options})
        elif key == "32015":
            out.append({"id": "zstd", "level": options[0], "checksum": False})
    return out


def _dims(dset: Any, scale_path: Callable[[Any], str]) -> list[str]:
    """Dimension names as kerchunk gives them: the attached scale, the scale itself, else ``phony_dim_N``.

    Asked with h5py's low-level calls (what ``dset.dims[n][0].name`` does
    without its objects: half the time, 0.2 ms of a small netCDF-4 file's);
    the scale's path from ``scale_path`` (``_ScalePaths``).
    """
    import h5py

    dims = []
    dsid = dset.id
    for n in range(len(dset.shape)):
        scales = h5py.h5ds.get_num_scales(dsid, n)
        if scales == 1:
            found: list[str] = []
            h5py.h5ds.iterate(dsid, n, lambda scale: found.append(scale_path(scale)))
            dims.append(found[0][1:])
        elif h5py.h5ds.is_scale(dsid):
            dims.append(dset.name[1:])
        elif scales > 1:
            raise NotVirtualizable(f"{scales} dimension scales attached to dimension {n}")
        else:
            dims.append(f"phony_dim_{n}")
    return dims


class _ScalePaths:
    """A dimension scale's path, by its HDF5 object, from the file's walk (``objects``): libhdf5 names an object reached
    through a dimension list (``H5Iget_name``) by searching the whole file, 8 ms a scale in a file of 2,000 variables
    (netcdf-c's ref_hdf5_compat1.nc: 11 s of its references). The walk's paths are indexed once, when first asked."""

    def __init__(self, walked: list[tuple[str, Any, Any]]):
        self.walked = walked
        self.paths: dict[Any, str] | None = None

    def __call__(self, scale: Any) -> str:
        import h5py

        if self.paths is None:
            paths: dict[Any, str] = {}
            for path, link, obj in self.walked:
                if isinstance(obj, h5py.Dataset) and not isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                    paths.setdefault(obj.id, path)
            self.paths = paths
        found = self.paths.get(scale)
        return found if found is not None else str(_name(h5py.h5i.get_name(scale)))


def _name(raw: bytes) -> Any:
    """An object's name as h5py's ``name`` gives it: text when it is UTF-8, else the bytes."""
    try:
        return raw.decode("utf8")
    except UnicodeDecodeError:
        return raw


def _chunks(dset: Any, codecs: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    """("i.j" chunk key, file offset, stored size) of every stored chunk; codecs a uniform filter mask skips are dropped.

    The h5py callback only keeps each StoreInfo; the keys are made after, in
    bulk (10,000 chunks: 25 ms instead of 80).
    """
    dsid = dset.id
    if dset.chunks is None:
        offset = dsid.get_offset()
        return [] if offset is None else [(".".join("0" * (len(dset.shape) or 1)), offset, dsid.get_storage_size())]
    if dsid.get_num_chunks() == 0:
        return []
    infos: list[Any] = []
    dsid.chunk_iter(infos.append)
    masks = set(map(operator.attrgetter("filter_mask"), infos))
    if len(masks) > 1:
        raise NotVirtualizable("its chunks skip different filters (irregular chunks)")
    mask = masks.pop() if masks else 0
    if mask:
        bits = bin(mask)[2:][::-1]
        codecs[:] = [c for c, bit in zip(codecs, bits.ljust(len(codecs), "0")) if bit == "0"]
    chunk = dset.chunks
    if len(chunk) == 1:
        step = chunk[0]
        keys = [str(o[0] // step) for o in map(operator.attrgetter("chunk_offset"), infos)]
    else:
        keys = [".".join([str(o // c) for o, c in zip(offsets, chunk)]) for offsets in map(operator.attrgetter("chunk_offset"), infos)]
    return list(zip(keys, map(operator.attrgetter("byte_offset"), infos), map(operator.attrgetter("size"), infos)))


def _array(dset: Any, name: str, refs: dict[str, Any], url: str, read: Any, scale_path: Callable[[Any], str],
           filled: list[str]) -> int:
    """The ``.zarray``, ``.zattrs`` and chunk references of one dataset; returns how many chunk keys it added. Its
    name joins ``filled`` when its ``.zarray`` fill value is its ``_FillValue`` attribute (``fill_attributes``)."""
    import h5py

    if dset.shape is None:
        raise NotVirtualizable("an empty (null) dataspace")
    dtype = dset.dtype
    if dtype.kind not in "biuf":
        what = {"O": "variable-length strings or objects", "V": "a compound type", "S": "fixed-length strings",
                "U": "strings"}.get(dtype.kind, f"dtype {dtype}")
        raise NotVirtualizable(f"{what} (dtype {dtype})")
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise NotVirtualizable(f"extended-precision floats (dtype {dtype}): Zarr has no such data type")
    if dset.is_virtual:
        raise NotVirtualizable("a virtual dataset: its data lives in other files")
    if dset.external:
        raise NotVirtualizable("external raw storage: its data lives in other files")
    plist = dset.id.get_create_plist()
    compact = plist.get_layout() == h5py.h5d.COMPACT
    codecs = [] if compact else _codecs(dset)
    stored = [] if compact else _chunks(dset, codecs)
    if h5py.h5ds.is_scale(dset.id) and not stored and not compact:
        return 0  # a dimension with no coordinate values: kerchunk lists nothing for it
    names = list(dset.attrs)
    attrs = {k: dset.attrs[k] for k in names if k not in HIDDEN_ATTRS}  # 50 us an attribute: libnetcdf's own are not read
    netcdf = any("_Netcdf4" in k for k in names) or "since" in str(_text(attrs.get("units")) or "")
    fill = None if netcdf or compact else dset.fillvalue  # kerchunk writes compact data inline, with no fill value
    if attrs.get("_FillValue") is not None and not compact:
        fill = attrs["_FillValue"]
        filled.append(name)
    shape = list(dset.shape)
    refs[f"{name}/.zarray"] = metadata_json({"shape": shape, "chunks": list(dset.chunks or dset.shape), "dtype": dtype.str,
                                             "fill_value": fill_json(fill, dtype), "order": "C", "filters": codecs or None,
                                             "dimension_separator": ".", "compressor": None, "zarr_format": 2})
    refs[f"{name}/.zattrs"] = metadata_json({"_ARRAY_DIMENSIONS": _dims(dset, scale_path), **attrs_json(dset, attrs)})  # attributes read once
    if compact:
        if dset.nbytes < INLINE:
            refs[f"{name}/{'.'.join('0' * (dset.ndim or 1))}"] = inline_chunk(dset[()].tobytes())
            return 1
        raise NotVirtualizable("compact storage larger than the inline limit")
    trim = 4 if dset.fletcher32 else 0
    prefix = name + "/"
    for key, offset, size in stored:
        size -= trim
        refs[prefix + key] = [url, offset, size] if size >= INLINE else inline_chunk(read(offset, size))
    return len(stored)


class ReferencesJSON(bytes):
    """A reference set already encoded as JSON where it was made (the worker), not in the catalog's writer.

    10,000 chunk references pickled, unpickled and then encoded by the
    writer cost the main process about 50 ms a file; as bytes they cross
    the process boundary for almost nothing and are written as they are.
    """

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (ReferencesJSON, (bytes(self),))

    def load(self) -> dict[str, Any]:
        return json.loads(self)


def encoded(found: dict[str, Any]) -> dict[str, Any]:
    """``hdf5_references``' answer with its reference set as ``ReferencesJSON``."""
    refs = found.get("refs")
    if isinstance(refs, dict):
        return {**found, "refs": ReferencesJSON(json.dumps(refs, separators=(",", ":")).encode())}
    return found


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def inline_chunk(data: bytes) -> str:
    """Inlined chunk bytes as kerchunk stores them: UTF-8 text when they decode, else ``base64:``."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def hdf5_references(f: Any, url: str, partial: bool = False) -> dict[str, Any]:
    """``{"refs": {...} or None, "virtualizable": bool, "reasons": [...], "n_chunks": N, "fill_attributes": [...]}``
    for an open h5py file. ``fill_attributes``: the arrays whose ``.zarray`` fill value is their ``_FillValue``
    attribute; the others' is HDF5's fill value (kerchunk's, for arrays netCDF-4 does not mark as its own), which
    netCDF readers and xarray do not mask (``catalog.virtual`` writes ``_FillValue`` for these only).

    ``url`` is what the references point at (the file's path as scanned).
    ``partial``: the references of what can be read through them even when
    something cannot (its keys left out, the reasons said), for opening the
    file's arrays; otherwise such a file has none.
    """
    import h5py

    from .hdf5 import objects

    refs: dict[str, Any] = {".zgroup": metadata_json({"zarr_format": 2})}
    reasons: list[str] = []
    filled: list[str] = []
    n_chunks = 0
    from ..storage.urls import is_url

    if is_url(url):
        from ..storage.remote import open_remote

        fh = open_remote(url)
    else:
        fh = open(f.filename, "rb")
    try:
        def read(offset: int, size: int) -> bytes:
            fh.seek(offset)
            return fh.read(size)

        refs[".zattrs"] = metadata_json(attrs_json(f))
        walked = list(objects(f))
        scale_path = _ScalePaths(walked)
        for path, link, obj in walked:
            name = path.lstrip("/")
            if isinstance(link, h5py.ExternalLink):
                reasons.append(f"{path}: an external link to another file")
                continue
            if isinstance(link, h5py.SoftLink) or obj is None:
                continue
            try:
                if isinstance(obj, h5py.Group):
                    refs[f"{name}/.zgroup"] = metadata_json({"zarr_format": 2})
                    refs[f"{name}/.zattrs"] = metadata_json(attrs_json(obj))
                elif isinstance(obj, h5py.Dataset):
                    n_chunks += _array(obj, name, refs, url, read, scale_path, filled)
            except Exception as exc:  # noqa: BLE001 - an odd object is a reason, never a failed file
                reasons.append(f"{path}: {exc}" if isinstance(exc, NotVirtualizable) else f"{path}: {type(exc).__name__}: {exc}")
                if partial and f"{name}/.zarray" in refs:  # what it wrote before the reason showed (its .zarray first)
                    for key in [k for k in refs if k.startswith(f"{name}/")]:
                        del refs[key]
    finally:
        fh.close()
    if reasons and not partial:
        return {"refs": None, "virtualizable": False, "reasons": reasons, "n_chunks": n_chunks}
    filled = [name for name in filled if f"{name}/.zarray" in refs]
    if reasons:
        return {"refs": {"version": 1, "refs": refs}, "virtualizable": False, "reasons": reasons, "n_chunks": n_chunks,
                "fill_attributes": filled}
    return {"refs": {"version": 1, "refs": refs}, "virtualizable": True, "reasons": [], "n_chunks": n_chunks,
            "fill_attributes": filled}


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


def open_references(fo: Any, base: str | None = None, **kwargs: Any) -> Any:
    """An xarray Dataset over a kerchunk reference set (a dict, a JSON file or a Parquet reference folder).

    A Parquet folder is opened with pyarrow: fsspec's own default for a
    folder path is fastparquet, which this project does not install. A dict
    or JSON file gets distinct phony dimensions (``distinct_phony_dims``).
    ``base``: the folder the set's relative target paths are relative to (a
    scan given a relative path made them; they are opened from anywhere).
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
    options: dict[str, Any] = {"fo": fo, "remote_protocol": "file"}
    if base:
        from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
        from fsspec.implementations.dirfs import DirFileSystem
        from fsspec.implementations.local import LocalFileSystem

        # asynchronous, as the reference filesystem Zarr's store makes (it refuses a target that is not)
        local = AsyncFileSystemWrapper(LocalFileSystem(), asynchronous=True)
        options = {"fo": fo, "fs": DirFileSystem(path=base, fs=local, asynchronous=True)}
    backend = {"consolidated": False, "storage_options": options}
    backend.update(kwargs.pop("backend_kwargs", {}))
    return xr.open_dataset("reference://", engine="zarr", backend_kwargs=backend, **kwargs)


def references_now(path: str) -> dict[str, Any]:
    """References of an HDF5 file's arrays made now: a dataset that cannot be read through them (strings, a compound
    type, a filter with no Zarr codec) is left out with a ``RuntimeWarning`` naming it and why; a ValueError says why
    when no array can be read."""
    import warnings

    from .hdf5 import open_file

    with open_file(path) as f:
        found = hdf5_references(f, path, partial=True)
    reasons = found["reasons"]
    shown = "; ".join(reasons[:5]) + (f" and {len(reasons) - 5} more" if len(reasons) > 5 else "")
    if not any(k.endswith("/.zarray") or k == ".zarray" for k in found["refs"]["refs"]):
        raise ValueError(f"{path}: cannot be opened as arrays: {shown or 'it holds no dataset'}")
    if reasons:
        warnings.warn(f"{path}: opened without what cannot be read as arrays: {shown}", RuntimeWarning, stacklevel=3)
    return found["refs"]
