"""The crash-safe writer: parts written to a hidden temporary, fsynced, renamed; the lock; resume and compaction.

A run killed at any moment leaves only whole parts (readers ignore names
starting with ``.`` or ``_``). Files whose (name bytes, size, mtime) already
have a row are skipped; a file that changed gets a new row, and older rows of
the same path are dropped when parts are compacted, so each path appears once.
"""

from __future__ import annotations

import datetime
import glob
import json
import os
import socket
import time
from typing import Any, Callable, Iterable

from ..core.model import ExtractionResult, RowBlock
from . import sidecars
from .arrow import rows_to_columns
from .index import INDEX_COLUMNS, CatalogIndex, path_hash
from .read import _read_part, current_rows, is_current, part_files, part_problem, read_columns, variables_folder
from .schema import (
    SCHEMA_VERSION,
    VARIABLE_COLUMNS,
    block_columns,
    catalog_columns,
    path_key,
    record_thumbnail,
    row_key,
    to_row,
    variable_rows,
)
from .trust import MANIFEST

LOCK = "_lock"
QUARANTINE = "_quarantine"
FORMATS = ("parquet", "jsonl")


#: the thumbnails folder is the catalog's name with this suffix, beside it (``sidecars``)
THUMBNAILS = ".thumbnails"

def _temporary(folder: str, name: str) -> str:
    """Where ``name`` is written before it is published (hidden: readers skip names starting with ``.``)."""
    return os.path.join(folder, f".{name}.{os.getpid()}.tmp")


def _publish(tmp: str, folder: str, name: str) -> None:
    """The temporary fsynced, renamed to ``name``, the folder fsynced: the file is there whole or not at all."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, name))
    sidecars.fsync_path(folder)


def _atomic_write(folder: str, name: str, write: Any) -> None:
    """write(path) to a hidden temporary, then ``_publish`` it as ``name``."""
    tmp = _temporary(folder, name)
    try:
        write(tmp)
        _publish(tmp, folder, name)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


class _RowFile:
    """Rows written to one file in one of the catalog's formats, a batch at a time (each a row group in Parquet)."""

    def __init__(self, path: str, fmt: str, columns: list[tuple[str, str]]):
        self.path, self.fmt, self.columns = path, fmt, columns
        self.rows = 0
        self._parquet: Any = None
        self._started = False

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.write_columns(rows_to_columns(rows, [name for name, _ in self.columns]), len(rows))

    def write_columns(self, values: dict[str, list[Any]], rows: int) -> None:
        """``rows`` rows given as one list per column name (a column ``values`` lacks is null)."""
        if not rows:
            return
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            from .arrow import table_from_columns

            table = table_from_columns(values, rows, self.columns)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        else:
            names = [name for name, _ in self.columns if name in values]
            with open(self.path, "a" if self._started else "w") as f:
                f.writelines(json.dumps(_jsonl_row(dict(zip(names, row))), default=str) + "\n"
                             for row in zip(*(values[name] for name in names)))
        self._started = True
        self.rows += rows

    def close(self) -> None:
        """Finish the file (one without rows still has the catalog's schema)."""
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        elif not self._started:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                from .arrow import table_from_rows

                pq.write_table(table_from_rows([], self.columns), self.path)
            else:
                open(self.path, "w").close()
            self._started = True


def _write_rows(path: str, rows: list[dict[str, Any]], fmt: str, columns: list[tuple[str, str]] | None = None) -> None:
    out = _RowFile(path, fmt, columns or catalog_columns())
    out.write(rows)
    out.close()


def _jsonl_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row for JSON Lines: the record as a JSON object (not a string inside JSON), the name's bytes as hex."""
    out = {k: v.isoformat() if isinstance(v, datetime.datetime) else v for k, v in row.items()}
    out["path_bytes"] = row_key(row).hex()
    if isinstance(out.get("metadata"), str):
        out["metadata"] = json.loads(out["metadata"])
    return out


#: a catalog of at least this many rows compacts once this share of them is superseded (smaller ones always do)
COMPACT_SHARE, COMPACT_ALWAYS_BELOW = 0.01, 20_000

#: rows turned into one row group of the part being written: what the writer holds as Python rows at most
ROW_GROUP = 4096


class _OpenPart:
    """A part being written: rows go to its hidden temporary as they come, one row group at a time, so a part of
    ``flush_every`` rows never sits in memory whole; ``commit`` publishes it."""

    def __init__(self, folder: str, name: str, fmt: str, columns: list[tuple[str, str]]):
        self.folder, self.name = folder, name
        self.file = _RowFile(_temporary(folder, name), fmt, columns)

    @property
    def rows(self) -> int:
        return self.file.rows

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.file.write(rows)

    def write_columns(self, values: dict[str, list[Any]], rows: int) -> None:
        self.file.write_columns(values, rows)

    def commit(self) -> None:
        self.file.close()
        _publish(self.file.path, self.folder, self.name)

    def abandon(self) -> None:
        """Close and remove the temporary (the scan stops: what it held was not saved)."""
        try:
            self.file.close()
        except Exception:  # noqa: BLE001 - a file that failed mid-write may not close cleanly
            pass
        if os.path.lexists(self.file.path):
            os.unlink(self.file.path)


class CatalogLockedError(ValueError):
    """Another scan is writing this catalog (a usage error: exit 2, nothing overwritten)."""


class CatalogWriteError(OSError):
    """The catalog cannot be written (disk full, quota, read-only): the scan stops, the parts written stay readable."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CatalogLock:
    """``CATALOG/_lock``: one writer at a time, named by pid and host; a dead writer's lock is taken over."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK)
        self.notice: str | None = None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._stale_or_refuse(folder)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return
        raise CatalogLockedError(f"{folder}: could not take the catalog's lock {self.path}")

    def _stale_or_refuse(self, folder: str) -> None:
        try:
            with open(self.path) as f:
                owner = json.load(f)
            pid, host = int(owner["pid"]), str(owner["host"])
        except (OSError, ValueError, KeyError, TypeError):
            owner, pid, host = {}, -1, socket.gethostname()  # unreadable: a writer killed while writing it
        if host != socket.gethostname() or (pid > 0 and _alive(pid)):
            since = time.strftime("%Y-%m-%d %H:%M", time.localtime(owner.get("since", 0)))
            raise CatalogLockedError(f"{folder} is being written by another scan (pid {pid} on {host}, since {since}); "
                                     f"wait for it, or remove {self.path} if that scan is gone")
        self.notice = f"took over the lock of a scan that is gone (pid {pid} on {host})"
        os.unlink(self.path)

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class CatalogWriter:
    """Appends results to a catalog folder in crash-safe parts."""

    def __init__(self, folder: str, fmt: str = "parquet", flush_every: int = 20000, flush_seconds: float = 10.0, force: bool = False):
        if fmt not in FORMATS:
            raise ValueError(f"unknown catalog format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.folder, self.fmt = folder, fmt
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        #: what the user should be told (a lock taken over, parts quarantined, rows dropped)
        self.notices: list[str] = []
        self.broken: CatalogWriteError | None = None
        #: sidecar entries written since the last commit, made durable before the part naming them is committed
        self.unsynced = sidecars.Unsynced()
        _make_folder(folder)
        self.lock = CatalogLock(folder)
        if self.lock.notice:
            self.notices.append(self.lock.notice)
        try:
            self._open(force)
        except BaseException:
            self.lock.release()
            raise

    def _open(self, force: bool) -> None:
        folder, fmt = self.folder, self.fmt
        for leftover in glob.glob(os.path.join(folder, ".*.tmp")):  # from a run that was killed
            os.unlink(leftover)
        existing = part_files(folder)
        if existing and not any(p.endswith("." + fmt) for p in existing):
            raise ValueError(f"{folder} holds a {existing[0].rsplit('.', 1)[1]} catalog; use the same --format or another folder")
        if force:
            for p in existing + part_files(variables_folder(folder)):
                os.unlink(p)
            existing = []
        self.run = os.urandom(4).hex()  # part names are unique per run, whatever another writer did
        #: the folders, files and prefixes the catalog's scans read (the manifest's ``roots``: what ``open`` and the exports trust)
        self.roots = [] if force else self._previous_roots("roots")
        #: the working folders of the scans that named a root by a relative path: what the rows' relative paths are relative to
        self.bases = [] if force else self._previous_roots("bases")
        self.next_part = 1 + max((_part_number(p) for p in existing), default=-1)
        #: every row is this writer's (a new catalog, or --force) and none was dropped: the sidecar entries its rows name
        #: are those it wrote (``stored``), and the sweep need not read them back from the parts
        self.fresh = not existing
        self.stored: dict[str, set[str]] = {}
        #: every path with a row (its newest): what a re-scan extracts again, and whether ``compact`` has rows to drop
        self.index = CatalogIndex()
        self.rows_written = 0
        self.migrated = 0
        for part in existing:
            self.rows_written += self._index_or_quarantine(part)
        if self.migrated:
            self.notices.append(f"{self.migrated} catalog parts of an older schema were rewritten as schema version {SCHEMA_VERSION}")
        self._drop_orphan_variables()
        self.buffer: list[dict[str, Any]] = []
        #: blocks of rows as columns (``add_block``), and how many rows they hold
        self.blocks: list[tuple[dict[str, list[Any]], int]] = []
        self.block_rows = 0
        self.variables: list[dict[str, Any]] = []
        #: the part (and its variables part) being written, once a row group of it is
        self.part: tuple[_OpenPart, _OpenPart] | None = None
        #: the most rows held in ``buffer`` at once
        self.most_held = 0
        self.last_flush = time.monotonic()
        self.compact()

    def _previous_roots(self, key: str) -> list[str]:
        """The manifest's list ``key`` (``roots`` or ``bases``) of earlier scans."""
        from .trust import CatalogInputError, read_manifest

        try:
            roots = read_manifest(self.folder).get(key)
        except (CatalogInputError, OSError) as exc:
            if key == "roots":
                self.notices.append(f"the catalog's manifest could not be read ({exc}); it is written anew")
            return []
        return [r for r in roots if isinstance(r, str) and r] if isinstance(roots, list) else []

    def add_roots(self, roots: Iterable[str]) -> None:
        """Record what this scan reads (absolute paths, URLs as given): rows under them are the catalog's to trust; and,
        when a root is a relative path (rows keep paths as typed), the working folder they are relative to."""
        from ..storage.urls import absolute, is_url

        for root in map(os.fspath, roots):
            if not is_url(root) and not os.path.isabs(root) and os.getcwd() not in self.bases:
                self.bases.append(os.getcwd())
            root = absolute(root)
            if root not in self.roots:
                self.roots.append(root)

    def _index_or_quarantine(self, part: str) -> int:
        """Index one part (rewritten first when of an older schema); a part that does not read, is of the other format
        or whose values do not fit today's columns is moved aside with a notice."""
        try:
            if not part.endswith("." + self.fmt):
                raise ValueError(f"a {part.rsplit('.', 1)[1]} part in a {self.fmt} catalog")
            why = part_problem(part)
            if why is not None:
                raise ValueError(why)
            if not is_current(part):
                self._migrate(part)
            return self._index(part)
        except Exception as exc:  # noqa: BLE001 - a stray or damaged file must not block every resume
            qdir = os.path.join(self.folder, QUARANTINE)
            os.makedirs(qdir, exist_ok=True)
            os.replace(part, os.path.join(qdir, os.path.basename(part)))
            self.notices.append(f"{os.path.basename(part)} could not be read ({type(exc).__name__}: {str(exc)[:300]}); "
                                f"moved to {qdir} and its files will be extracted again")
            return 0

    def _index(self, part: str) -> int:
        cols = read_columns(part, INDEX_COLUMNS)
        self.index.add_columns(cols)
        return len(next(iter(cols.values()), []))

    def _migrate(self, part: str) -> None:
        """Rewrite a part of an older schema version with today's columns, so every reader of the folder sees one schema."""
        rows = current_rows(part)
        _atomic_write(self.folder, os.path.basename(part), lambda tmp: _write_rows(tmp, rows, self.fmt))
        self.migrated += 1

    def _drop_orphan_variables(self) -> None:
        """Variables parts whose files part is gone (quarantined, or a run killed between the two writes)."""
        files = {os.path.basename(p) for p in part_files(self.folder)}
        for part in part_files(variables_folder(self.folder)):
            if os.path.basename(part) not in files:
                os.unlink(part)

    def add(self, result: ExtractionResult, size: int | None = None, mtime: float | None = None) -> dict[str, Any]:
        """Buffer one file's row (written at the next flush or row group); the row is returned."""
        if result.success and isinstance(result.metadata, dict) and isinstance(result.metadata.get("references"), dict):
            self._keep_references(result)
        if result.success and isinstance(result.metadata, dict):
            self._keep_thumbnail(result)
        row = to_row(result, size, mtime)
        self.buffer.append(row)
        self.variables.extend(variable_rows(row, result.metadata))
        self._added()
        return row

    def add_block(self, block: RowBlock, sizes: list[int | None], mtimes: list[float | None]) -> dict[str, list[Any]]:
        """Buffer a block's rows (its files as the walk saw them: ``sizes``, ``mtimes``) as columns, and its files'
        variables-table rows; the columns are returned. Its files have no references or poster frames (``RowBlock``)."""
        cols = block_columns(block, sizes, mtimes)
        for rows in block.variables:
            self.variables.extend(rows)
        done = 0
        while done < len(block):  # a row group holds at most ROW_GROUP rows, a block's as any
            n = min(len(block) - done, max(1, ROW_GROUP - self.held))
            self.blocks.append(({k: v[done:done + n] for k, v in cols.items()} if n < len(block) else cols, n))
            self.block_rows += n
            done += n
            self._added()
        return cols

    @property
    def held(self) -> int:
        """Rows buffered and not yet written."""
        return len(self.buffer) + self.block_rows

    def _added(self) -> None:
        self.most_held = max(self.most_held, self.held)
        written = self.part[0].rows if self.part is not None else 0
        if written + self.held >= self.flush_every or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()
        elif self.held >= ROW_GROUP:
            self._guarded(self._spill)

    def _keep_references(self, result: ExtractionResult) -> None:
        """Move a record's reference set to ``CATALOG.references/``; the record keeps the verdict and the entry's name."""
        from . import references

        md = result.metadata
        assert md is not None  # checked by add()
        found = md["references"]
        kept = {k: v for k, v in found.items() if k != "refs"}
        if found.get("refs"):
            try:
                kept["entry"] = references.store(self.folder, path_key(result.file_path), found["refs"], found.get("n_chunks"),
                                                   self.unsynced)
                self.stored.setdefault(references.REFERENCES, set()).add(kept["entry"])
            except (OSError, ValueError) as exc:  # a full disk, or a worker's answer that is no reference set
                why = getattr(exc, "strerror", None) or exc
                kept["error"] = f"references not written: {why}"
                self.notices.append(f"{result.file_path}: its references could not be written ({why})")
        md["references"] = kept

    def _keep_thumbnail(self, result: ExtractionResult) -> None:
        """Move a video record's poster frame to ``CATALOG.thumbnails/``; the record keeps the entry's name."""
        md = result.metadata
        assert md is not None  # checked by add()
        thumb = record_thumbnail(md)
        if thumb is None or "png" not in thumb:
            return
        png = thumb.pop("png")
        if not isinstance(png, (bytes, bytearray)) or not png.startswith(b"\x89PNG\r\n\x1a\n"):
            thumb["error"] = "the poster frame is not a PNG"
            return
        name = sidecars.entry_stem(path_key(result.file_path)) + ".png"
        try:
            thumb["entry"] = sidecars.write_entry(self.folder, THUMBNAILS, name, bytes(png), self.unsynced)
            self.stored.setdefault(THUMBNAILS, set()).add(name)
        except OSError as exc:
            thumb["error"] = f"thumbnail not written: {exc.strerror or exc}"
            self.notices.append(f"{result.file_path}: its thumbnail could not be written ({exc.strerror or exc})")

    def _spill(self) -> None:
        """The buffered rows as a row group of the open part (opened first if need be); its variables likewise."""
        if self.part is None:
            name = f"part-{self.next_part:05d}-{self.run}.{self.fmt}"
            self.part = (_OpenPart(self.folder, name, self.fmt, catalog_columns()),
                         _OpenPart(variables_folder(self.folder), name, self.fmt, VARIABLE_COLUMNS))
        files, arrays = self.part
        if self.variables:
            os.makedirs(variables_folder(self.folder), exist_ok=True)
            arrays.write(self.variables)
        names = [name for name, _ in files.file.columns]
        cols = rows_to_columns(self.buffer, names)
        for block, n in self.blocks:  # one row group of the rows and the blocks, in the order they came
            for name in names:
                cols[name].extend(block.get(name) or [None] * n)
        files.write_columns(cols, self.held)
        self.index.add_columns(cols)
        self.buffer, self.variables, self.blocks, self.block_rows = [], [], [], 0

    def _commit(self) -> None:
        """The open part into place: its variables first (a files part never lacks its variables; a variables part
        alone is dropped at the next open), then the manifest."""
        assert self.part is not None
        files, arrays = self.part
        self.unsynced.make_durable()  # the entries its rows name, before the rows
        if arrays.rows:
            arrays.commit()
        files.commit()
        self.part = None
        self.next_part += 1
        self.rows_written += files.rows
        self._manifest()

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run a write; a full disk stops the scan with one clear error, the parts written before stay readable."""
        try:
            step()
        except OSError as exc:
            pending = self.held + (self.part[0].rows if self.part is not None else 0)
            if self.part is not None:
                for part in self.part:
                    part.abandon()
                self.part = None
            self.broken = CatalogWriteError(exc.errno, f"cannot write the catalog {self.folder}: {exc.strerror or exc}; "
                                                       f"the {self.rows_written} rows written before stay readable, "
                                                       f"{pending} results were not saved")
            raise self.broken from exc

    def flush(self) -> None:
        """Write what is buffered and finish the open part; a full disk stops the scan with one clear error."""
        self.last_flush = time.monotonic()
        if self.broken is not None or not (self.held or self.part is not None):
            return

        def finish() -> None:
            self._spill()
            self._commit()

        self._guarded(finish)

    def _rewrite(self, drop: Callable[[str, list[dict[str, Any]]], list[int]]) -> int:
        """Rewrite the parts without the rows ``drop(part, rows)`` names; returns how many were dropped."""
        per_part = {p: _read_part(p, ["path", "path_bytes", "extracted_at"]) for p in part_files(self.folder)}
        dropped = 0
        for part, rows in per_part.items():
            gone = set(drop(part, rows))
            if not gone:
                continue
            kept = [r for i, r in enumerate(_read_part(part)) if i not in gone]
            dropped += len(gone)
            self.fresh = False
            self._rewrite_variables(os.path.basename(part), {row_key(r) for r in kept})
            if kept:
                _atomic_write(self.folder, os.path.basename(part), lambda tmp, kept=kept: _write_rows(tmp, kept, self.fmt))
            else:
                os.unlink(part)
                sidecars.fsync_path(self.folder)
        if dropped:
            self.index = CatalogIndex()
            self.rows_written = sum(self._index(p) for p in part_files(self.folder))
        return dropped

    def _rewrite_variables(self, name: str, keys: set[bytes]) -> None:
        """The variables part beside files part ``name``, keeping the arrays of the files whose rows stay."""
        part = os.path.join(variables_folder(self.folder), name)
        if not os.path.exists(part):
            return
        kept = [r for r in _read_part(part) if row_key(r) in keys]
        if kept:
            _atomic_write(variables_folder(self.folder), name, lambda tmp: _write_rows(tmp, kept, self.fmt, VARIABLE_COLUMNS))
        else:
            os.unlink(part)

    def compact(self) -> int:
        """Drop rows superseded by a newer row of the same file; returns how many.

        Nothing is read when no path has two rows (a fresh scan of distinct files), nor while the superseded rows of
        a large catalog are under ``COMPACT_SHARE`` of its rows: rewriting its parts to drop a few would cost each
        resume more than the rows do, and readers take each file's newest row (``read.newest_rows``).
        """
        stale = self.index.superseded
        if not stale or (self.rows_written >= COMPACT_ALWAYS_BELOW and stale < COMPACT_SHARE * self.rows_written):
            return 0
        newest: dict[bytes, tuple[float, str, int]] = {}
        for part in part_files(self.folder):
            for i, r in enumerate(_read_part(part, ["path", "path_bytes", "extracted_at"])):
                key = (r["extracted_at"] or 0.0, part, i)
                if row_key(r) not in newest or key > newest[row_key(r)]:
                    newest[row_key(r)] = key
        return self._rewrite(lambda part, rows: [i for i, r in enumerate(rows) if newest[row_key(r)][1:] != (part, i)])

    def forget_missing(self, roots: Iterable[str], present: Iterable[str], listed: Iterable[str] = (), members: bool = False) -> int:
        """Drop rows of files under ``roots`` that no longer exist, and of objects under the remote prefixes
        ``listed`` that their listing no longer holds; with ``members`` (a scan that looked into archives),
        rows of archive members no longer present whose container lies under them. Returns how many (a notice says so)."""
        from ..storage.urls import container_of

        if self.index.empty:
            return 0  # a new catalog: no row to drop
        present = list(present)
        if not self.index.absent([path_hash(path_key(p)) for p in present]):
            return 0  # every file with a row is still there: no part is read
        prefixes = [os.path.abspath(r).rstrip(os.sep) + os.sep for r in roots]
        remote = [r.rstrip("/") + "/" for r in listed]
        here = {path_key(p) for p in present}

        def gone(_part: str, rows: list[dict[str, Any]]) -> list[int]:
            out = []
            for i, r in enumerate(rows):
                key = row_key(r)
                if key in here:
                    continue
                name = os.fsdecode(key)
                container = container_of(name)
                if container is not None:
                    if members and (any(container.startswith(p) for p in remote) or any(os.path.abspath(container).startswith(p) for p in prefixes)):
                        out.append(i)
                    continue
                if any(name.startswith(p) for p in remote) or \
                        any(os.path.abspath(name).startswith(p) for p in prefixes) and not os.path.lexists(name):
                    out.append(i)
            return out

        dropped = self._rewrite(gone)
        if dropped:
            self.notices.append(f"{dropped} rows of files that no longer exist were dropped from the catalog")
        return dropped

    def _sweep_sidecars(self) -> None:
        """Drop reference and thumbnail entries that no row names (files deleted, re-extracted without them, or
        written by a run killed before its rows were): in a catalog all of whose rows this writer wrote (``fresh``),
        the entries it stored; otherwise those the parts' rows name."""
        from .references import REFERENCES

        for column, suffix in (("references", REFERENCES), ("thumbnail", THUMBNAILS)):
            if os.path.isdir(sidecars.sidecar_folder(self.folder, suffix)):
                named = self.stored.get(suffix, set()) if self.fresh else \
                    {r[column] for p in part_files(self.folder) for r in _read_part(p, [column]) if r.get(column)}
                sidecars.sweep(self.folder, suffix, named)

    def _manifest(self, **extra: Any) -> None:
        info = {"format": self.fmt, "schema_version": SCHEMA_VERSION, "parts": [os.path.basename(p) for p in part_files(self.folder)],
                "rows": self.rows_written, "roots": self.roots, "bases": self.bases,
                "columns": [c for c, _ in catalog_columns()], "updated": time.time(), **extra}
        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write(json.dumps(info, indent=1))

        _atomic_write(self.folder, MANIFEST, write)

    def close(self, **summary: Any) -> None:
        """Flush, drop superseded rows, record the run in the manifest, release the lock."""
        try:
            if self.broken is None:
                self.flush()
                self.compact()
                self._sweep_sidecars()
                self._manifest(**summary, superseded=self.index.superseded)  # 0: every file has one row (query_catalog)
        finally:
            self.unsynced.stop()
            self.lock.release()


def _part_number(path: str) -> int:
    try:
        return int(os.path.basename(path).split("-")[1].split(".")[0])
    except (IndexError, ValueError):
        return -1


def _make_folder(folder: str) -> None:
    """The catalog folder, created; a path that cannot hold one is a usage error, said in one line."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{folder} exists and is not a folder: the catalog needs a folder of its own")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the catalog folder {folder}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to the catalog folder {folder}: permission denied")
