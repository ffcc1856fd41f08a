"""Virtual datasets in Icechunk: the catalog's runs as virtual Zarr arrays, checked before they are combined.

``export --to icechunk`` builds, from the chunk references a scan made
(``--references``), one Icechunk repository holding every dataset of the
catalog: the files of a dataset are grouped as the ESM export groups them
(its global attributes), ordered by their time coverage and joined along
their time dimension. Nothing of the data is copied: each chunk is a virtual
reference to its byte range in its file, carrying the file's ETag (a local
file's as Icechunk's local store computes it, to the microsecond), so
Icechunk refuses to read a chunk whose file changed after the export
("chunk has changed"). Coordinates, and chunks
under the 500 bytes a reference set inlines, are written into the
repository. Every scanned root is a virtual chunk container of it.

Before arrays are combined, the files of a dataset are compared on what
would change the decoded values or the grid (``plan``): each variable's
dimensions, data type, chunk shape, fill value, codecs, ``units``,
``calendar``, ``scale_factor``, ``add_offset``, ``_FillValue`` and
``missing_value``, and the values of every array without the time
dimension (coordinates on the other dimensions). Files that differ are split
into datasets of their own, and a file whose length along time is not a
whole number of chunks ends its part (Zarr's chunk grid is regular), each
split with a note naming the files and the difference. ``export --check``
prints that plan without writing anything.

Local files and S3 objects are exported (a bucket is a container with the
endpoint of the export's storage options; its chunks are checked against
their objects' ETags). Exporting again after a re-scan makes one new commit
with only what changed:
files added at the end of a run are appended, a changed file's chunk
references are replaced, and a dataset whose files were removed or
reordered is written again; the commit message says which files, and every
earlier snapshot still reads.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from ..readers.cftime_range import counts_since, rebase
from ..readers.h5refs import distinct_phony_dims

#: the attributes of a variable that change its decoded values: files that differ in one are not one dataset
ENCODING_ATTRS = ("units", "calendar", "scale_factor", "add_offset", "_FillValue", "missing_value")
#: arrays without the time dimension larger than this (values) are compared by shape and type, not value by value
COMPARED_VALUES = 1_000_000
#: the root group's attribute that lists each dataset's files as exported, and its dimension (a re-export compares
#: the catalog with it); kept off the datasets' own groups, whose attributes are their files'
FILES_ATTR = "metaextract:datasets"
#: the dimension a run is joined along when its files name no CF time coordinate
DEFAULT_DIM = "time"


@dataclass
class Member:
    """One file of a dataset: its row, its reference set, and what the checks compare."""

    path: str
    located: str
    refs: Any
    mtime: float
    size: int
    etag: str | None = None
    #: its object was found unchanged since the scan (asked once, not for each chunk read)
    verified: bool = False
    #: a local file's ETag as Icechunk's local store computes it (``_when``), made once
    local_etag: str | None = None
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    start: str = ""
    end: str = ""
    #: the set's chunk keys by array (``_chunk_keys``), made once: a file of 2,000 arrays is not searched 2,000 times
    chunks_by_array: dict[str, list[str]] | None = None
    #: its time coordinate's (and bounds') values counted in the units of its dataset's first file (``_rebased``)
    rebased: dict[str, Any] = field(default_factory=dict)
    #: the arrays whose fill value is a ``_FillValue`` attribute of the file (``h5refs``' ``fill_attributes``); None
    #: for a scan that did not say (every fill value is then taken for one)
    filled: set[str] | None = None


@dataclass
class Dataset:
    """Files that combine into one group of the repository, in time order."""

    name: str
    dim: str
    members: list[Member]
    #: arrays along ``dim`` written as values (not references): the time coordinate and its bounds of files that count
    #: time from other dates (``_rebased``)
    as_values: set[str] = field(default_factory=set)

    @property
    def identities(self) -> dict[str, list[Any]]:
        """path -> [size, mtime, steps along the dimension, ETag]: what a re-export compares (``FILES_ATTR``)."""
        return {m.path: [m.size, m.mtime, (_steps(m, self.dim) or (0, 0))[0], m.etag] for m in self.members}


def _json(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


def _metadata(refs: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(variables by name: ``zarray``, ``attrs``, ``dims``; the root's attributes) of a kerchunk reference set."""
    variables: dict[str, dict[str, Any]] = {}
    keys = list(refs.keys())
    for key in keys:
        if key.endswith("/.zarray") and key.count("/") == 1:
            name = key[: -len("/.zarray")]
            zarray = _json(refs[key])
            attrs = _json(refs[f"{name}/.zattrs"]) if f"{name}/.zattrs" in refs else {}
            dims = attrs.pop("_ARRAY_DIMENSIONS", None) or [f"{name}_dim_{i}" for i in range(len(zarray["shape"]))]
            variables[name] = {"zarray": zarray, "attrs": attrs, "dims": list(dims)}
    root = _json(refs[".zattrs"]) if ".zattrs" in refs else {}
    return variables, root


def _chunk_bytes(member: Member, key: str) -> bytes | None:
    """One chunk's stored bytes: inlined in the set, or read from the row's own file (the only target a checked set has)."""
    from .references import inline_bytes

    value = member.refs.get(key) if hasattr(member.refs, "get") else None
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return inline_bytes(value)
    value = list(value)
    if _is_remote(member):
        from ..storage.remote import read_range, remote_stat

        if not member.verified and remote_stat(member.located).etag != member.etag:
            raise ValueError(f"{member.path}: changed since the scan (its ETag differs; scan again)")
        member.verified = True
        if len(value) == 1:
            return read_range(member.located, 0, member.size)
        return read_range(member.located, int(value[1]), int(value[1]) + int(value[2]))
    fd = _open_as_scanned(member)
    try:
        if len(value) == 1:
            return os.pread(fd, member.size, 0)
        return os.pread(fd, int(value[2]), int(value[1]))
    finally:
        os.close(fd)


def _is_remote(member: Member) -> bool:
    return "://" in member.located


def _open_as_scanned(member: Member) -> int:
    """The member's file, opened without following a link and refused unless its size and modification time are the
    row's: a name swapped or a file rewritten since the scan is never read in its place."""
    fd = os.open(member.located, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if st.st_size != member.size or abs(st.st_mtime - member.mtime) > 1e-3:
        os.close(fd)
        raise ValueError(f"{member.path}: changed since the scan (scan again)")
    return fd


def read_values(member: Member, name: str) -> Any:
    """An array's stored values (not decoded: no scale, no fill masking), assembled from its chunks with its codecs."""
    import numpy as np
    from numcodecs import get_codec

    meta = member.variables[name]["zarray"]
    shape, chunks = tuple(meta["shape"]), tuple(meta["chunks"])
    dtype = np.dtype(meta["dtype"])
    fill = meta.get("fill_value")
    out = np.full(shape, fill if fill is not None and not isinstance(fill, str) else (np.nan if dtype.kind == "f" else 0), dtype=dtype)
    codecs = [get_codec(c) for c in (meta.get("filters") or [])] + ([get_codec(meta["compressor"])] if meta.get("compressor") else [])
    grid = [range(-(-s // c)) for s, c in zip(shape, chunks)] if shape else [range(1)]
    import itertools

    sep = meta.get("dimension_separator") or "."
    for index in itertools.product(*grid):
        key = f"{name}/{sep.join(map(str, index)) if shape else '0'}"
        raw = _chunk_bytes(member, key)
        if raw is None:
            continue
        for codec in reversed(codecs):
            raw = codec.decode(raw)
        block = np.frombuffer(bytes(raw) if not isinstance(raw, np.ndarray) else raw.tobytes(), dtype=dtype)
        block = block.reshape(chunks, order=meta.get("order", "C")) if shape else block.reshape(())
        if not shape:
            return block
        where = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, shape))
        out[where] = block[tuple(slice(0, w.stop - w.start) for w in where)]
    return out


def _signature(member: Member, dim: str) -> dict[str, Any]:
    """What must be equal between the files of one dataset, by ``variable property``."""
    import hashlib

    import numpy as np

    out: dict[str, Any] = {}
    timed = _time_variables(member, dim)
    for name, var in sorted(member.variables.items()):
        meta = var["zarray"]
        joined = dim in var["dims"]
        shape = [None if d == dim else s for d, s in zip(var["dims"], meta["shape"])]
        out[f"{name} dimensions"] = var["dims"]
        out[f"{name} shape"] = shape
        out[f"{name} dtype"] = meta["dtype"]
        out[f"{name} chunk shape"] = meta["chunks"]
        out[f"{name} fill value"] = meta.get("fill_value")
        out[f"{name} codecs"] = [meta.get("filters"), meta.get("compressor")]
        for attr in ENCODING_ATTRS:
            if attr in var["attrs"]:
                rebasable = attr == "units" and name in timed and counts_since(var["attrs"][attr]) is not None
                out[f"{name} {attr}"] = REBASED if rebasable else var["attrs"][attr]
        if not joined:
            if math.prod(meta["shape"]) <= COMPARED_VALUES:
                values = np.ascontiguousarray(read_values(member, name))
                out[f"{name} values"] = hashlib.sha256(values.tobytes()).hexdigest()[:16]
    return out


#: the signature's time units of a joined coordinate and its bounds that count from a date: files that differ in them
#: combine when their values can be counted from the first file's date exactly (``_rebased``)
REBASED = "(days, hours, minutes or seconds since a date)"


def _time_variables(member: Member, dim: str) -> dict[str, str]:
    """The joined coordinate and its CF bounds (``bounds`` or ``climatology``), each with the units its stored values
    count in (bounds without units of their own count in the coordinate's)."""
    var = member.variables.get(dim)
    units = var["attrs"].get("units") if var is not None and var["dims"] == [dim] else None
    if not isinstance(units, str):
        return {}
    out = {dim: units}
    for key in ("bounds", "climatology"):
        bounds = var["attrs"].get(key) if var is not None else None
        if isinstance(bounds, str) and bounds in member.variables and member.variables[bounds]["dims"][:1] == [dim]:
            found = member.variables[bounds]["attrs"].get("units", units)
            if isinstance(found, str):
                out[bounds] = found
    return out


def _rebased(member: Member, first: Member, dim: str) -> dict[str, Any] | None:
    """The member's time coordinate and bounds counted in ``first``'s units ({} when they count alike), or None when
    they cannot be exactly (``cftime_range.rebase``)."""
    mine, theirs = _time_variables(member, dim), _time_variables(first, dim)
    if mine == theirs:
        return {}
    calendar = member.variables[dim]["attrs"].get("calendar")
    out = {}
    for name, units in mine.items():
        if name not in theirs:
            return None
        meta = member.variables[name]["zarray"]
        values = rebase(read_values(member, name), units, theirs[name], calendar, meta.get("fill_value"))
        if values is None:
            return None
        out[name] = values
    return out


def _rebase_parts(name: str, ds: Dataset, notes: list[str]) -> list[Dataset]:
    """The dataset, its files' time values counted from its first file's date where they count from others (a run
    written a year a file, each from its own first day); a file whose values cannot be so exactly starts a part."""
    out = [Dataset("", ds.dim, [])]
    for member in ds.members:
        part = out[-1]
        found = _rebased(member, part.members[0], ds.dim) if part.members else {}
        if found is None:
            notes.append(f"{name}: split: {os.path.basename(member.path)} counts {ds.dim} in "
                         f"{_time_variables(member, ds.dim).get(ds.dim)!r}, which {os.path.basename(part.members[0].path)}'s "
                         f"{_time_variables(part.members[0], ds.dim).get(ds.dim)!r} cannot count exactly")
            part = Dataset("", ds.dim, [])
            out.append(part)
            found = {}
        member.rebased = found
        part.members.append(member)
        if found:
            part.as_values |= set(_time_variables(part.members[0], ds.dim))
    return out


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _difference(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [k for k in sorted(set(a) | set(b)) if a.get(k, "(absent)") != b.get(k, "(absent)")]


def _names(members: list[Member]) -> str:
    return _short([m.path for m in members], 3)


def _steps(member: Member, dim: str) -> tuple[int, int] | None:
    """(length along ``dim``, the least common multiple of the chunk lengths along it of the arrays whose chunks are
    referenced: not the coordinates, which are written as values), or None when the file has no array along ``dim``."""
    length, chunk = None, 1
    for name, var in member.variables.items():
        if dim in var["dims"]:
            axis = var["dims"].index(dim)
            length = var["zarray"]["shape"][axis]
            if var["dims"] != [name]:
                chunk = math.lcm(chunk, var["zarray"]["chunks"][axis])
    return None if length is None else (length, chunk)


def split(name: str, dim: str, members: list[Member], notes: list[str]) -> list[Dataset]:
    """The dataset's files as parts that combine safely, each split said in ``notes``."""
    signatures = []
    for member in members:
        try:
            signatures.append((_signature(member, dim), member))
        except (OSError, ValueError) as exc:  # a file changed or gone since the scan: not combined with the others
            notes.append(f"{name}: {os.path.basename(member.path)} left out: {exc}")
    parts: list[tuple[dict[str, Any], list[Member]]] = []
    for sig, member in signatures:
        for known, group in parts:
            if known == sig:
                group.append(member)
                break
        else:
            parts.append((sig, [member]))
    if len(parts) > 1:
        first_sig, first = parts[0]
        for sig, group in parts[1:]:
            keys = _difference(first_sig, sig)
            said = "; ".join(f"{k}: {_describe(first_sig.get(k, '(absent)'))} in {_names(first)}, {_describe(sig.get(k, '(absent)'))} "
                             f"in {_names(group)}" for k in keys[:3])
            notes.append(f"{name}: split, its files differ in what decodes their values or places them on the grid ({said})")
    out: list[Dataset] = []
    for _sig, group in parts:
        current: list[Member] = []
        for i, member in enumerate(group):
            steps = _steps(member, dim)
            why = None
            if current and (steps is None or _steps(current[-1], dim) is None):
                why = f"{os.path.basename(member.path)} has no {dim} dimension to join along: a dataset of its own"
            elif current and member.start and current[-1].end and member.start <= current[-1].end:
                why = (f"{os.path.basename(member.path)} starts ({member.start}) before {os.path.basename(current[-1].path)} ends "
                       f"({current[-1].end}): files that overlap in time are not joined")
            if why:
                notes.append(f"{name}: split: {why}")
                out.append(Dataset("", dim, current))
                current = []
            current.append(member)
            if steps is not None and i < len(group) - 1 and steps[0] % steps[1]:
                notes.append(f"{name}: split after {os.path.basename(member.path)}: its {steps[0]} steps along {dim} are not a whole "
                             f"number of its chunks ({steps[1]} steps), and a Zarr chunk grid is regular")
                out.append(Dataset("", dim, current))
                current = []
        if current:
            out.append(Dataset("", dim, current))
    out = [part for ds in out for part in _rebase_parts(name, ds, notes)]
    for i, part in enumerate(out):
        part.name = name if i == 0 else f"{name}.part{i + 1}"
    return out


def _group_name(values: list[Any]) -> str:
    """A dataset's group in the repository: its group attributes' values joined by dots, made safe as a Zarr node name."""
    import re

    text = ".".join(str(v) for v in values if v not in (None, "")) or "dataset"
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("._") or "dataset"


def plan(catalog: str, notices: list[str]) -> list[Dataset]:
    """The catalog's datasets as they would be written: grouped as the ESM export groups files, each checked and split
    (``split``); rows without references are left out with a notice."""
    from ..storage.urls import absolute, is_url
    from . import references
    from .exports import group_value, grouping_row, is_coordinate, name_datasets
    from .read import group_attrs, record_section, trusted_records
    from .trust import CatalogInputError, mapping, text

    records = trusted_records(catalog, notices)
    records = [r for r in records if r.get("format") in ("netcdf4", "netcdf3", "hdf5")]
    attrs = group_attrs(records)
    rows: list[dict[str, Any]] = []
    for rec in records:
        path = rec["path"]
        if is_url(path) and not path.startswith("s3://"):
            notices.append(f"{path}: the Icechunk export takes local files and S3 objects; left out")
            continue
        if not (isinstance(rec.get("references"), str) and rec["references"]):
            notices.append(f"{path}: no chunk references (scan with --references; a file whose arrays cannot be referenced "
                           "says why in its record's references.reasons): left out")
            continue
        try:
            found = references.checked(catalog, rec["references"], path)
        except CatalogInputError as exc:
            notices.append(f"{exc}; left out")
            continue
        if isinstance(found, str):
            import fsspec
            from fsspec.implementations.reference import LazyReferenceMapper

            found = LazyReferenceMapper(found, fs=fsspec.filesystem("file"), engine="pyarrow")
        else:
            found = distinct_phony_dims(found.get("refs", found))  # dimensions xarray can open, as ``open`` names them
        section = record_section(rec)
        member = Member(path, path if is_url(path) else absolute(rec.get("located") or path), found, float(rec.get("mtime") or 0.0),
                        int(rec.get("size") or 0), text(rec.get("etag")))
        member.variables, member.attrs = _metadata(found)
        filled = mapping(mapping(rec.get("record")).get("references")).get("fill_attributes")
        member.filled = {n for n in filled if isinstance(n, str)} if isinstance(filled, list) else None
        coverage = mapping(mapping(section.get("cf_coverage")).get("time"))
        member.start, member.end = text(coverage.get("start")) or "", text(coverage.get("end")) or ""
        data = [name for name, var in member.variables.items() if not is_coordinate(name, var["dims"])]
        rows.append({**grouping_row(rec, data, attrs), "format": "reference", "member": member,
                     "key": tuple(mapping(section.get("attrs")).get(a) for a in attrs)})
    reasons = name_datasets(rows, attrs)  # what the ESM export groups as one dataset is one here: the same files
    groups: dict[tuple[Any, ...], dict[str, list[Member]]] = {}
    for row in rows:
        groups.setdefault(row["key"], {}).setdefault(row["dataset"], []).append(row["member"])
    out: list[Dataset] = []
    for key, datasets in sorted(groups.items(), key=lambda kv: str(kv[0])):
        if len(datasets) > 1:
            why = reasons.get(tuple(group_value(v) for v in key), [])
            notices.append(f"{_group_name(list(key))}: split into {len(datasets)} datasets, each its own group named after its "
                           f"first file: {'; '.join(why[:3]) or 'its files are not one run'}")
        for dataset, members in sorted(datasets.items()):
            members.sort(key=lambda m: (m.start, m.path))
            dim = _time_dim(members[0]) or DEFAULT_DIM
            out += split(_group_name([*key, dataset] if len(datasets) > 1 else list(key)), dim, members, notices)
    return out


def _time_dim(member: Member) -> str | None:
    """The dimension of the member's CF time coordinate (by its attributes), or None."""
    for name, var in member.variables.items():
        units = str(var["attrs"].get("units", ""))
        if var["dims"] == [name] and (var["attrs"].get("standard_name") == "time" or var["attrs"].get("axis") == "T" or " since " in units):
            return name
    return None


# ------------------------------------------------------------------ writing


def _codecs(meta: dict[str, Any]) -> dict[str, Any]:
    """zarr v3's serializer, filters and compressors for a v2 array's filters and compressor (numcodecs, as zarr wraps them)."""
    import numpy as np
    import zarr.codecs.numcodecs as wrapped
    from numcodecs import get_codec
    from zarr.abc.codec import ArrayArrayCodec
    from zarr.codecs import BytesCodec

    filters: list[Any] = []
    compressors: list[Any] = []
    for config in [*(meta.get("filters") or []), *([meta["compressor"]] if meta.get("compressor") else [])]:
        codec = get_codec(dict(config))
        cls = getattr(wrapped, type(codec).__name__, None)
        if cls is None:
            raise ValueError(f"codec {config.get('id')!r} has no Zarr v3 form here")
        made = cls(**{k: v for k, v in codec.get_config().items() if k != "id"})
        (filters if isinstance(made, ArrayArrayCodec) else compressors).append(made)
    dtype = np.dtype(meta["dtype"])
    endian = "big" if dtype.byteorder == ">" else "little"
    return {"filters": filters, "compressors": compressors, "serializer": BytesCodec(endian=endian if dtype.itemsize > 1 else None)}


def _attributes(var: dict[str, Any], masked: bool) -> dict[str, Any]:
    """The variable's attributes as xarray reads them from Zarr v3: with ``masked`` (its fill value is the file's
    ``_FillValue`` attribute), that fill value as the ``_FillValue`` attribute, encoded as xarray encodes it (NaN needs
    none). HDF5's own fill value (0 unless set; netCDF's default fill of a variable libnetcdf does not mark, a grid
    mapping's) is no ``_FillValue``: netCDF readers and xarray do not mask it in the file, nor here."""
    import numpy as np

    attrs = dict(var["attrs"])
    fill = attrs.pop("_FillValue", var["zarray"].get("fill_value") if masked else None)
    attrs = {k: _strict_json(v) for k, v in attrs.items()}
    if fill is not None and not isinstance(fill, str) and not (isinstance(fill, float) and math.isnan(fill)):
        attrs["_FillValue"] = _fill_attribute(fill, np.dtype(var["zarray"]["dtype"]))
    return attrs


def _strict_json(value: Any) -> Any:
    """Attributes as strict JSON: an infinity or NaN (``valid_max = Infinity`` in netcdf-c's test files) as the text
    Zarr v3 writes such a fill value in (``"Infinity"``, ``"-Infinity"``, ``"NaN"``). Icechunk reads its metadata as
    strict JSON: one such number, written as Python writes it, made the whole repository unreadable."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def _fill_attribute(value: Any, dtype: Any) -> Any:
    """A ``_FillValue`` as xarray writes it to Zarr v3 (``xarray.backends.zarr.FillValueCoder.encode``, 2026.9:
    integers and booleans as numbers, floats as the base64 of a little-endian double, bytes as base64), without
    importing xarray (half a second of an export). A type it does not encode keeps its value."""
    import base64
    import struct

    if dtype.kind == "S" and isinstance(value, bytes):
        return base64.standard_b64encode(value).decode()
    if dtype.kind == "b":
        return bool(value)
    if dtype.kind in "iu":
        return int(value)
    if dtype.kind == "f":
        return base64.standard_b64encode(struct.pack("<d", float(value))).decode()
    return value


def _location(member: Member) -> str:
    import pathlib

    return member.located if _is_remote(member) else pathlib.Path(member.located).as_uri()


def _when(member: Member) -> datetime.datetime | str:
    """What Icechunk checks the chunk's object against when it reads it: an object's ETag as scanned; a local file's
    ETag as Icechunk's local store makes it (object_store's: inode, modification time in microseconds and size, in
    hex), from the file found unchanged since the scan. A modification time would be compared in whole seconds (as
    HTTP's If-Unmodified-Since): a file rewritten within the second of the export, same size, was read as if unchanged."""
    if _is_remote(member):
        if member.etag:
            return member.etag
        return datetime.datetime.fromtimestamp(math.ceil(member.mtime), tz=datetime.timezone.utc)
    if member.local_etag is None:
        fd = _open_as_scanned(member)
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        member.local_etag = f"{st.st_ino:x}-{st.st_mtime_ns // 1000:x}-{st.st_size:x}"
    return member.local_etag


def _chunk_keys(member: Member, name: str) -> list[tuple[tuple[int, ...], Any]]:
    """(chunk index, reference) of one array's chunks in the member's set."""
    meta = member.variables[name]["zarray"]
    sep = meta.get("dimension_separator") or "."
    if member.chunks_by_array is None:
        member.chunks_by_array = {}
        for key in member.refs.keys() if hasattr(member.refs, "keys") else []:
            array, _, chunk = key.rpartition("/")
            if array and not chunk.startswith("."):  # not the array's own .zarray and .zattrs
                member.chunks_by_array.setdefault(array, []).append(chunk)
    out = []
    for chunk in member.chunks_by_array.get(name, []):
        try:
            index = tuple(int(p) for p in chunk.split(sep)) if meta["shape"] else (0,)
        except ValueError:
            continue
        out.append((index, member.refs[f"{name}/{chunk}"]))
    return out


def _write_dataset(store: Any, group: Any, ds: Dataset, start: int = 0, only: set[str] | None = None) -> None:
    """The dataset's arrays in ``group``: variables along ``ds.dim`` concatenated (chunks as virtual references, the
    dimension's coordinate as values), the others from its first file. An update writes less: ``start``, the first
    member whose chunks are written (files appended); ``only``, the files whose chunks are written again (changed in
    place). The joined coordinate is always written whole (it is small)."""
    import numpy as np

    first = ds.members[0]
    offsets, total = [], 0
    for member in ds.members:
        offsets.append(total)
        total += (_steps(member, ds.dim) or (0, 0))[0]
    whole = start == 0 and only is None
    existing = set(group.array_keys()) if not whole else set()  # listed once: each listing reads every array's metadata
    for name, var in first.variables.items():
        meta, dims = var["zarray"], var["dims"]
        joined = ds.dim in dims
        axis = dims.index(ds.dim) if joined else 0
        shape = list(meta["shape"])
        if joined:
            shape[axis] = total
        if name in existing:
            arr = group[name]
            if tuple(arr.shape) != tuple(shape):
                arr.resize(tuple(shape))
        else:
            fill = meta.get("fill_value")
            arr = group.create_array(name, shape=tuple(shape), chunks=tuple(meta["chunks"]), dtype=np.dtype(meta["dtype"]),
                                     fill_value=float(fill) if isinstance(fill, str) else fill, dimension_names=tuple(dims),
                                     attributes=_attributes(var, first.filled is None or name in first.filled), **_codecs(meta))
        if dims == [name] or not shape or name in ds.as_values:  # a coordinate of its own dimension, a scalar, a time
            if not joined:                                            # rebased: values, not references
                if whole:
                    arr[...] = read_values(first, name)
                continue
            if whole:  # one write
                arr[...] = np.concatenate([_values(m, name) for m in ds.members], axis=axis)
                continue
            for i, member in enumerate(ds.members):  # the slices of the files written now: other chunks stay as they were
                if (start and i >= start) or (only is not None and member.path in only):
                    values = _values(member, name)
                    arr[(slice(None),) * axis + (slice(offsets[i], offsets[i] + values.shape[axis]),)] = values
            continue
        for i, member in enumerate(ds.members if joined else [first]):
            if not (whole or (joined and start and i >= start) or (only is not None and member.path in only)):
                continue
            shift = offsets[i] // meta["chunks"][axis] if joined else 0
            _write_chunks(store, arr.path, member, name, axis if joined else None, shift)
    group.attrs.update(_strict_json(first.attrs))


def _values(member: Member, name: str) -> Any:
    """An array's stored values as its dataset writes them: counted in the first file's time units (``_rebased``)."""
    found = member.rebased.get(name)
    return found if found is not None else read_values(member, name)


def _write_chunks(store: Any, array: str, member: Member, name: str, axis: int | None, shift: int) -> None:
    """One file's chunks of one array, their indices along ``axis`` moved by ``shift`` chunks: a virtual reference each
    (with the file's ETag, ``_when``), or the stored bytes of a chunk the set inlined."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    sep = member.variables[name]["zarray"].get("dimension_separator") or "."
    for index, ref in _chunk_keys(member, name):
        moved = tuple(v + shift if d == axis else v for d, v in enumerate(index))
        key = f"{array}/c/{'/'.join(map(str, moved))}"
        if isinstance(ref, (list, tuple)) and len(ref) == 3:
            store.set_virtual_ref(key, _location(member), offset=int(ref[1]), length=int(ref[2]), checksum=_when(member))
        else:
            raw = _chunk_bytes(member, f"{name}/{sep.join(map(str, index))}")
            if raw is not None:
                sync(store.set(key, default_buffer_prototype().buffer.from_bytes(raw)))


def _containers(catalog: str, datasets: list[Dataset]) -> dict[str, Any]:
    """URL prefix -> Icechunk store configuration, for every scanned folder or bucket that holds an exported file: a
    local root's folder, an S3 bucket with the endpoint and region of the storage options the export was given."""
    import pathlib

    import icechunk

    from ..storage.remote import current_options
    from .trust import scanned_roots

    out: dict[str, Any] = {}
    roots = [os.path.abspath(r) for r in scanned_roots(catalog) if "://" not in r]
    options = current_options()
    client = dict(options.get("client_kwargs") or {})
    endpoint = client.get("endpoint_url") or options.get("endpoint_url")
    for ds in datasets:
        for member in ds.members:
            if _is_remote(member):
                bucket = member.located.split("://", 1)[1].split("/", 1)[0]
                out[f"s3://{bucket}/"] = icechunk.s3_store(
                    region=client.get("region_name") or options.get("region") or "us-east-1", endpoint_url=endpoint,
                    allow_http=bool(endpoint and endpoint.startswith("http://")), s3_compatible=bool(endpoint), force_path_style=bool(endpoint))
                continue
            root = next((r for r in roots if member.located.startswith(r.rstrip(os.sep) + os.sep)), os.path.dirname(member.located))
            out[pathlib.Path(root).as_uri().rstrip("/") + "/"] = icechunk.local_filesystem_store(root)
    return out


def repository(out: str, containers: dict[str, Any]) -> Any:
    """The Icechunk repository at ``out`` (made when missing), with a virtual chunk container for each URL prefix
    (its store configuration: no credentials are written), authorized for this export."""
    import icechunk

    icechunk.set_logs_filter("error")  # its warning that a local repository takes one writer at a time is for developers
    storage = icechunk.local_filesystem_storage(out)
    credentials = icechunk.containers_credentials({prefix: None for prefix in containers})
    if icechunk.Repository.exists(storage):
        repo = icechunk.Repository.open(storage, authorize_virtual_chunk_access=credentials)
        known = set(repo.config.virtual_chunk_containers or {})
        if set(containers) <= known:
            return repo
        config = repo.config
        for prefix, store in containers.items():
            config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(prefix, store))
        repo = icechunk.Repository.open(storage, config=config, authorize_virtual_chunk_access=credentials)
        repo.save_config()
        return repo
    config = icechunk.RepositoryConfig.default()
    for prefix, store in containers.items():
        config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(prefix, store))
    return icechunk.Repository.create(storage, config, authorize_virtual_chunk_access=credentials)


def export_icechunk(catalog: str, out: str, progress: Any = None) -> tuple[str, list[str]]:
    """Write (or update, with one new commit) the catalog's virtual datasets in the Icechunk repository ``out``.

    Returns (``out``, notices). A first export writes every dataset; a later one
    compares each dataset's files with those it exported (``FILES_ATTR``):
    files appended at the end are added, changed files' references replaced,
    and a dataset whose files were removed or reordered written again. Nothing
    changed: no commit.
    """
    import importlib.util

    if importlib.util.find_spec("icechunk") is None:
        raise ValueError("the Icechunk export needs icechunk: pip install 'metaextract_dask[virtual]'")
    notices: list[str] = []
    datasets = plan(catalog, notices)
    if not datasets:
        raise ValueError(f"{catalog}: no file to export to Icechunk (HDF5, netCDF-4 or classic netCDF files scanned with --references)")
    with warnings.catch_warnings():  # that numcodecs' codecs are not in Zarr v3's specification: zarr-python reads them
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3")
        return _export(catalog, out, datasets, notices)


def _export(catalog: str, out: str, datasets: list[Dataset], notices: list[str]) -> tuple[str, list[str]]:
    import zarr

    repo = repository(out, _containers(catalog, datasets))
    session = repo.writable_session("main")
    store = session.store
    root = zarr.open_group(store=store, mode="a", zarr_format=3)
    said: list[str] = []
    wanted = {ds.name for ds in datasets}
    found = root.attrs.get(FILES_ATTR)
    exported: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    groups = set(root.group_keys())  # listed once: each listing reads every group's metadata
    for name in sorted(groups - wanted):
        del root[name]
        exported.pop(name, None)
        said.append(f"{name}: removed")
    for ds in datasets:
        last = exported.get(ds.name)
        said += _update(store, root, ds, last if isinstance(last, dict) else {}, ds.name in groups)
        exported[ds.name] = {"dimension": ds.dim, "files": ds.identities}
    if said:
        root.attrs[FILES_ATTR] = exported
    if not said:
        notices.append(f"{out}: nothing changed since the last export; no commit")
        return out, notices
    message = f"metaextract export of {os.path.abspath(catalog)}: " + "; ".join(said)
    session.commit(message[:4000])
    return out, notices


def _update(store: Any, root: Any, ds: Dataset, last: dict[str, Any], there: bool) -> list[str]:
    """Write one dataset into the repository's root group, as little as its change since ``last`` (its dimension and
    files as exported) needs (``there``: its group is in the repository); what was done, in words."""
    if not there:
        _write_dataset(store, root.create_group(ds.name), ds)
        return [f"{ds.name}: {len(ds.members)} files written"]
    group = root[ds.name]
    before = dict(last.get("files") or {})
    now = ds.identities
    if before == now:
        return []
    paths_before, paths_now = list(before), [m.path for m in ds.members]
    changed = [p for p in paths_now if p in before and list(before[p]) != list(now[p])]
    added = [p for p in paths_now if p not in before]
    in_place = all(list(before[p])[2:3] == list(now[p])[2:3] for p in changed)  # as many steps: its chunks keep their indices
    appended = paths_now[: len(paths_before)] == paths_before and in_place
    if appended and last.get("dimension") == ds.dim:
        if changed:
            _write_dataset(store, group, ds, only=set(changed))
        if added:
            _write_dataset(store, group, ds, start=len(paths_before))
        out = [f"{ds.name}: " + ", ".join(w for w in (f"{len(added)} files appended ({_short(added)})" if added else "",
                                                          f"{len(changed)} files changed ({_short(changed)})" if changed else "") if w)]
        return out
    del root[ds.name]
    _write_dataset(store, root.create_group(ds.name), ds)
    gone = [p for p in paths_before if p not in now]
    return [f"{ds.name}: written again ({len(gone)} files removed, {len(added)} added, {len(changed)} changed: the run's files "
            f"moved along {ds.dim})"]


def _short(paths: list[str], shown: int = 5) -> str:
    """The first files' names, and how many more."""
    names = ", ".join(os.path.basename(p) for p in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


def check(catalog: str) -> tuple[list[Dataset], list[str]]:
    """The datasets an Icechunk export would write, and every note on what it would split or leave out (``--check``)."""
    notices: list[str] = []
    return plan(catalog, notices), notices


#: the STAC extensions a collection asset of a virtual store uses
VIRTUAL_SCHEMAS = ("https://stac-extensions.github.io/virtual-assets/v1.0.0/schema.json",
                   "https://stac-extensions.github.io/version/v1.2.0/schema.json")


def stac_assets(catalog: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, asset) of the Icechunk export beside the catalog (``CATALOG.icechunk``), as the STAC collection's assets: one
    per dataset at the repository's latest snapshot (``application/vnd.zarr+icechunk``, roles data, references,
    virtual and latest-version, ``vrt:hrefs`` naming the folders its chunks are read from), and one per such folder."""
    import pathlib

    from ..storage.urls import is_url
    from .trust import located, scanned_roots

    out_dir = os.path.normpath(catalog) + ".icechunk"
    if not os.path.isdir(out_dir):
        return []
    import icechunk
    import zarr

    icechunk.set_logs_filter("error")
    storage = icechunk.local_filesystem_storage(out_dir)
    if not icechunk.Repository.exists(storage):
        return []
    repo = icechunk.Repository.open(storage)
    snapshot = repo.lookup_branch("main")
    root = zarr.open_group(repo.readonly_session(snapshot_id=snapshot).store, mode="r", zarr_format=3)
    found = root.attrs.get(FILES_ATTR)
    exported: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    containers = sorted(repo.config.virtual_chunk_containers or {})
    sources = [(f"source-{i + 1}", prefix) for i, prefix in enumerate(containers)]
    roots = scanned_roots(catalog)

    def href(path: str) -> str:  # a row's path as scanned (relative to where the scan ran, or a URL) as a URL
        where = located(catalog, path, roots)
        return where if is_url(where) else pathlib.Path(os.path.abspath(where)).as_uri()

    assets: list[tuple[str, dict[str, Any]]] = []
    for name, entry in sorted(exported.items()):
        files = [href(f) for f in dict(entry.get("files") or {})] if isinstance(entry, dict) else []
        used = [key for key, prefix in sources if any(f.startswith(prefix) for f in files)]
        assets.append((f"{name}@{snapshot}", {
            "href": pathlib.Path(os.path.abspath(out_dir)).as_uri(), "type": "application/vnd.zarr+icechunk",
            "title": f"{name}: {len(files)} files as one virtual dataset (Icechunk group {name!r})",
            "version": snapshot, "roles": ["data", "references", "virtual", "latest-version"],
            "vrt:hrefs": [{"key": key, "href": f"#/assets/{key}"} for key in used]}))
    assets += [(key, {"href": prefix, "title": "the files the virtual chunks are read from", "roles": ["data"]})
               for key, prefix in sources]
    return assets
