"""Folders beside a catalog holding one entry per file: ``CATALOG.references/``, ``CATALOG.thumbnails/``.

Beside the catalog, not in it: ``dask.dataframe.read_parquet(CATALOG)``
walks every subfolder. An entry is named from a digest of the file's path
bytes (names may hold any byte); the row keeps the entry's name, and a name
read back from a row is data, never trusted as a path.
"""

from __future__ import annotations

import hashlib
import os
import shutil


def sidecar_folder(catalog: str, suffix: str) -> str:
    """``catalog`` -> ``catalog.SUFFIX`` (``suffix`` with its dot)."""
    return os.path.normpath(catalog) + suffix


def entry_stem(path_bytes: bytes) -> str:
    """The digest that names a file's entries."""
    return hashlib.sha256(path_bytes).hexdigest()[:32]


def entry_location(catalog: str, suffix: str, name: str) -> str:
    """The entry's path, refusing any name that would leave its folder."""
    from .trust import CatalogInputError

    if not isinstance(name, str) or not name or os.path.basename(name) != name or name.startswith("."):
        raise CatalogInputError(f"{name!r} is not an entry of {sidecar_folder(catalog, suffix)}")
    return os.path.join(sidecar_folder(catalog, suffix), name)


def existing_entry(catalog: str, suffix: str, name: str) -> str:
    """An entry to read: ``entry_location``'s, present, and neither a symbolic link nor in a linked folder.

    Anyone who can write the catalog can replace an entry with a link to
    ``/etc/shadow``: a reader of the catalog must not follow it.
    """
    from .trust import CatalogInputError

    path = entry_location(catalog, suffix, name)
    folder = sidecar_folder(catalog, suffix)
    if os.path.islink(folder) or os.path.islink(path):
        raise CatalogInputError(f"{path}: a symbolic link, not an entry written by a scan: refused")
    if not os.path.exists(path):
        raise CatalogInputError(f"{path}: the entry its row names is missing")
    return path


def remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.unlink(path)


def write_entry(catalog: str, suffix: str, name: str, data: bytes) -> str:
    """Write one entry crash-safe (hidden temporary, fsync, rename); returns its name."""
    folder = sidecar_folder(catalog, suffix)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    final = entry_location(catalog, suffix, name)
    if os.path.isdir(final) and not os.path.islink(final):
        remove(final)
    os.replace(tmp, final)
    return name


def sweep(catalog: str, suffix: str, kept: set[str]) -> int:
    """Remove entries no row names any more (their files were deleted, or re-scanned without them)."""
    folder = sidecar_folder(catalog, suffix)
    if not os.path.isdir(folder):
        return 0
    gone = 0
    for name in os.listdir(folder):
        if name not in kept:
            remove(os.path.join(folder, name))
            gone += 1
    return gone
