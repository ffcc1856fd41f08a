"""The catalog's schema and rows: the framework's columns, each reader's declared ones, a record as one row.

The catalog never names a reader: a reader's columns appear by its declaring
them, filled from its own section of the record.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

from ..core.errors import MisattributionError
from ..core.model import ExtractionResult, RecordHead, RowBlock, check_record, failure
from ..core.text import safe_dict, safe_text
from ..readers.probe import file_stat

#: (column, arrow type name) the framework fills for every file, whatever its reader
FRAMEWORK_COLUMNS = [
    ("path", "string"), ("size", "int64"), ("mtime", "float64"), ("etag", "string"), ("version_id", "string"), ("format", "string"), ("reader", "string"), ("reader_version", "string"),
    ("strategy", "string"), ("shape", "string"), ("success", "bool"), ("error", "string"), ("error_type", "string"),
    ("duration", "float64"), ("attempts", "int32"), ("worker", "string"), ("extracted_at", "float64"),
    ("started_at", "float64"), ("finished_at", "float64"),
    ("chunks_read", "int64"), ("bytes_read", "int64"), ("io_requests", "int64"), ("io_bytes", "int64"), ("exact", "bool"), ("checksum", "string"),
    ("virtualizable", "bool"), ("references", "string"), ("thumbnail", "string"),
]
#: last: the whole record, and the name's exact bytes
TRAILING_COLUMNS = [("metadata", "string"), ("path_bytes", "binary")]
#: the catalog's layout, in docs/catalog-schema.md and each manifest; 2: reader_version, list columns, the variables table;
#: 3: virtualizable and references (kerchunk references kept beside the catalog);
#: 4: time_start/time_end as timestamps, calendar, time_start_iso/time_end_iso (older parts are migrated on open), thumbnail;
#: 5: etag, version_id (a remote object's identity), io_requests, io_bytes (what reading a remote object fetched)
SCHEMA_VERSION = 5

#: the variables table: one row per array of a file (an HDF5 dataset, a netCDF variable), joinable on ``path``
VARIABLE_COLUMNS = [
    ("path", "string"), ("reader", "string"), ("name", "string"), ("dims", "list<string>"), ("shape", "list<int64>"),
    ("dtype", "string"), ("units", "string"), ("standard_name", "string"), ("long_name", "string"), ("chunks", "list<int64>"),
    ("filters", "list<string>"), ("fill_value", "string"), ("min", "float64"), ("max", "float64"), ("mean", "float64"),
    ("count", "int64"), ("nan_count", "int64"), ("exact", "bool"), ("path_bytes", "binary"),
]
ARROW_TYPES = {"string": "string", "int64": "int64", "int32": "int32", "float64": "float64", "bool": "bool_", "binary": "binary",
               "timestamp": "timestamp[us]", "list<string>": "list<string>"}


@functools.lru_cache(maxsize=1)
def catalog_columns() -> list[tuple[str, str]]:
    """The schema every part shares: the framework's columns, then each registered reader's, in registry order.

    The catalog never names a reader: a plugin's columns appear by its
    declaring them. A reader column that reuses a taken name is left out.
    Worked out once per process (the registry is read once too).
    """
    return list(_catalog_columns())


@functools.lru_cache(maxsize=1)
def _catalog_columns() -> tuple[tuple[str, str], ...]:
    from ..readers.registry import available_readers, loaded_reader

    out = list(FRAMEWORK_COLUMNS)
    taken = {name for name, _ in out} | {name for name, _ in TRAILING_COLUMNS}
    for name in available_readers():
        reader = loaded_reader(name)
        for column, kind in getattr(reader, "columns", ()) if reader is not None else ():
            if column not in taken and kind in ARROW_TYPES:
                taken.add(column)
                out.append((column, kind))
    return tuple(out + TRAILING_COLUMNS)


@functools.lru_cache(maxsize=1)
def _empty_row() -> dict[str, Any]:
    """Every column of the catalog, None (copied for each row)."""
    return dict.fromkeys(name for name, _ in catalog_columns())


def _own_reader(record: dict[str, Any]) -> Any:
    """The loaded reader that made ``record``, or None."""
    from ..readers.registry import available_readers, loaded_reader

    name = record.get("reader")
    if not isinstance(name, str) or name not in available_readers():
        return None
    return loaded_reader(name)


def reader_columns(record: dict[str, Any]) -> dict[str, Any]:
    """The columns the record's own reader fills (none when it has no reader or it fails on this record)."""
    reader = _own_reader(record)
    try:
        return dict(reader.catalog_row(record.get(reader.name) or {})) if reader is not None else {}
    except Exception:  # noqa: BLE001 - an odd record: its columns stay empty, the JSON keeps everything
        return {}


def current_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row of an older schema with today's columns: the reader's columns derived again from its ``metadata``.

    The record is the source of truth; the columns are views of it, so a
    new column or type (version 4's timestamps) is filled for old rows too.
    """
    out = {name: row.get(name) for name, _ in catalog_columns()}
    if row.get("success") and isinstance(row.get("metadata"), (str, dict)):
        try:
            record = json.loads(row["metadata"]) if isinstance(row["metadata"], str) else row["metadata"]
        except ValueError:
            record = None
        if isinstance(record, dict):
            own = reader_columns(record)
            kinds = dict(catalog_columns())
            out.update({k: v for k, v in own.items() if k in kinds and k not in dict(FRAMEWORK_COLUMNS)})
    return _clean(out)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """safe_text on every value and list item, in place: names and attributes come from the files.

    Most values of a row are None or ASCII text: they are looked at once and left as they are (this runs once per
    file on the client, which writes every row).
    """
    for k, v in row.items():
        if v is None:
            continue
        if isinstance(v, str):
            row[k] = safe_text(v)
        elif isinstance(v, list):
            row[k] = [safe_text(x) for x in v]
    return row


def variable_rows(row: dict[str, Any], record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The variables-table rows of one file's catalog ``row`` (none for a failure, or a reader with no arrays).

    Each names its file by the row's ``path`` and ``path_bytes``, never by the record's own: a
    record's arrays cannot be filed under another file.
    """
    reader = _own_reader(record or {}) if row.get("success") else None
    try:
        found = list(reader.variable_rows((record or {}).get(reader.name) or {})) if reader is not None else []
    except Exception:  # noqa: BLE001 - an odd record: no variable rows, the JSON keeps everything
        found = []
    names = [c for c, _ in VARIABLE_COLUMNS]
    out = []
    for v in found:
        if isinstance(v, dict):
            item = safe_dict({**{c: v.get(c) for c in names}, "path": row["path"], "reader": reader.name})  # type: ignore[union-attr]
            for c in ("dims", "filters"):
                item[c] = [str(safe_text(x)) for x in item[c]] if isinstance(item[c], list) else None
            out.append({**item, "path_bytes": row["path_bytes"]})
    return out


def path_key(path: str) -> bytes:
    """A file's identity in the catalog: the exact bytes of its name.

    ``path`` is readable text (undecodable bytes escaped as ``\\xff``), so two
    names can share it (``bad\\xff.h5`` raw and with a literal backslash);
    ``path_bytes`` keeps them apart.
    """
    return os.fsencode(path)


def row_key(row: dict[str, Any]) -> bytes:
    pb = row.get("path_bytes")
    if isinstance(pb, str):  # JSON Lines keeps the bytes as hex
        return bytes.fromhex(pb)
    return pb if pb is not None else str(row["path"]).encode("utf-8", "surrogateescape")


def _detected(path: str) -> str:
    from ..readers.probe import file_type

    return file_type(path, None)


def json_value(value: Any) -> str:
    """Values JSON has no type for: bytes (a poster frame no writer kept) by their size, the rest as text."""
    if hasattr(value, "load"):  # h5refs.ReferencesJSON: the reference set itself
        return str(value.load())
    return f"<{len(value)} bytes>" if isinstance(value, (bytes, bytearray)) else str(value)


def record_thumbnail(md: dict[str, Any]) -> dict[str, Any] | None:
    """The ``thumbnail`` dict of a record's own reader section (a video's poster frame), or None."""
    reader = md.get("reader")
    section = md.get(reader) if isinstance(reader, str) else None
    thumb = section.get("thumbnail") if isinstance(section, dict) else None
    return thumb if isinstance(thumb, dict) else None


def thumbnail_entry(md: dict[str, Any]) -> str | None:
    """The row's ``thumbnail``: the PNG's entry name, "" when asked for but none could be made, None when not asked."""
    thumb = record_thumbnail(md)
    if thumb is None:
        return None
    entry = thumb.get("entry")
    return entry if isinstance(entry, str) else ""


def record_columns(md: dict[str, Any], success: bool = True) -> dict[str, Any]:
    """The columns of a row that its record alone fills (its reader's, the record's head, the record as JSON), cleaned;
    those it leaves empty are absent.

    Made where the file was extracted (``ExtractionResult.columns``), so the
    client that writes every row does not encode each record again; ``to_row``
    adds what the run knows (path, outcome, timing).
    """
    head = RecordHead.of(md)
    streaming, io = head.streaming, head.io or {}
    row: dict[str, Any] = {}
    if success:
        known = _empty_row()
        row.update((k, v) for k, v in reader_columns(md).items() if k in known)  # a column the catalog lacks is not a row's
    references = md.get("references") or {}
    row.update({
        "format": head.format, "reader": head.reader, "reader_version": head.reader_version,
        "strategy": streaming.get("strategy"), "shape": streaming.get("shape"),
        "chunks_read": streaming.get("chunks_read"), "bytes_read": streaming.get("bytes_read"), "exact": streaming.get("exact"),
        "etag": head.etag, "version_id": head.version_id,
        "io_requests": io.get("requests"), "io_bytes": io.get("bytes_read"),
        "checksum": (head.checksum or {}).get("value"),
        "virtualizable": references.get("virtualizable"), "references": references.get("entry"),
        "thumbnail": thumbnail_entry(md),
        "metadata": json.dumps(md, default=json_value) if md else None,
    })
    return _clean({k: v for k, v in row.items() if v is not None})  # sparse: it crosses processes; ``to_row`` fills the rest


def block_columns(block: RowBlock, sizes: list[int | None], mtimes: list[float | None]) -> dict[str, list[Any]]:
    """A block's rows as columns (``sizes`` and ``mtimes`` as the walk saw its files): what ``to_row`` makes of each
    of its files' results, a column at a time. Columns no record of the block fills are absent. The run's columns
    are set here as ``to_row`` sets them for a success: tests/test_row_integrity.py holds the two to the same rows."""
    n = len(block)
    if None in sizes or None in mtimes:  # not walked here: from the records, as ``to_row`` does
        heads = [RecordHead.of(json.loads(text)) for text in block.columns["metadata"]]
        sizes = [s if s is not None else h.size for s, h in zip(sizes, heads)]
        mtimes = [m if m is not None else h.mtime for m, h in zip(mtimes, heads)]
    cols = dict(block.columns)  # cleaned where they were made (``record_columns``)
    cols.update({
        "path": [safe_text(p) for p in block.paths], "size": sizes, "mtime": mtimes,
        "success": [True] * n, "duration": [max(0.0, e - s) for s, e in zip(block.starts, block.ends)], "attempts": [1] * n,
        "worker": [safe_text(block.worker)] * n, "extracted_at": block.ends, "started_at": block.starts, "finished_at": block.ends,
        "format": [safe_text(f) if f is not None else _detected(p) for f, p in zip(block.column("format"), block.paths)],
        "path_bytes": [path_key(p) for p in block.paths],
    })
    return cols


def to_row(result: ExtractionResult, size: int | None = None, mtime: float | None = None) -> dict[str, Any]:
    """One catalog row: identity, outcome, the format's main fields, all metadata as JSON.

    A record whose own path is not the row's is refused: the row becomes an
    internal error for this file, never another file's metadata. The
    record's columns are ``result.columns`` when the worker made them.
    """
    if result.success:
        try:
            check_record(result.file_path, result.metadata)
        except MisattributionError as exc:
            result = failure(result.task_id, result.file_path, exc, result.start_time, result.end_time, result.attempts)
    md = result.metadata or {}
    row = _empty_row().copy()
    row.update(result.columns if result.success and result.columns is not None else record_columns(md, result.success))
    if size is None:
        head = RecordHead.of(md)
        size, mtime = (head.size, head.mtime) if head.mtime is not None else file_stat(result.file_path)
    row.update({
        "path": result.file_path, "size": size, "mtime": mtime,
        "success": result.success, "error": result.error, "error_type": result.error_type,
        "duration": result.duration, "attempts": result.attempts, "worker": result.worker, "extracted_at": result.end_time or time.time(),
        "started_at": result.start_time or None, "finished_at": result.end_time or None,
    })
    if row["format"] is None:
        row["format"] = result.file_format or _detected(result.file_path)
    for key in ("path", "error", "error_type", "worker", "format"):
        row[key] = safe_text(row[key])
    row["path_bytes"] = path_key(result.file_path)
    return row
