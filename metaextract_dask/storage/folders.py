"""A folder that is one file to a reader (a Zarr store), local or remote: its size, time and identity, as a file's would be."""

from __future__ import annotations

import os
import stat
from typing import Any

#: the prefix of a remote folder's identity
FOLDER = "folder:"


def folder_stat(path: str) -> tuple[int, float, int]:
    """(bytes, latest modification time, entries) of a folder that is one file: every regular file under it summed,
    the latest time of any entry (a chunk rewritten, added or removed changes it); links are neither followed nor
    counted (the reader refuses them too)."""
    size, latest, entries = 0, os.lstat(path).st_mtime, 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    latest = max(latest, st.st_mtime)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif stat.S_ISREG(st.st_mode):
                        size += st.st_size
        except OSError:
            continue
    return size, latest, entries


def one_object(root: str, members: list[tuple[str, Any]]) -> Any:
    """A remote folder's objects (URL, ``RemoteStat``) as one object under ``root``: their bytes, their latest time, and
    an identity made of every object's name, size and ETag (any object added, removed or rewritten changes it)."""
    import hashlib

    from .remote import RemoteStat

    digest = hashlib.sha256()
    for url, st in sorted(members, key=lambda m: m[0]):
        digest.update(f"{url[len(root):].lstrip('/')}\0{st.size}\0{st.etag or st.mtime}\n".encode("utf-8", "surrogateescape"))
    return RemoteStat(sum(st.size for _, st in members), max((st.mtime for _, st in members), default=0.0),
                      f"{FOLDER}{digest.hexdigest()[:32]}", None, "file")


def is_folder_identity(etag: Any) -> bool:
    """Whether an identity is a remote folder's (``one_object``)."""
    return isinstance(etag, str) and etag.startswith(FOLDER)


def collapse_folders(found: list[tuple[str, Any]], markers: Any) -> list[tuple[str, Any]]:
    """A listing's objects with each folder that is one file (it holds one of ``markers`` at its top: a Zarr store) as
    one entry, the outermost such folder when they nest."""
    roots = sorted({url.rsplit("/", 1)[0] for url, _ in found if url.rsplit("/", 1)[-1] in markers})
    outermost: list[str] = []
    for root in roots:
        if not any(root.startswith(r + "/") for r in outermost):
            outermost.append(root)
    if not outermost:
        return found
    members: dict[str, list[tuple[str, Any]]] = {r: [] for r in outermost}
    out: list[tuple[str, Any]] = []
    for url, st in found:
        inside = next((r for r in outermost if url.startswith(r + "/")), None)
        if inside is None:
            out.append((url, st))
        else:
            members[inside].append((url, st))
    return sorted(out + [(root, one_object(root, objects)) for root, objects in members.items()], key=lambda m: m[0])
