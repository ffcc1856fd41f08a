"""Zarr stores (v2 and v3, consolidated or not) as one row each, through zarr-python, never walked as files.

A folder holding ``zarr.json`` (v3), ``.zgroup`` or ``.zarray`` (v2) is a
store: the walk lists it as one entry (its size the bytes of every file in
it, its time the latest of any), and this reader describes it as zarr-python
reads it: the zarr format, whether its metadata is consolidated, every group
with its attributes, every array with its shape, chunks (and shards), data
type, fill value, codecs, dimension names (v3's own, or xarray's
``_ARRAY_DIMENSIONS``) and attributes, and the CF coverage of its time,
latitude and longitude coordinates as for a netCDF file. Statistics are read
chunk by chunk (a shard at a time when sharded), packed into chunk tasks as
for HDF5, of the values as xarray gives them (``_FillValue`` and
``missing_value`` left out and counted, ``scale_factor``/``add_offset``
applied).

Hostile stores: every key is opened beneath the store's folder descriptor,
one path component at a time, never through a symbolic link (a chunk that is
a link to a file outside is refused and named in the record's warnings, not
read); an array whose codecs would run code from the store (numcodecs'
``pickle``) is described and never decoded; an array that declares far more
data than the store holds is described, its statistics skipped with a
warning. Install with ``pip install 'metaextract_dask[zarr]'``.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import math
import os
import stat
from collections.abc import Sequence
from typing import Any, Iterator

from ..core.model import ChunkSpec, ChunkType, FileInfo
from ..core.settings import StreamingConfig
from . import arrays, cf
from .base import State

EXTRA_HINT = "Zarr support needs zarr-python 3: pip install 'metaextract_dask[zarr]'"
#: the codecs that would run code from the store when decoding (numcodecs' Pickle unpickles)
UNSAFE_CODECS = frozenset({"pickle"})
#: an array declaring more than this many times the store's bytes (plus 64 MiB) has no statistics: its chunks are
#: nearly all missing (fill values), and reading them would cost time out of all proportion to the store
DECLARED_LIMIT = 64
#: a store whose root is an array: the array's name
ROOT = "/"
#: the names of Zarr's metadata documents: a remote store asks for each once
DOCUMENTS = frozenset({"zarr.json", ".zgroup", ".zarray", ".zattrs", ".zmetadata"})
#: the longest metadata document read when zarr-python cannot open an array
MAX_DOCUMENT = 1 << 20
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_DIRECTORY


def open_beneath(dirfd: int, key: str, refused: list[str], directory: bool = False) -> int | None:
    """A descriptor of ``key`` (``a/b/c``) beneath the folder ``dirfd``, one component at a time, never through a
    link; None when it is missing, or refused (a link, ``..``, not a regular file), the refusal noted in ``refused``."""
    parts = key.split("/") if key else []
    if any(p in ("", ".", "..") for p in parts):
        refused.append(key)
        return None
    held: list[int] = []
    current = dirfd
    try:
        for part in parts[:-1]:
            current = os.open(part, _OPEN_DIR, dir_fd=current)
            held.append(current)
        if not parts:
            return os.dup(dirfd)
        fd = os.open(parts[-1], _OPEN_DIR if directory else _OPEN_FILE, dir_fd=current)
    except OSError as exc:
        if exc.errno == errno.ELOOP and len(refused) < 1000:  # O_NOFOLLOW met a link
            refused.append(key)
        return None
    finally:
        for fd_ in held:
            os.close(fd_)
    if not directory and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        refused.append(key)
        return None
    return fd


def _read(fd: int, byte_range: Any) -> bytes:
    """A whole file, or the range zarr asks for (``RangeByteRequest``, ``OffsetByteRequest``, ``SuffixByteRequest``)."""
    with os.fdopen(fd, "rb") as f:
        if byte_range is None:
            return f.read()
        size = f.seek(0, os.SEEK_END)
        if hasattr(byte_range, "end"):
            f.seek(byte_range.start)
            return f.read(max(0, byte_range.end - byte_range.start))
        f.seek(byte_range.offset if hasattr(byte_range, "offset") else max(0, size - byte_range.suffix))
        return f.read()


def read_only_store(root: str, get: Any, listing: Any) -> Any:
    """A read-only zarr store named ``root`` whose keys are read by ``get(key, byte_range)`` (bytes, or None when
    missing) and listed by ``listing(prefix, deep)`` (keys under the prefix, or names directly in it)."""
    import asyncio

    from zarr.core.buffer import default_buffer_prototype
    from zarr.storage import LocalStore

    class ReadOnlyStore(LocalStore):
        def __init__(self) -> None:
            super().__init__(root, read_only=True)

        async def _open(self, *, mode: Any = None) -> None:
            self._is_open = True  # read through ``get``: the name is never looked up again

        def _ensure_open_sync(self) -> None:
            self._is_open = True

        def _get(self, key: str, prototype: Any, byte_range: Any) -> Any:
            data = get(key, byte_range)
            return None if data is None else (prototype or default_buffer_prototype()).buffer.from_bytes(data)

        def get_sync(self, key: str, *, prototype: Any = None, byte_range: Any = None) -> Any:
            return self._get(key, prototype, byte_range)

        async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
            return await asyncio.to_thread(self._get, key, prototype, byte_range)

        async def get_partial_values(self, prototype: Any, key_ranges: Any) -> list[Any]:
            return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

        async def exists(self, key: str) -> bool:
            return get(key, _NOTHING) is not None

        async def list(self) -> Any:
            for key in listing("", True):
                yield key

        async def list_prefix(self, prefix: str) -> Any:
            for key in listing(prefix, True):
                yield key

        async def list_dir(self, prefix: str) -> Any:
            for key in listing(prefix, False):
                yield key

    return ReadOnlyStore()


class _Nothing:
    """A byte range of no bytes: ``exists`` asks whether a key is there without reading it."""

    start = end = 0


_NOTHING = _Nothing()


def safe_store(root: str, dirfd: int, refused: list[str]) -> Any:
    """A read-only zarr store of the folder ``dirfd`` (named ``root``) that reads nothing outside it (``open_beneath``)."""

    def get(key: str, byte_range: Any) -> bytes | None:
        fd = open_beneath(dirfd, key, refused)
        return None if fd is None else _read(fd, byte_range)

    def listing(prefix: str, deep: bool) -> list[str]:
        out: list[str] = []
        stack = [prefix.strip("/")]
        while stack:
            folder = stack.pop()
            fd = open_beneath(dirfd, folder, refused, directory=True)
            if fd is None:
                continue
            try:
                with os.scandir(fd) as it:
                    for entry in it:
                        key = f"{folder}/{entry.name}" if folder else entry.name
                        if entry.is_symlink():
                            refused.append(key)
                        elif entry.is_dir(follow_symlinks=False):
                            stack.append(key) if deep else out.append(entry.name)
                        elif entry.is_file(follow_symlinks=False):
                            out.append(key if deep else entry.name)
            finally:
                os.close(fd)
        return out

    return read_only_store(root, get, listing)


def remote_store(url: str) -> Any:
    """A read-only zarr store of a prefix, read through the scan's own filesystem (its storage options, timeouts and
    redirect rules), every request counted into the scan's count of the task that opened it."""
    from ..storage.remote import access_error, current_count, filesystem

    fs, base = filesystem(url)
    base = base.rstrip("/")
    count = current_count()

    def counted(data: bytes) -> bytes:
        if count is not None:
            count.add(len(data))
        return data

    documents: dict[str, bytes | None] = {}  # metadata documents (and their absence), each asked for once

    def get(key: str, byte_range: Any) -> bytes | None:
        name = key.rsplit("/", 1)[-1]
        if name in DOCUMENTS and byte_range is None or byte_range is _NOTHING and key in documents:
            if key not in documents:
                documents[key] = fetch(key, None)
            return documents[key] if byte_range is None or documents[key] is None else b""
        return fetch(key, byte_range)

    def fetch(key: str, byte_range: Any) -> bytes | None:
        path = f"{base}/{key}"
        try:
            if byte_range is _NOTHING:
                return b"" if fs.exists(path) else None
            if byte_range is None:
                return counted(fs.cat_file(path))
            if hasattr(byte_range, "end"):
                return counted(fs.cat_file(path, byte_range.start, byte_range.end))
            if hasattr(byte_range, "offset"):
                return counted(fs.cat_file(path, byte_range.offset))
            return counted(fs.cat_file(path, -byte_range.suffix))
        except FileNotFoundError:
            if count is not None:
                count.add(0)
            return None
        except Exception as exc:  # noqa: BLE001 - every store raises its own errors
            raise access_error(f"{url.rstrip('/')}/{key}", exc) from exc

    def listing(prefix: str, deep: bool) -> list[str]:
        path = f"{base}/{prefix.strip('/')}".rstrip("/")
        try:
            names = fs.find(path) if deep else fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        if count is not None:
            count.add(0)
        inside = len(base) + 1
        return [n.rstrip("/")[inside:] if deep else n.rstrip("/").rsplit("/", 1)[-1] for n in names]

    return read_only_store(url, get, listing)


class StoreHandle:
    """An open store: its root node (group or array), every array by path, the keys it refused to follow."""

    def __init__(self, root: Any, store: Any, dirfd: int | None, refused: list[str]) -> None:
        self.root, self.store, self.dirfd, self.refused = root, store, dirfd, refused
        self.arrays: dict[str, Any] = {}
        #: arrays zarr-python cannot open, by their own metadata documents (and why)
        self.documents: dict[str, tuple[dict[str, Any], str]] = {}
        self.groups: dict[str, Any] = {}
        self.problems: list[str] = []
        if _is_array(root):
            self.arrays[ROOT] = root
            return
        self.groups[""] = root
        stack = [("", root)]
        while stack:
            prefix, group = stack.pop()
            try:
                members = list(group.members())
            except Exception:  # noqa: BLE001 - one member's metadata does not parse: each member on its own
                members = self._one_by_one(prefix, group)
            for name, node in sorted(members, key=lambda m: m[0]):
                path = f"{prefix}/{name}" if prefix else name
                if _is_array(node):
                    self.arrays[path] = node
                else:
                    self.groups[path] = node
                    stack.append((path, node))


    def _one_by_one(self, prefix: str, group: Any) -> list[tuple[str, Any]]:
        """The members of a group whose listing failed, opened one at a time: a member whose metadata does not parse
        is a warning naming it (a v2 string array with a numeric fill value, which zarr-python 3 refuses)."""
        out = []
        for name in sorted(self.listing(prefix)):
            if name.startswith(".") or name == "zarr.json":
                continue
            path = f"{prefix}/{name}" if prefix else name
            try:
                out.append((name, group[name]))
            except KeyError:
                continue  # a folder or file that is no member (a chunk of the group's own array)
            except Exception as exc:  # noqa: BLE001 - this member only: described from its own metadata document
                doc = self._document(path)
                if doc is None:
                    self.problems.append(f"{path}: not read: {exc} [{type(exc).__name__}]")
                else:
                    self.documents[path] = (doc, f"described from its metadata document: zarr-python cannot open it ({exc} [{type(exc).__name__}])")
        return out

    def _document(self, path: str) -> dict[str, Any] | None:
        """An array's own metadata document (v2 ``.zarray`` with its ``.zattrs``, or v3 ``zarr.json``), or None."""
        import json

        for name in (".zarray", "zarr.json"):
            text = self.read(f"{path}/{name}")
            if text is None:
                continue
            try:
                doc = json.loads(text)
                attrs = self.read(f"{path}/.zattrs") if name == ".zarray" else None
                if attrs is not None and isinstance(doc, dict):
                    doc["attributes"] = json.loads(attrs)
            except ValueError:
                return None
            return doc if isinstance(doc, dict) and doc.get("node_type", "array") == "array" and "shape" in doc else None
        return None


    def read(self, key: str) -> bytes | None:
        """A metadata document of the store (at most ``MAX_DOCUMENT`` bytes), or None."""
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        found = sync(self.store.get(key, default_buffer_prototype()))
        return None if found is None else found.to_bytes()[:MAX_DOCUMENT]

    def listing(self, prefix: str) -> list[str]:
        """Names directly under a prefix of the store."""
        from zarr.core.sync import sync

        async def names() -> list[str]:
            return [n async for n in self.store.list_dir(prefix)]

        return sync(names())


def _is_array(node: Any) -> bool:
    return hasattr(node, "shape") and hasattr(node, "chunks")


@contextlib.contextmanager
def open_store(path: str) -> Iterator[StoreHandle]:
    """The store read-only, by the scan's pinned descriptor of its folder (or one opened now, never through a link)."""
    import zarr

    from ..core import pin
    from ..storage.urls import is_url

    refused: list[str] = []
    if is_url(path):  # its format told by its zarr.json (read once): zarr-python would ask for every v2 document too
        store = remote_store(path)
        v3 = store.get_sync("zarr.json") is not None
        yield StoreHandle(zarr.open(store=store, mode="r", zarr_format=3 if v3 else 2), store, None, refused)
        return
    held = pin.descriptor(path)
    dirfd = os.dup(held) if held is not None else os.open(path, _OPEN_DIR)
    try:
        store = safe_store(path, dirfd, refused)
        yield StoreHandle(zarr.open(store=store, mode="r"), store, dirfd, refused)
    finally:
        os.close(dirfd)


def _codec_info(arr: Any) -> tuple[dict[str, Any], list[str]]:
    """(the array's codecs as its metadata spells them, their names): v3's ``codecs``, v2's ``compressor`` and ``filters``."""
    meta = arr.metadata.to_dict()
    if meta.get("zarr_format") == 3:
        codecs = meta.get("codecs") or []
        names = [str(c.get("name")) for c in codecs if isinstance(c, dict)]
        for c in codecs:  # sharding: its inner codecs are the storage's
            if isinstance(c, dict) and c.get("name") == "sharding_indexed":
                names += [str(i.get("name")) for i in (c.get("configuration") or {}).get("codecs") or [] if isinstance(i, dict)]
        return {"codecs": arrays.to_jsonable(codecs)}, [n for n in names if n not in ("bytes", "sharding_indexed")]
    compressor, filters = meta.get("compressor"), meta.get("filters") or []
    names = [str(f.get("id")) for f in filters if isinstance(f, dict)] + ([str(compressor.get("id"))] if isinstance(compressor, dict) else [])
    return {"compressor": arrays.to_jsonable(compressor), "filters": arrays.to_jsonable(filters) or None}, names


def _dims(arr: Any, attrs: dict[str, Any]) -> list[str] | None:
    names = getattr(arr.metadata, "dimension_names", None) or attrs.get("_ARRAY_DIMENSIONS")
    return [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def _fill(arr: Any, attrs: dict[str, Any]) -> Any:
    """The value xarray reads as missing: ``_FillValue``, else (xarray's v2 stores) the array's own fill value."""
    if "_FillValue" in attrs:
        return attrs["_FillValue"]
    if arr.metadata.zarr_format == 2 and "_ARRAY_DIMENSIONS" in attrs:
        return arrays.to_jsonable(arr.fill_value)
    return None


def describe_store(handle: StoreHandle) -> dict[str, Any]:
    """Groups, arrays and CF coverage of an open store."""
    root = handle.root
    warnings = list(handle.problems)
    consolidated = getattr(root.metadata, "consolidated_metadata", None) is not None
    out: dict[str, Any] = {"zarr_format": int(root.metadata.zarr_format), "node": "array" if _is_array(root) else "group",
                           "consolidated": consolidated, "attrs": arrays.to_jsonable(dict(root.attrs)), "groups": {}, "arrays": {}}
    for path, group in handle.groups.items():
        if path:
            out["groups"][path] = {"attrs": arrays.to_jsonable(dict(group.attrs))}
    for path, arr in handle.arrays.items():
        entry: dict[str, Any] = {}
        try:
            attrs = dict(arr.attrs)
            codecs, names = _codec_info(arr)
            entry.update({"shape": list(arr.shape), "chunks": list(arr.chunks), "dtype": str(arr.dtype),
                          "fill_value": arrays.to_jsonable(arr.fill_value), "dims": _dims(arr, attrs), **codecs,
                          "codec_names": names, "attrs": arrays.to_jsonable({k: v for k, v in attrs.items() if k != "_ARRAY_DIMENSIONS"})})
            shards = getattr(arr, "shards", None)
            if shards:
                entry["shards"] = list(shards)
            if arr.metadata.zarr_format == 2:
                entry["order"] = arr.order
            if UNSAFE_CODECS & set(names):
                cf.warn(out, path, entry, f"not read: its codecs ({', '.join(sorted(UNSAFE_CODECS & set(names)))}) would run code from the store")
        except Exception as exc:  # noqa: BLE001 - one array whose metadata does not parse: a warning on it
            entry.setdefault("attrs", {})
            cf.warn(out, path, entry, f"not described: {exc} [{type(exc).__name__}]")
        out["arrays"][path] = entry
    for path, (doc, why) in handle.documents.items():
        entry = {k: arrays.to_jsonable(doc.get(k)) for k in ("shape", "chunks", "dtype", "fill_value", "order", "compressor", "filters",
                                                           "codecs", "dimension_names") if k in doc}
        entry["attrs"] = arrays.to_jsonable({k: v for k, v in (doc.get("attributes") or {}).items() if k != "_ARRAY_DIMENSIONS"})
        entry["codec_names"] = _document_codecs(doc)
        cf.warn(out, path, entry, why)
        if UNSAFE_CODECS & set(entry["codec_names"]):
            cf.warn(out, path, entry, f"not read: its codecs ({', '.join(sorted(UNSAFE_CODECS & set(entry['codec_names'])))}) would run code from the store")
        out["arrays"][path] = entry
    out["warnings"] = warnings + out.get("warnings", [])
    try:
        readable = {p: e for p, e in out["arrays"].items() if p in handle.arrays and "shape" in e and not (UNSAFE_CODECS & set(e["codec_names"]))}
        view = {"variables": readable, "warnings": out["warnings"]}
        out["cf_coverage"] = cf.coverage(view, lambda p: _values(handle.arrays[p], readable[p])[...])
    except Exception as exc:  # noqa: BLE001 - the coverage is one property of the store
        out["cf_coverage"] = {}
        out["warnings"].append(f"cf_coverage: {exc} [{type(exc).__name__}]")
    return out


def _document_codecs(doc: dict[str, Any]) -> list[str]:
    """The codec names of an array's metadata document (v2's compressor and filters, v3's codecs)."""
    found = [doc.get("compressor"), *(doc.get("filters") or []), *(doc.get("codecs") or [])]
    return [str(c.get("id") or c.get("name")) for c in found if isinstance(c, dict)]


class _Values:
    """An array sliced as xarray reads it: fill and missing values masked, scale and offset applied."""

    def __init__(self, arr: Any, missing: list[Any], scale: Any, offset: Any) -> None:
        self.arr, self.missing, self.scale, self.offset = arr, missing, scale, offset
        self.shape = tuple(arr.shape)

    def __getitem__(self, slices: Any) -> Any:
        import numpy as np

        values = np.asarray(self.arr[slices])
        mask = None
        for m in self.missing:
            if isinstance(m, float) and math.isnan(m):
                continue  # NaN: counted apart as NaN
            try:
                hit = values == np.asarray(m, dtype=values.dtype)
            except (TypeError, ValueError, OverflowError):
                continue
            mask = hit if mask is None else mask | hit
        out = np.ma.MaskedArray(values, mask=mask) if mask is not None and mask.any() else values
        if self.scale is not None or self.offset is not None:
            out = out * (self.scale if self.scale is not None else 1) + (self.offset if self.offset is not None else 0)
        return out


def _number(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _values(arr: Any, entry: dict[str, Any]) -> _Values:
    attrs = entry.get("attrs") or {}
    missing = [v for v in (_fill(arr, {**attrs, **({"_ARRAY_DIMENSIONS": 1} if entry.get("dims") else {})}), attrs.get("missing_value"))
               if v is not None]
    return _Values(arr, [m for v in missing for m in (v if isinstance(v, list) else [v])],
                   _number(attrs.get("scale_factor")), _number(attrs.get("add_offset")))


class ZarrReader(arrays.ArrayFileReader):
    """Zarr stores: groups, arrays, codecs, attributes, CF coverage and statistics from chunks."""

    name = "zarr"
    formats = frozenset({"zarr"})
    folder_markers = frozenset({"zarr.json", ".zgroup", ".zarray"})
    media_types = {"zarr": "application/vnd.zarr"}
    esm_formats = {"zarr": "zarr"}
    #: a store is many files: its checksum would be of no one file (none is made)
    hashes_itself = True
    columns = (("zarr_format", "int32"), ("consolidated", "bool"), ("n_arrays", "int32"), *cf.COVERAGE_COLUMNS, *arrays.ARRAY_COLUMNS)
    metadata_key = "store"
    array_word = "arrays"

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("zarr") else EXTRA_HINT

    def media_type(self, fmt: str, section: dict[str, Any]) -> str | None:
        return "application/vnd.zarr; version=3" if section.get("zarr_format") == 3 else "application/vnd.zarr"

    def open(self, path: str) -> Any:
        return open_store(path)

    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        with self._handle(info.path) as handle:
            found = [a for a in self.arrays_of(handle) if a.nbytes <= _declared_limit(info.size)]
        meta = ChunkSpec(info.path, 0, ChunkType.METADATA, 0, min(info.size, 4096), self.metadata_key)
        return [meta, *arrays.pack_sections(info.path, found, chunk_size, first_id=1)]

    def arrays_of(self, handle: Any) -> list[arrays.ArrayInfo]:
        found = []
        for path, arr in handle.arrays.items():
            try:
                if not arr.shape or not arrays.is_numeric(arr.dtype) or UNSAFE_CODECS & set(_codec_info(arr)[1]):
                    continue
                cell = getattr(arr, "shards", None) or arr.chunks  # a shard is one object to read
                found.append(arrays.ArrayInfo(path, tuple(arr.shape), arr.dtype.itemsize, tuple(cell)))
            except Exception:  # noqa: BLE001 - an array whose metadata does not parse: described with its warning
                continue
        return found

    def describe(self, handle: Any, metadata_only: bool = False) -> dict[str, Any]:
        return describe_store(handle)

    def array(self, handle: Any, name: str) -> tuple[Any, Any]:
        arr = handle.arrays[name]
        attrs = dict(arr.attrs)
        return _values(arr, {"attrs": attrs, "dims": _dims(arr, attrs)}), None

    def summarize_all(self, specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        """As for any array file, then the keys that were refused while reading (links) as the first state's."""
        with self._handle(specs[0].path) as handle:
            states = [self._summarize(handle, spec, config) for spec in specs]
            if handle.refused and states:
                states[0]["refused"] = sorted(set(handle.refused))[:100]
        return states

    def merge(self, a: State, b: State) -> State:
        out = super().merge(a, b)
        refused = sorted(set(a.get("refused") or []) | set(b.get("refused") or []))
        return {**out, "refused": refused} if refused else out

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        described = state["meta"]
        cf.attach_stats(described, described["arrays"], state["stats"])
        for path, entry in described["arrays"].items():
            if path in state["stats"] or config.metadata_only or not entry.get("shape"):
                continue
            if math.prod(entry["shape"]) * _itemsize(entry) > _declared_limit(info.size):
                cf.warn(described, path, entry, f"statistics not read: it declares {math.prod(entry['shape']) * _itemsize(entry)} bytes, "
                                                f"far beyond the {info.size} the store holds")
        for key in state.get("refused") or []:
            described["warnings"].append(f"{key}: a symbolic link or not a regular file: not followed (read as missing)")
        return described

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        coverage = record.get("cf_coverage") or {}
        return {"zarr_format": record.get("zarr_format"), "consolidated": record.get("consolidated"),
                "n_arrays": len(record.get("arrays") or {}), **cf.time_columns(coverage.get("time") or {}),
                **cf.bounds_columns(coverage), **arrays.array_columns(self.variable_rows(record))}

    def variable_rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for path, entry in (record.get("arrays") or {}).items():
            if "shape" in entry:
                attrs = entry.get("attrs") or {}
                fill = attrs.get("_FillValue", entry.get("fill_value"))
                rows.append(arrays.variable_row(path, entry, entry.get("dims") or [], entry.get("codec_names") or [], fill))
        return rows

    def points_outside(self, path: str) -> list[str]:
        """The symbolic links inside the store: zarr-python's own store, which intake-esm and xarray use when handed
        the path, reads through them."""
        out: list[str] = []
        stack = [path]
        while stack and len(out) < 100:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_symlink():
                        out.append(f"{os.path.relpath(entry.path, path)}: a symbolic link")
                    elif entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
        return out

    def open_dataset(self, path: str, fmt: str, **kwargs: Any) -> Any:
        """With xarray's Zarr engine, through the same store that reads nothing outside the folder; a store whose codecs
        would run code from it (pickle) is refused."""
        import xarray as xr

        with open_store(path) as handle:
            unsafe = [p for p, a in handle.arrays.items() if UNSAFE_CODECS & set(_codec_info(a)[1])]
            unsafe += [p for p, (doc, _) in handle.documents.items() if UNSAFE_CODECS & set(_document_codecs(doc))]
        if unsafe:
            raise ValueError(f"{path}: not opened: the codecs of {', '.join(unsafe[:3])} would run code from the store (pickle)")
        dirfd = os.open(path, _OPEN_DIR)
        try:
            ds = xr.open_zarr(safe_store(path, dirfd, []), **{"chunks": {}, **kwargs})
        except BaseException:
            os.close(dirfd)
            raise
        closer = ds._close

        def close() -> None:
            try:
                if closer is not None:
                    closer()
            finally:
                os.close(dirfd)

        ds.set_close(close)
        return ds


def _declared_limit(stored: int) -> int:
    return DECLARED_LIMIT * max(stored, 0) + (64 << 20)


def _itemsize(entry: dict[str, Any]) -> int:
    import numpy as np

    try:
        return int(np.dtype(entry.get("dtype")).itemsize)
    except TypeError:
        return 1
