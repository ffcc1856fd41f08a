"""What a catalog already holds, per file: whether a re-scan extracts it again, and why (make-like re-scans).

A file is extracted again when it is new, when its identity changed (size,
mtime, and a remote object's ETag), when the reader that produced its row now has another version, or
when the scan asks for what its row lacks (references, a thumbnail); a file that failed is remembered with its reason and tried again only when
asked (``retry_failed``).
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from .read import part_files, read_columns
from .schema import path_key

NEW, CHANGED, UPGRADED, FAILED = "new", "changed", "reader upgraded", "previously failed"
ASKED = "asked for references or a thumbnail it lacks"
#: the order a dry run reports them in
REASONS = (NEW, CHANGED, UPGRADED, ASKED, FAILED)
INDEX_COLUMNS = ["path", "size", "mtime", "etag", "path_bytes", "reader", "reader_version", "success", "virtualizable", "thumbnail"]


#: the extras a scan can ask for, as bits of a row's ``extras`` code, and the column that says a row has it
EXTRAS = (("references", "virtualizable", 1), ("thumbnail", "thumbnail", 2))


def path_hash(key: bytes) -> int:
    """A path's 64-bit hash (xxh3 of its exact bytes): how the index finds a file's row without holding its name.

    Two names sharing a hash (one pair in about 10^19) can only make a file look changed: a row stands only when the
    file's size, mtime and identity (a local file's device, inode and change time; a remote object's ETag) match too.
    """
    import xxhash

    return xxhash.xxh3_64_intdigest(key)


def _text_hash(value: Any) -> int:
    """A row's identity or ETag as 64 bits (0: none)."""
    return path_hash(value.encode("utf-8", "surrogateescape")) | 1 if isinstance(value, str) else 0


class CatalogIndex:
    """Every path with a row, newest row winning; rows arrive in part order (later parts are newer).

    Kept column-wise for resumes of millions of files: per row a 64-bit hash of the name (sorted, so many names are
    looked up at once by bisection), its size, mtime, identity or ETag (hashed), outcome, reader and extras as NumPy
    arrays, about 40 bytes a row (a Python object per row cost 120 bytes beyond its name). Rows are appended in
    chunks and sorted when next asked.
    """

    def __init__(self) -> None:
        self._chunks: list[tuple[Any, ...]] = []
        self._columns: tuple[Any, ...] | None = None
        #: (reader, reader_version) pairs, coded by position
        self._readers: list[tuple[str | None, str | None]] = []
        self._reader_codes: dict[tuple[str | None, str | None], int] = {}
        self._rows = 0

    @classmethod
    def from_folder(cls, folder: str) -> "CatalogIndex":
        """The index of a catalog folder, read only (a dry run takes no lock and writes nothing)."""
        index = cls()
        if os.path.isdir(folder):
            for part in part_files(folder):
                index.add_columns(read_columns(part, INDEX_COLUMNS))
        return index

    def _code(self, reader: Any, version: Any) -> int:
        pair = (reader if isinstance(reader, str) else None, version if isinstance(version, str) else None)
        code = self._reader_codes.get(pair)
        if code is None:
            code = self._reader_codes[pair] = len(self._readers)
            self._readers.append(pair)
        return code

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Rows as dicts (the writer's, as it writes them)."""
        rows = list(rows)
        self.add_columns({c: [r.get(c) for r in rows] for c in INDEX_COLUMNS})

    def add_columns(self, cols: dict[str, list[Any]]) -> None:
        """Rows as columns (``read_columns`` of a part): ``INDEX_COLUMNS``, a missing one all None."""
        import numpy as np

        n = len(next(iter(cols.values()), []))
        if not n:
            return
        none: list[Any] = [None] * n

        def get(column: str) -> list[Any]:
            return cols.get(column) or none

        keys = [bytes.fromhex(pb) if isinstance(pb, str) else pb if pb is not None else str(p).encode("utf-8", "surrogateescape")
                for pb, p in zip(get("path_bytes"), get("path"))]
        extras = np.zeros(n, dtype=np.uint8)
        for _, column, bit in EXTRAS:
            extras |= np.fromiter((v is not None for v in get(column)), dtype=np.bool_, count=n).astype(np.uint8) * bit
        self._chunks.append((
            np.fromiter(map(path_hash, keys), dtype=np.uint64, count=n),
            np.fromiter((v if isinstance(v, int) else -1 for v in get("size")), dtype=np.int64, count=n),
            np.fromiter((v if isinstance(v, (int, float)) else np.nan for v in get("mtime")), dtype=np.float64, count=n),
            np.fromiter(map(_text_hash, get("etag")), dtype=np.uint64, count=n),
            np.fromiter((bool(v) for v in get("success")), dtype=np.bool_, count=n),
            np.fromiter(map(self._code, get("reader"), get("reader_version")), dtype=np.int32, count=n),
            extras,
        ))
        self._rows += n

    def _sorted(self) -> tuple[Any, ...]:
        """The columns, one row per name (its newest), sorted by name hash."""
        import numpy as np

        if self._chunks:
            parts = ([self._columns] if self._columns is not None else []) + self._chunks
            merged = tuple(np.concatenate(c) for c in zip(*parts))
            order = np.argsort(merged[0], kind="stable")  # equal names keep their arrival order: the last is the newest
            keys = merged[0][order]
            last = np.ones(len(keys), dtype=bool)
            last[:-1] = keys[1:] != keys[:-1]
            self._columns = tuple(c[order][last] for c in merged)
            self._chunks = []
        if self._columns is None:
            self._columns = (np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.uint64),
                             np.zeros(0, bool), np.zeros(0, np.int32), np.zeros(0, np.uint8))
        return self._columns

    @property
    def empty(self) -> bool:
        """No row added yet (a new catalog's index): answered without NumPy, whose import (70 ms) would otherwise
        come before a new scan's parser children start."""
        return not self._chunks and (self._columns is None or not len(self._columns[0]))

    def __len__(self) -> int:
        return 0 if self.empty else len(self._sorted()[0])

    @property
    def superseded(self) -> int:
        """Rows an older row of the same name left behind: what compaction has to drop."""
        return self._rows - len(self)

    def absent(self, present: Any) -> int:
        """How many names with a row are not among the ``present`` name hashes (``path_hash``)."""
        if self.empty:
            return 0
        import numpy as np

        return int((~np.isin(self._sorted()[0], np.asarray(present, dtype=np.uint64))).sum())

    def reason(self, path: str, size: int | None, mtime: float | None, versions: dict[str, str],
               retry_failed: bool = False, wanted: dict[str, frozenset[str]] | None = None, etag: str | None = None) -> str | None:
        """Why ``path`` is extracted again (``REASONS``), or None when its row stands.

        ``versions``: each reader's current version (``registry.reader_versions``);
        ``wanted``: per reader, the extras this scan asks for that the reader makes;
        ``etag``: a remote object's ETag now, or a local file's identity (a changed one is a changed file, whatever
        its size and mtime).
        """
        return self.reasons([path], [(size, mtime)], versions, retry_failed, wanted, [etag])[0]

    def reasons(self, paths: list[str], stats: Iterable[tuple[Any, Any]], versions: dict[str, str], retry_failed: bool = False,
                wanted: dict[str, frozenset[str]] | None = None, etags: Iterable[str | None] | None = None) -> list[str | None]:
        """``reason`` of many files at once (a resume of millions asks once): looked up by bisection of name hashes.
        ``stats`` and ``etags`` are read in the order of ``paths``, ``stats`` twice (each may be made as it is read)."""
        if self.empty:
            return [NEW] * len(paths)
        import numpy as np

        keys, sizes, mtimes, tags, success, readers, extras = self._sorted()
        n = len(paths)
        if not len(keys):
            return [NEW] * n
        want = np.fromiter((path_hash(path_key(p)) for p in paths), dtype=np.uint64, count=n)
        at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
        found = keys[at] == want
        size_now = np.fromiter((s if isinstance(s, int) else -1 for s, _ in stats), dtype=np.int64, count=n)
        mtime_now = np.fromiter((m if isinstance(m, (int, float)) else np.nan for _, m in stats), dtype=np.float64, count=n)
        tag_now = np.fromiter(map(_text_hash, etags or [None] * n), dtype=np.uint64, count=n)
        same_mtime = (mtimes[at] == mtime_now) | (np.isnan(mtimes[at]) & np.isnan(mtime_now))
        changed = (sizes[at] != size_now) | ~same_mtime | ((tag_now != 0) & (tags[at] != 0) & (tags[at] != tag_now))
        # the reader codes whose rows a scan redoes: another version now, or extras asked for that it makes
        upgraded = np.array([bool(r and versions.get(r) is not None and v != versions[r]) for r, v in self._readers] or [False])
        asks = np.array([sum(bit for name, _, bit in EXTRAS if name in (wanted or {}).get(r or "", frozenset())) if r else 0
                         for r, _ in self._readers] or [0], dtype=np.uint8)
        out: list[str | None] = [None] * n
        for i in np.flatnonzero(~found | changed | ~success[at] | upgraded[readers[at]] | (asks[readers[at]] & ~extras[at]).astype(bool)):
            j = at[i]
            if not found[i]:
                out[i] = NEW
            elif changed[i]:
                out[i] = CHANGED
            elif not success[j]:
                out[i] = FAILED if retry_failed else None
            elif upgraded[readers[j]]:
                out[i] = UPGRADED
            else:
                out[i] = ASKED
        return out
