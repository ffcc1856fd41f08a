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


def write_entry(catalog: str, suffix: str, name: str, data: bytes, unsynced: list[str] | None = None) -> str:
    """Write one entry crash-safe (hidden temporary, fsync, rename); returns its name.

    With ``unsynced`` (a scan's catalog writer), a new entry is renamed into
    place without its fsync and its path appended there: the writer makes
    them durable together (``make_durable``) before the catalog part that
    names them is committed, so a row never names an entry a crash could
    have emptied. An entry that replaces an earlier one (a re-scan: an
    earlier row names it) is fsynced at once. One fsync per file cost 0.65 ms
    here (0.13 s for 200 reference sets), on a parallel file system far more.
    """
    folder = sidecar_folder(catalog, suffix)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    final = entry_location(catalog, suffix, name)
    defer = unsynced is not None and not os.path.lexists(final)
    with open(tmp, "wb") as f:
        f.write(data)
        if not defer:
            f.flush()
            os.fsync(f.fileno())
    if os.path.isdir(final) and not os.path.islink(final):
        remove(final)
    os.replace(tmp, final)
    if defer:
        assert unsynced is not None
        unsynced.append(final)
    return name


def make_durable(paths: list[str]) -> None:
    """fsync entries written with ``unsynced``, then their folders; ``paths`` is emptied. One pass over a batch of
    files costs a third of fsyncing each as it is written (measured: 0.04 s against 0.13 s for 200)."""
    folders = set()
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # replaced or swept since: nothing of it to keep
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        folders.add(os.path.dirname(path))
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    paths.clear()


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
