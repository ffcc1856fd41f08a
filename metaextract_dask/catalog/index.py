"""What a catalog already holds, per file: whether a re-scan extracts it again, and why (make-like re-scans).

A file is extracted again when it is new, when its identity changed (size,
mtime, and a remote object's ETag), when the reader that produced its row now has another version, or
when the scan asks for what its row lacks (references, a thumbnail); a file that failed is remembered with its reason and tried again only when
asked (``retry_failed``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from .read import _read_part, part_files
from .schema import path_key, row_key

NEW, CHANGED, UPGRADED, FAILED = "new", "changed", "reader upgraded", "previously failed"
ASKED = "asked for references or a thumbnail it lacks"
#: the order a dry run reports them in
REASONS = (NEW, CHANGED, UPGRADED, ASKED, FAILED)
INDEX_COLUMNS = ["path", "size", "mtime", "etag", "path_bytes", "reader", "reader_version", "success", "virtualizable", "thumbnail"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One file's newest row, as much of it as deciding needs (one per file of the catalog: kept small, slots and
    shared values, since a resume holds one for each of millions of files)."""

    size: int | None
    mtime: float | None
    reader: str | None
    reader_version: str | None
    success: bool
    #: what the row has of the extras a scan can ask for ("references", "thumbnail")
    extras: frozenset[str] = frozenset()
    #: a remote object's ETag when it was extracted
    etag: str | None = None


#: the few sets of extras rows have, shared by every entry (an empty frozenset made per row costs 224 bytes)
_EXTRAS: dict[tuple[str, ...], frozenset[str]] = {(): frozenset()}


def _shared(value: Any) -> Any:
    """One copy of a reader's name or version for all the rows that name it."""
    return sys.intern(value) if isinstance(value, str) else value


class CatalogIndex:
    """Every path with a row, newest row winning; rows arrive in part order (later parts are newer)."""

    def __init__(self) -> None:
        self.entries: dict[bytes, Entry] = {}
        #: a path seen twice: compaction has rows to drop
        self.superseded = False

    @classmethod
    def from_folder(cls, folder: str) -> "CatalogIndex":
        """The index of a catalog folder, read only (a dry run takes no lock and writes nothing)."""
        index = cls()
        if os.path.isdir(folder):
            for part in part_files(folder):
                index.add(_read_part(part, INDEX_COLUMNS))
        return index

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            key = row_key(r)
            self.superseded = self.superseded or key in self.entries
            names = tuple(name for name, column in (("references", "virtualizable"), ("thumbnail", "thumbnail"))
                          if r.get(column) is not None)
            extras = _EXTRAS.get(names) or _EXTRAS.setdefault(names, frozenset(names))
            self.entries[key] = Entry(r.get("size"), r.get("mtime"), _shared(r.get("reader")), _shared(r.get("reader_version")),
                                      bool(r.get("success")), extras, r.get("etag"))

    def __len__(self) -> int:
        return len(self.entries)

    def reason(self, path: str, size: int | None, mtime: float | None, versions: dict[str, str],
               retry_failed: bool = False, wanted: dict[str, frozenset[str]] | None = None, etag: str | None = None) -> str | None:
        """Why ``path`` is extracted again (``REASONS``), or None when its row stands.

        ``versions``: each reader's current version (``registry.reader_versions``);
        ``wanted``: per reader, the extras this scan asks for that the reader makes;
        ``etag``: a remote object's ETag now (a changed ETag is a changed object, whatever its size and mtime).
        """
        entry = self.entries.get(path_key(path))
        if entry is None:
            return NEW
        if (entry.size, entry.mtime) != (size, mtime) or (etag is not None and entry.etag is not None and etag != entry.etag):
            return CHANGED
        if not entry.success:
            return FAILED if retry_failed else None
        current = versions.get(entry.reader) if entry.reader else None
        if current is not None and entry.reader_version != current:
            return UPGRADED
        if wanted and entry.reader and wanted.get(entry.reader, frozenset()) - entry.extras:
            return ASKED
        return None
