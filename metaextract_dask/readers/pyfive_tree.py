"""An HDF5 file's structure read by pyfive, in pure Python: the last resort after libhdf5 crashed on the file.

libhdf5 is C, and a malformed file (or a broken filter plugin it loads to
list a dataset's filters) can kill the process that reads it; the sandbox
contains that, and the file is then read again without its values. When even
that read crashes, pyfive (a pure-Python HDF5 reader: a bad file raises a
Python error, it cannot kill the process) lists what it can: groups,
datasets with their shape, type, chunks, filters and attributes, soft links,
the root's attributes, in the ``hdf5`` section's shape. Nothing is decoded:
no value is read, no chunk index is built. pyfive does not know external
links (a file holding one is not read: its crash stays the file's error).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from . import arrays

#: objects listed at most (a crafted file may hold millions of links)
MAX_OBJECTS = 100_000


def available() -> bool:
    return importlib.util.find_spec("pyfive") is not None


def _attrs(obj: Any, owner: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in arrays.guarded(owner, "attributes", lambda: dict(obj.attrs), {}).items():
        out[str(key)] = arrays.guarded(owner, f"attribute {key!r}", lambda v=value: arrays.to_jsonable(v))
    return out


def _filters(pipeline: Any) -> list[dict[str, Any]]:
    """The filter pipeline as the ``hdf5`` section lists it (id, name, options); pyfive keeps each filter's message."""
    out = []
    for f in pipeline or []:
        name = f.get("filter_name") or b""
        out.append({"id": int(f.get("filter_id", -1)), "name": (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)).rstrip("\0"),
                    "options": [int(v) for v in f.get("client_data", ())]})
    return out


def _dataset(name: str, dset: Any, pipeline: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name}
    entry["shape"] = arrays.guarded(entry, "shape", lambda: [int(n) for n in dset.shape], None)
    entry["dtype"] = arrays.guarded(entry, "dtype", lambda: str(dset.dtype), "unknown")
    entry["chunks"] = arrays.guarded(entry, "chunks", lambda: list(dset.chunks) if dset.chunks else None, None)
    entry["layout"] = "chunked" if entry["chunks"] else "contiguous"
    entry["compression"] = arrays.guarded(entry, "compression", lambda: dset.compression, None)
    entry["filters"] = arrays.guarded(entry, "filters", lambda: _filters(pipeline()), [])
    entry["attrs"] = _attrs(dset, entry)
    entry["stats_note"] = "not read: libhdf5 crashed on this file; its structure was read by pyfive"
    return entry


def walk(path: str) -> dict[str, Any]:
    """The ``hdf5`` section of a file that crashed libhdf5, from pyfive: groups, datasets, soft links, attributes."""
    import pyfive

    from ..core.pin import opened

    groups: list[str] = ["/"]
    datasets: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    group_info: dict[str, Any] = {}
    problems: list[str] = []
    with open(opened(path), "rb") as fh, pyfive.File(fh) as f:
        root: dict[str, Any] = {}
        attrs = _attrs(f, root)
        seen = {id(f._dataobjects)}
        stack = [("/", f)]
        while stack and len(groups) + len(datasets) + len(links) < MAX_OBJECTS:
            prefix, group = stack.pop()
            try:
                members = sorted(group._links.items(), reverse=True)
            except Exception as exc:  # noqa: BLE001 - a group pyfive cannot list: what it listed stays
                problems.append(f"{prefix}: its links could not be listed ({type(exc).__name__}: {exc})")
                continue
            for name, target in members:
                full = f"{prefix.rstrip('/')}/{name}"
                if isinstance(target, str):
                    links.append({"name": full, "type": "soft", "target": target})
                    continue
                try:
                    obj = group.get_lazy_view(name)
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{full}: could not be read ({type(exc).__name__}: {exc})")
                    continue
                if isinstance(obj, pyfive.Group):
                    if id(obj._dataobjects) in seen:  # a second hard link to a group already listed
                        links.append({"name": full, "type": "hard", "target": "Group"})
                        continue
                    seen.add(id(obj._dataobjects))
                    groups.append(full)
                    info: dict[str, Any] = {}
                    group_attrs = _attrs(obj, info)
                    if group_attrs or info:
                        group_info[full] = {"attrs": group_attrs, **info}
                    stack.append((full, obj))
                else:
                    datasets.append(_dataset(full, obj, lambda t=target: f._get_dataobjects(t).filter_pipeline))
    return {
        "groups": groups,
        "datasets": datasets,
        "attrs": attrs,
        "links": links,
        "group_attrs": group_info,
        "unreadable_objects": [],
        "reader_library": f"pyfive {pyfive.__version__}",
        "warnings": list(root.get("warnings", [])) + problems + [
            f"{owner}: {w}" for owner, obj in [*((d["name"], d) for d in datasets), *group_info.items()] for w in obj.get("warnings", [])],
    }
