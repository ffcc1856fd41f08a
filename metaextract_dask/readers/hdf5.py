"""HDF5 through h5py: the object tree plus per-dataset statistics.

Layout: chunk 0 is the object tree (METADATA); the rest are SECTIONs packing
dataset storage chunks (or slabs of contiguous datasets) to about the chunk
size. Soft and external links are listed, never followed; virtual datasets
and external raw storage are listed, never read; datasets whose filter is not
available here keep their structure and say why they have no statistics.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any, Iterator

from ..core.errors import CorruptFileError
from ..core.model import FileInfo
from ..core.settings import StreamingConfig
from . import arrays
from .base import State

EXTRA_HINT = "h5py is not installed: pip install 'metaextract_dask[hdf5]'"


def trust_plugins_only_from_config() -> tuple[str, ...]:
    """Make h5py (and any libhdf5 loaded later) load filter plugins only from ``metaextract.hdf5.plugin-paths``."""
    from .guard import restrict_plugins

    return restrict_plugins()


def open_file(path: str) -> Any:
    """Open read-only without HDF5 file locking (read-only and HPC file systems).

    A remote file is read through an fsspec file object in blocks of
    ``storage.remote.BLOCK_SIZE``, the way h5netcdf and kerchunk read it.
    """
    import h5py

    from ..storage.urls import is_url

    trust_plugins_only_from_config()
    try:
        if is_url(path):
            from ..storage.remote import open_remote

            return h5py.File(open_remote(path), "r")
        from ..core.pin import opened

        return h5py.File(opened(path), "r", locking=False)
    except OSError as exc:
        raise CorruptFileError(path, f"the HDF5 library cannot open it: {exc}") from exc


#: ``arrays.shared``'s kind for a file open in h5py (``open_file``)
H5PY = "h5py"


def shared_file(path: str) -> Any:
    """``open_file(path)`` as a context: within ``arrays.one_open`` one open serves the guard, the reader and the
    references (a small netCDF-4 file was opened by h5py twice: 0.4 ms of its 6), else its own open and close."""
    return arrays.shared(H5PY, path, open_file)


def _layout_name(dset: Any) -> str:
    import h5py

    kind = dset.id.get_create_plist().get_layout()
    return {h5py.h5d.CHUNKED: "chunked", h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.COMPACT: "compact", h5py.h5d.VIRTUAL: "virtual"}.get(kind, str(kind))


def _filters(dset: Any) -> list[dict[str, Any]]:
    import h5py

    plist = dset.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        code, _flags, values, name = plist.get_filter(i)
        out.append({"id": code, "name": name.decode("ascii", "replace") or str(code), "options": list(values), "available": bool(h5py.h5z.filter_avail(code))})
    return out


#: HDF5 filter ids by the names the variables table uses (the library says "deflate" for gzip)
FILTER_NAMES = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset", 307: "bzip2", 32000: "lzf",
                32001: "blosc", 32004: "lz4", 32008: "bitshuffle", 32015: "zstd"}

#: a dataset declaring more than this many times the file's bytes is not scanned
#: (the best compression of real data stays far below; a crafted dataspace does not)
MAX_EXPANSION = 1000


def dataset_dtype(dset: Any) -> Any | None:
    """The dataset's NumPy dtype, or None when its datatype has no NumPy equivalent."""
    from .h5types import numpy_dtype

    return numpy_dtype(dset.id.get_type())


def no_stats_reason(dset: Any, dtype: Any = None) -> str | None:
    """Why a dataset gets structure only (no chunk reads), or None."""
    dtype = dataset_dtype(dset) if dtype is None else dtype
    if dtype is None:
        from .h5types import describe_type

        return f"no statistics: its datatype ({describe_type(dset.id.get_type())['text']}) has no NumPy equivalent"
    file_size = dset.file.id.get_filesize()
    logical = int(dset.id.get_space().get_select_npoints() or 0) * dtype.itemsize
    if logical > max(MAX_EXPANSION * file_size, 64 * 2**20):
        return f"declares {logical} bytes of values, over {MAX_EXPANSION} times the {file_size}-byte file: structure only, not scanned"
    if not arrays.is_numeric(dtype):
        return f"no statistics for dtype {dtype}"
    if dset.is_virtual:
        return "virtual dataset: its sources are listed, never read"
    if dset.external:
        return "external raw storage: its files are listed, never read"
    missing = [f"{f['name']} ({f['id']})" for f in _filters(dset) if not f["available"]]
    if missing:
        return f"filter {', '.join(missing)} is not available here: structure only, no statistics"
    return None


def _fill(dset: Any, dtype: Any) -> tuple[Any, str]:
    """(fill value, how it is defined): 'undefined' files exist and are legal."""
    import h5py

    defined = dset.id.get_create_plist().fill_value_defined()
    how = {h5py.h5d.FILL_VALUE_UNDEFINED: "undefined", h5py.h5d.FILL_VALUE_DEFAULT: "default",
           h5py.h5d.FILL_VALUE_USER_DEFINED: "user-defined"}.get(defined, str(defined))
    if how == "undefined" or dtype is None:
        return None, how
    return arrays.to_jsonable(dset.fillvalue), how


def describe_dataset(name: str, dset: Any, storage_size: bool = True) -> dict[str, Any]:
    """One dataset's structure, as h5ls/h5dump would report it; odd properties become warnings.

    ``storage_size=False`` leaves out the bytes stored: libhdf5 walks the
    whole chunk index for it (of a remote 470 MB file, 28 of its 40 requests).
    """
    from .h5types import describe_type

    entry: dict[str, Any] = {"name": name}
    entry["shape"] = arrays.guarded(entry, "shape", lambda: list(dset.shape) if dset.shape is not None else None)
    datatype = arrays.guarded(entry, "datatype", lambda: describe_type(dset.id.get_type()), {"class": "unknown", "text": "unknown"})
    dtype = arrays.guarded(entry, "dtype", lambda: dataset_dtype(dset))
    entry["dtype"] = str(dtype) if dtype is not None else datatype["text"]
    entry["datatype"] = datatype
    entry["chunks"] = arrays.guarded(entry, "chunks", lambda: list(dset.chunks) if dset.chunks else None)
    entry["layout"] = arrays.guarded(entry, "layout", lambda: _layout_name(dset))
    entry["compression"] = arrays.guarded(entry, "compression", lambda: dset.compression)
    entry["compression_opts"] = arrays.guarded(entry, "compression_opts", lambda: arrays.to_jsonable(dset.compression_opts))
    entry["filters"] = arrays.guarded(entry, "filters", lambda: _filters(dset), [])
    fill = arrays.guarded(entry, "fillvalue", lambda: _fill(dset, dtype), (None, "unreadable"))
    entry["fillvalue"], entry["fillvalue_defined"] = fill
    if storage_size:
        entry["storage_size"] = arrays.guarded(entry, "storage_size", lambda: int(dset.id.get_storage_size()))
    entry["attrs"] = read_attrs(dset, entry)
    external = arrays.guarded(entry, "external_storage", lambda: dset.external)
    if external:
        entry["external_storage"] = [{"file": arrays.to_jsonable(n), "offset": int(o), "size": int(s)} for n, o, s in external]
    if arrays.guarded(entry, "virtual", lambda: dset.is_virtual, False):
        entry["virtual_sources"] = arrays.guarded(entry, "virtual_sources", lambda: [{"file": vs.file_name, "dataset": vs.dset_name}
                                                                            for vs in dset.virtual_sources()], [])
    reason = arrays.guarded(entry, "statistics", lambda: no_stats_reason(dset, dtype), "its storage could not be inspected")
    if reason:
        entry["stats_note"] = reason
    return entry


def read_attrs(obj: Any, owner: dict[str, Any]) -> dict[str, Any]:
    """Attributes as JSON-friendly values.

    An attribute whose value cannot be read (a datatype with no NumPy
    equivalent, say) keeps its name with a ``None`` value; its datatype goes
    to ``owner['attr_datatypes']`` and a warning to ``owner['warnings']``.
    """
    import h5py

    from .h5types import describe_type

    out: dict[str, Any] = {}
    names = arrays.guarded(owner, "attribute names", lambda: list(obj.attrs), [])
    for key in names:
        try:
            out[key] = arrays.to_jsonable(obj.attrs[key])
        except Exception as exc:  # noqa: BLE001 - confined to this attribute
            out[key] = None
            try:
                aid = h5py.h5a.open(obj.id, key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key)
                datatype = describe_type(aid.get_type())
                owner.setdefault("attr_datatypes", {})[key] = datatype
                why = f"its datatype ({datatype['text']}) has no NumPy equivalent" if datatype["class"] in ("time", "integer", "float", "bitfield", "opaque") else str(exc)
            except Exception:  # noqa: BLE001
                why = f"{exc} [{type(exc).__name__}]"
            owner.setdefault("warnings", []).append(f"attribute {key!r}: value not read: {why}")
    return out


def _link_names(gid: Any, problems: list[str] | None, where: str) -> list[bytes]:
    """A group's link names, in reverse name order (a stack pops them in order). When libhdf5 stops partway (a damaged
    heap), ``problems`` None raises; a list keeps the names listed before the failure, as ``h5ls`` shows them, and
    says where it stopped."""
    if problems is None:
        return sorted(gid, reverse=True)
    names: list[bytes] = []
    try:
        gid.links.iterate(names.append)
    except Exception as exc:  # noqa: BLE001 - what libhdf5 raises on a damaged group varies
        if not names:
            raise
        problems.append(f"{where or '/'}: only {len(names)} links listed: the HDF5 library stopped there ({exc})")
    return sorted(names, reverse=True)


def _objects(f: Any, problems: list[str] | None = None) -> Any:
    """(path, link, object or None) for every link below the root, depth first in name order.

    Each object is opened from its parent group by its own name, never by
    its full path: opening ``/a/b/.../z`` by path costs one lookup per level,
    which made a tree 1,000 levels deep cost 500,000 lookups. Links are
    looked up with h5py's low-level calls (a third of the high-level cost,
    which matters for 20 KB files). Soft and external links are yielded with
    no object (never followed); a group reached twice through hard links is
    descended once. ``problems``: a list to keep a damaged group's links
    listed before libhdf5 stopped (``_link_names``); None (the guard) fails
    instead.
    """
    seen = {_identity(f)}
    try:
        top = _link_names(f.id, problems, "")
    except Exception as exc:  # the root's links do not list: nothing useful can be said of the file
        from ..core.pin import original

        raise CorruptFileError(original(f.filename), f"the HDF5 library cannot list its root group: {exc}") from exc
    stack: list[tuple[str, Any, list[bytes]]] = [("", f, top)]
    while stack:
        prefix, group, names = stack[-1]
        if not names:
            stack.pop()
            continue
        raw = names.pop()
        path = f"{prefix}/{raw.decode('utf-8', 'surrogateescape')}"
        link, obj, below = _open_link(group, raw, problems, path)
        yield path, link, obj
        if below is not None:
            ident = _identity(obj)
            if ident not in seen:
                seen.add(ident)
                stack.append((path, obj, below))


#: a walk of more objects than this is not kept for the next walk of the same open file (its objects stay open while kept)
KEPT_WALK = 2000


def objects(f: Any, problems: list[str] | None = None) -> Iterator[tuple[str, Any, Any]]:
    """``_objects(f, problems)``. Within ``arrays.one_open`` a complete walk of a shared open file that met no damaged
    group is kept, up to ``KEPT_WALK`` objects, and the next walk of that file replays it (with nothing to add to
    ``problems``): the guard walks a small file, then its layout, its description and its references walk it again
    (0.4 ms of a small netCDF-4 file's 6 with references; an HDF5 file was walked up to four times)."""
    memo = arrays.session_memo()
    kept = memo.get(("walk", id(f))) if memo is not None else None
    if kept is not None and kept[0] is f:
        yield from kept[1]
        return
    before = len(problems) if problems is not None else 0
    seen: list[tuple[str, Any, Any]] | None = [] if memo is not None else None
    for item in _objects(f, problems):
        if seen is not None:
            seen.append(item)
            if len(seen) > KEPT_WALK:
                seen = None
        yield item
    if memo is not None and seen is not None and (problems is None or len(problems) == before):
        memo[("walk", id(f))] = (f, seen)


def _open_link(group: Any, raw: bytes, problems: list[str] | None = None, path: str = "") -> tuple[Any, Any, list[bytes] | None]:
    """(link, object or None, the names below it when it is a group whose links list)."""
    import h5py

    try:
        kind = group.id.links.get_info(raw).type
    except Exception:  # noqa: BLE001 - a link h5py cannot describe: the walk reports it as unreadable
        return None, None, None
    if kind != h5py.h5l.TYPE_HARD:
        try:
            return group.get(raw.decode("utf-8", "surrogateescape"), getlink=True), None, None
        except Exception:  # noqa: BLE001
            return None, None, None
    try:
        oid = h5py.h5o.open(group.id, raw)
    except Exception:  # noqa: BLE001 - an object that does not open is reported as unreadable
        return h5py.HardLink(), None, None
    if isinstance(oid, h5py.h5d.DatasetID):
        return h5py.HardLink(), h5py.Dataset(oid), None
    if isinstance(oid, h5py.h5g.GroupID):
        try:
            return h5py.HardLink(), h5py.Group(oid), _link_names(oid, problems, path)
        except Exception:  # noqa: BLE001 - a group whose links do not list: reported as unreadable, nothing below it
            return h5py.HardLink(), None, None
    return h5py.HardLink(), h5py.Datatype(oid) if isinstance(oid, h5py.h5t.TypeID) else None, None


def _identity(obj: Any) -> Any:
    """What makes two handles the same object (hard links may form cycles)."""
    import h5py

    try:
        info = h5py.h5o.get_info(obj.id)
        return info.fileno, info.addr
    except Exception:  # noqa: BLE001 - not identifiable: descended (a cycle would need identical handles)
        return id(obj)


def walk_tree(f: Any, storage_size: bool = True) -> dict[str, Any]:
    """Groups, datasets and links, visiting links without following them."""
    import h5py

    root: dict[str, Any] = {"name": "/"}
    groups, datasets, links, others = ["/"], [], [], []
    group_info: dict[str, Any] = {}
    problems: list[str] = []
    for path, link, obj in objects(f, problems):
        if isinstance(link, h5py.SoftLink):
            links.append({"name": path, "type": "soft", "target": link.path})
        elif isinstance(link, h5py.ExternalLink):
            links.append({"name": path, "type": "external", "file": link.filename, "target": link.path})
        else:
            entry: dict[str, Any] = {"name": path}
            if isinstance(obj, h5py.Group):
                groups.append(path)
                info: dict[str, Any] = {}
                attrs = read_attrs(obj, info)
                if attrs or info:
                    group_info[path] = {"attrs": attrs, **info}
            elif isinstance(obj, h5py.Dataset):
                datasets.append(describe_dataset(path, obj, storage_size))
            elif obj is None:
                entry.setdefault("warnings", []).append("object: it could not be opened (or its links listed) by the HDF5 library")
                others.append(entry)
            else:
                links.append({"name": path, "type": "hard", "target": type(obj).__name__})
    attrs = read_attrs(f, root)
    tree = {
        "groups": groups,
        "datasets": datasets,
        "attrs": attrs,
        "links": links,
        "userblock_size": int(f.userblock_size),
        "libver": list(f.libver),
        "group_attrs": group_info,
        "unreadable_objects": others,
    }
    tree["warnings"] = [f"{w}" for w in root.get("warnings", [])] + problems + [
        f"{owner}: {w}" for owner, obj in [*((d["name"], d) for d in datasets), *group_info.items(), *((o["name"], o) for o in others)]
        for w in obj.get("warnings", [])
    ]
    return tree


def array_infos(f: Any) -> list[arrays.ArrayInfo]:
    """The datasets whose values the chunk tasks will read."""
    import h5py

    found: list[arrays.ArrayInfo] = []
    for path, _link, obj in objects(f, []):  # a damaged group: the arrays listed before libhdf5 stopped
        try:
            if not isinstance(obj, h5py.Dataset) or not obj.shape:
                continue
            dtype = dataset_dtype(obj)
            if dtype is not None and no_stats_reason(obj, dtype) is None:
                offset = obj.id.get_offset() or 0
                found.append(arrays.ArrayInfo(path, tuple(obj.shape), dtype.itemsize, obj.chunks, offset, int(obj.id.get_storage_size())))
        except Exception:  # noqa: BLE001 - the tree walk says what is odd about it; no statistics for it
            continue
    return found


def _with_fill(dset: Any) -> tuple[Any, Any]:
    """(dataset, its fill value or None when undefined): what section statistics need."""
    try:
        return dset, _fill(dset, dataset_dtype(dset))[0]
    except Exception:  # noqa: BLE001 - no fill value to count: statistics of every value
        return dset, None


class HDF5ChunkReader(arrays.ArrayFileReader):
    """HDF5 files (seed name): tree plus per-dataset statistics."""

    name = "hdf5"
    extras = frozenset({"references"})
    formats = frozenset({"hdf5"})
    extensions = {".h5": "hdf5", ".hdf5": "hdf5", ".he5": "hdf5", ".hdf": "hdf5"}
    media_types = {"hdf5": "application/x-hdf5"}
    # an HDF5 fill value is what unwritten storage reads as, not a missing-data mark (xarray would mask every 0.0
    # of a plain file as missing): plain HDF5 opens unmasked unless asked otherwise
    open_options = {"hdf5": {"mask_and_scale": False}}
    columns = (("n_groups", "int32"), ("n_datasets", "int32"), *arrays.ARRAY_COLUMNS)
    metadata_key = "tree"
    array_word = "datasets"

    def open_dataset(self, path: str, fmt: str, **kwargs: Any) -> Any:
        """Through kerchunk references made now (a ValueError says why a file cannot be read through them)."""
        from .h5refs import open_references, references_now

        return open_references(references_now(path), **kwargs)

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"n_groups": len(record.get("groups") or []), "n_datasets": len(record.get("datasets") or []),
                **arrays.array_columns(self.variable_rows(record))}

    def variable_rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        return [arrays.variable_row(d.get("name", ""), d, [], [FILTER_NAMES.get(f.get("id"), f.get("name")) for f in d.get("filters") or []],
                                    d.get("fillvalue")) for d in record.get("datasets") or []]

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("h5py") else EXTRA_HINT

    def structure_in_python(self, path: str) -> dict[str, Any] | None:
        """The tree as pyfive reads it (``pyfive_tree``), when pyfive is installed."""
        from . import pyfive_tree

        return pyfive_tree.walk(path) if pyfive_tree.available() else None

    opens_with = H5PY

    def open(self, path: str) -> Any:
        return open_file(path)

    def arrays_of(self, handle: Any) -> list[arrays.ArrayInfo]:
        return array_infos(handle)

    def describe(self, handle: Any, metadata_only: bool = False) -> dict[str, Any]:
        return walk_tree(handle, storage_size=not metadata_only)

    def array(self, handle: Any, name: str) -> tuple[Any, Any]:
        return _with_fill(handle[name])

    def references(self, handle: Any, path: str) -> dict[str, Any]:
        from .h5refs import hdf5_references

        return hdf5_references(handle, path)

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        tree = state["meta"]
        for entry in tree["datasets"]:
            stats = state["stats"].get(entry["name"])
            if stats is not None and "error" in stats:
                entry.setdefault("warnings", []).append(f"statistics: {stats['error']}")
                tree["warnings"].append(f"{entry['name']}: statistics: {stats['error']}")
                entry["stats_note"] = "its values could not be read: structure only"
            elif stats is not None:
                entry["stats"] = arrays.final_stats(stats, stats.get("cells_total", 0))
            elif "stats_note" not in entry and entry["shape"] and math.prod(entry["shape"]) and arrays.is_numeric_name(entry["dtype"]):
                entry["stats_note"] = "not sampled"
        record = {
            "groups": tree["groups"],
            "datasets": tree["datasets"],
            "attrs": tree["attrs"],
            "links": tree["links"],
            "file": {"userblock_size": tree["userblock_size"], "libver": tree["libver"]},
            "warnings": tree["warnings"],
        }
        if tree["group_attrs"]:
            record["group_attrs"] = tree["group_attrs"]
        if tree["unreadable_objects"]:
            record["unreadable_objects"] = tree["unreadable_objects"]
        return record
