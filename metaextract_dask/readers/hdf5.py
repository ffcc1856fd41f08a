"""HDF5 through h5py: the object tree plus per-dataset statistics.

Layout: chunk 0 is the object tree (METADATA); the rest are SECTIONs packing
dataset storage chunks (or slabs of contiguous datasets) to about the chunk
size. Soft and external links are listed, never followed; virtual datasets
and external raw storage are listed, never read; datasets whose filter is not
available here keep their structure and say why they have no statistics.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Sequence
from typing import Any

from ..config import StreamingConfig
from ..errors import CorruptFileError
from ..model import ChunkSpec, ChunkType, FileInfo
from . import arrays
from .base import State, StreamChunkReader

EXTRA_HINT = "h5py is not installed: pip install 'metaextract_dask[hdf5]'"


@functools.lru_cache(maxsize=1)
def trust_plugins_only_from_config() -> tuple[str, ...]:
    """Make h5py load filter plugins only from ``metaextract.hdf5.plugin-paths``.

    Done once per process, before any file is opened: a plugin is native code
    run on every chunk read, so it must come from a folder the user chose.
    """
    import dask.config
    from h5py import h5pl

    trusted = tuple(str(p) for p in dask.config.get("metaextract.hdf5.plugin-paths", []) or [])
    while h5pl.size():
        h5pl.remove(0)
    for folder in trusted:
        h5pl.append(folder.encode())
    return trusted


def open_file(path: str) -> Any:
    """Open read-only without HDF5 file locking (read-only and HPC file systems)."""
    import h5py

    trust_plugins_only_from_config()
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise CorruptFileError(path, f"the HDF5 library cannot open it: {exc}") from exc


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


#: a dataset declaring more than this many times the file's bytes is not scanned
#: (the best compression of real data stays far below; a crafted dataspace does not)
MAX_EXPANSION = 1000


def no_stats_reason(dset: Any) -> str | None:
    """Why a dataset gets structure only (no chunk reads), or None."""
    file_size = dset.file.id.get_filesize()
    logical = int(dset.size or 0) * dset.dtype.itemsize
    if logical > max(MAX_EXPANSION * file_size, 64 * 2**20):
        return f"declares {logical} bytes of values, over {MAX_EXPANSION} times the {file_size}-byte file: structure only, not scanned"
    if not arrays.is_numeric(dset.dtype):
        return f"no statistics for dtype {dset.dtype}"
    if dset.is_virtual:
        return "virtual dataset: its sources are listed, never read"
    if dset.external:
        return "external raw storage: its files are listed, never read"
    missing = [f"{f['name']} ({f['id']})" for f in _filters(dset) if not f["available"]]
    if missing:
        return f"filter {', '.join(missing)} is not available here: structure only, no statistics"
    return None


def describe_dataset(name: str, dset: Any) -> dict[str, Any]:
    """One dataset's structure, as h5ls/h5dump would report it."""
    entry = {
        "name": name,
        "shape": list(dset.shape) if dset.shape is not None else None,
        "dtype": str(dset.dtype),
        "chunks": list(dset.chunks) if dset.chunks else None,
        "layout": _layout_name(dset),
        "compression": dset.compression,
        "compression_opts": arrays.to_jsonable(dset.compression_opts),
        "filters": _filters(dset),
        "fillvalue": arrays.to_jsonable(dset.fillvalue),
        "storage_size": int(dset.id.get_storage_size()),
        "attrs": read_attrs(dset),
    }
    if dset.external:
        entry["external_storage"] = [{"file": arrays.to_jsonable(n), "offset": int(o), "size": int(s)} for n, o, s in dset.external]
    if dset.is_virtual:
        entry["virtual_sources"] = [{"file": vs.file_name, "dataset": vs.dset_name} for vs in dset.virtual_sources()]
    reason = no_stats_reason(dset)
    if reason:
        entry["stats_note"] = reason
    return entry


def read_attrs(obj: Any) -> dict[str, Any]:
    """Attributes as JSON-friendly values; an unreadable one says why."""
    out = {}
    for key in obj.attrs:
        try:
            out[key] = arrays.to_jsonable(obj.attrs[key])
        except Exception as exc:  # noqa: BLE001 - e.g. an attribute of an unsupported type
            out[key] = f"<unreadable: {exc}>"
    return out


def walk_tree(f: Any) -> dict[str, Any]:
    """Groups, datasets and links, visiting links without following them."""
    import h5py

    groups, datasets, links = ["/"], [], []

    def visit(name: str, link: Any) -> None:
        path = "/" + name
        if isinstance(link, h5py.SoftLink):
            links.append({"name": path, "type": "soft", "target": link.path})
        elif isinstance(link, h5py.ExternalLink):
            links.append({"name": path, "type": "external", "file": link.filename, "target": link.path})
        else:
            obj = f.get(name)
            if isinstance(obj, h5py.Group):
                groups.append(path)
            elif isinstance(obj, h5py.Dataset):
                datasets.append(describe_dataset(path, obj))
            else:
                links.append({"name": path, "type": "hard", "target": type(obj).__name__})

    f.visititems_links(visit)
    return {
        "groups": groups,
        "datasets": datasets,
        "attrs": read_attrs(f),
        "links": links,
        "userblock_size": int(f.userblock_size),
        "libver": list(f.libver),
    }


def array_infos(f: Any) -> list[arrays.ArrayInfo]:
    """The datasets whose values the chunk tasks will read."""
    import h5py

    found: list[arrays.ArrayInfo] = []

    def visit(name: str, link: Any) -> None:
        if not isinstance(link, h5py.HardLink):
            return
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset) and obj.shape and no_stats_reason(obj) is None:
            offset = obj.id.get_offset() or 0
            found.append(arrays.ArrayInfo("/" + name, tuple(obj.shape), obj.dtype.itemsize, obj.chunks, offset, int(obj.id.get_storage_size())))

    f.visititems_links(visit)
    return found


class HDF5ChunkReader(StreamChunkReader):
    """HDF5 files (seed name): tree plus per-dataset statistics."""

    name = "hdf5"
    formats = frozenset({"hdf5"})
    native = True

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("h5py") else EXTRA_HINT

    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        with open_file(info.path) as f:
            found = array_infos(f)
        tree = ChunkSpec(info.path, 0, ChunkType.METADATA, 0, min(info.size, 4096), "tree")
        return [tree, *arrays.pack_sections(info.path, found, chunk_size, first_id=1)]

    def summarize(self, spec: ChunkSpec, config: StreamingConfig) -> State:
        return self.summarize_all([spec], config)[0]

    def summarize_all(self, specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        """Every chunk of one task from a single open of the file."""
        with open_file(specs[0].path) as f:
            return [self._summarize(f, spec) for spec in specs]

    @staticmethod
    def _summarize(f: Any, spec: ChunkSpec) -> State:
        if spec.chunk_type is ChunkType.METADATA:
            return {"tree": walk_tree(f), "stats": {}}
        return {"tree": None, "stats": arrays.section_stats(spec.key, lambda name: (f[name], f[name].fillvalue))}

    def merge(self, a: State, b: State) -> State:
        return {"tree": a["tree"] or b["tree"], "stats": arrays.merge_section_stats(a["stats"], b["stats"])}

    def public_summary(self, state: State) -> dict[str, Any]:
        return {"datasets_read": sorted(state["stats"]), "tree": state["tree"] is not None}

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        tree = state["tree"]
        for entry in tree["datasets"]:
            stats = state["stats"].get(entry["name"])
            if stats is not None:
                entry["stats"] = arrays.final_stats(stats, stats.get("cells_total", 0) if "error" not in stats else 0)
            elif "stats_note" not in entry and entry["shape"] and math.prod(entry["shape"]) and arrays.is_numeric_name(entry["dtype"]):
                entry["stats_note"] = "not sampled"
        return {
            "groups": tree["groups"],
            "datasets": tree["datasets"],
            "attrs": tree["attrs"],
            "links": tree["links"],
            "hdf5": {"userblock_size": tree["userblock_size"], "libver": tree["libver"]},
        }
