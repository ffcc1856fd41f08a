"""Folders beside a catalog holding one entry per file: ``CATALOG.references/``, ``CATALOG.thumbnails/``.

Beside the catalog, not in it: ``dask.dataframe.read_parquet(CATALOG)``
walks every subfolder. An entry is named from a digest of the file's path
bytes (names may hold any byte); the row keeps the entry's name, and a name
read back from a row is data, never trusted as a path.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
import stat
import threading


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
    """The entry at ``path`` gone: a folder (a Parquet reference set) with what it holds, else the file or link."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(found.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)


def write_entry(catalog: str, suffix: str, name: str, data: bytes, unsynced: Unsynced | None = None) -> str:
    """Write one entry crash-safe (hidden temporary, fsync, rename); returns its name.

    With ``unsynced`` (a scan's catalog writer), a new entry is renamed into
    place without its fsync and handed to ``unsynced``, which makes it
    durable in the background and waits for it before the catalog part that
    names it is committed, so a row never names an entry a crash could have
    emptied. An entry that replaces an earlier one (a re-scan: an earlier
    row names it) is fsynced at once. One fsync per file cost 0.65 ms here
    (0.13 s for 200 reference sets), on a parallel file system far more.
    """
    folder = sidecar_folder(catalog, suffix)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    final = entry_location(catalog, suffix, name)
    try:
        earlier = os.lstat(final)
    except FileNotFoundError:
        earlier = None
    defer = unsynced is not None and earlier is None
    try:
        f = open(tmp, "wb")
    except FileNotFoundError:  # the folder's first entry (asked only then: a stat less per file)
        os.makedirs(folder, exist_ok=True)
        f = open(tmp, "wb")
    with f:
        f.write(data)
        if not defer:
            f.flush()
            os.fsync(f.fileno())
    if earlier is not None and stat.S_ISDIR(earlier.st_mode):
        remove(final)
    os.replace(tmp, final)
    if defer:
        assert unsynced is not None
        unsynced.append(final)
    return name


class Unsynced:
    """Entries written without their fsync (``write_entry``), made durable by a background thread as they come:
    fsync waits on the disk, not the CPU, and lets the scan go on meanwhile. ``make_durable`` waits for the last of
    them and fsyncs their folders; a catalog part is committed only after it (a row never names an entry a crash
    could have emptied). At the end of a scan of 200 files, the fsyncs made there in one pass took 0.08 s."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._folders: set[str] = set()
        self._error: OSError | None = None

    def append(self, path: str) -> None:
        self._folders.add(os.path.dirname(path))
        if self._thread is None:
            self._thread = threading.Thread(target=self._sync, name="metaextract-fsync", daemon=True)
            self._thread.start()
        self._queue.put(path)

    def _sync(self) -> None:
        while (path := self._queue.get()) is not None:
            try:
                fsync_path(path)
            except FileNotFoundError:  # replaced or swept since: nothing of it to keep
                continue
            except OSError as exc:
                self._error = self._error or exc

    def make_durable(self) -> None:
        """Every entry appended so far on disk, and its folder; an fsync's error raised here (the part is not committed)."""
        self.stop()
        error, self._error = self._error, None
        if error is not None:
            raise error
        for folder in self._folders:
            fsync_path(folder)
        self._folders.clear()


    def stop(self) -> None:
        """The background thread done with what it was given, and ended (a writer that stops without committing, after
        a full disk, leaves no thread waiting)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None


def fsync_path(path: str) -> None:
    """A file or a folder (its entries' names) on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
