"""The catalog: a folder of Parquet (or JSON Lines) parts plus a manifest.

Crash-safe: every part is written to a hidden temporary name, fsynced,
renamed into place, and the folder fsynced; a run killed at any moment leaves
only whole parts (readers ignore names starting with ``.`` or ``_``). Resume:
files whose (path, size, mtime) already have a row are skipped. A file that
changed gets a new row; older rows of the same path are dropped when parts
are compacted, so each path appears once.

Read it with ``pandas.read_parquet(folder)``, ``pyarrow.dataset.dataset(folder)``
or ``dask.dataframe.read_parquet(folder)``.
"""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Any

from .model import ExtractionResult
from .text import safe_dict, safe_text

MANIFEST = "_manifest.json"
FORMATS = ("parquet", "jsonl")

#: (column, arrow type name); the schema every part shares
COLUMNS = [
    ("path", "string"), ("size", "int64"), ("mtime", "float64"), ("format", "string"), ("reader", "string"),
    ("strategy", "string"), ("success", "bool"), ("error", "string"), ("error_type", "string"),
    ("duration", "float64"), ("attempts", "int32"), ("worker", "string"), ("extracted_at", "float64"),
    ("chunks_read", "int64"), ("bytes_read", "int64"), ("exact", "bool"), ("checksum", "string"),
    ("entropy", "float64"), ("file_format", "string"), ("n_groups", "int32"), ("n_datasets", "int32"),
    ("n_variables", "int32"), ("n_dimensions", "int32"), ("time_start", "string"), ("time_end", "string"),
    ("container", "string"), ("media_duration", "float64"), ("codec", "string"), ("width", "int32"),
    ("height", "int32"), ("fps", "float64"), ("audio_codec", "string"), ("n_streams", "int32"),
    ("frames", "int64"), ("metadata", "string"),
]


def _fps(rate: Any) -> float | None:
    try:
        num, den = str(rate).split("/")
        return float(num) / float(den) if float(den) else None
    except (ValueError, ZeroDivisionError):
        return None


def file_stat(path: str) -> tuple[int | None, float | None]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime
    except OSError:
        return None, None


def _detected(path: str) -> str:
    from .batching import file_type

    return file_type(path, None)


def to_row(result: ExtractionResult, size: int | None = None, mtime: float | None = None) -> dict[str, Any]:
    """One catalog row: identity, outcome, the format's main fields, all metadata as JSON.

    A record whose own path is not the row's is refused: the row becomes an
    internal error for this file, never another file's metadata.
    """
    from .batching import check_record, failure
    from .errors import MisattributionError

    if result.success:
        try:
            check_record(result.file_path, result.metadata)
        except MisattributionError as exc:
            result = failure(result.task_id, result.file_path, exc, result.start_time, result.end_time, result.attempts)
    md = result.metadata or {}
    streaming = md.get("streaming") or {}
    if size is None:
        size, mtime = (md["size"], md["mtime"]) if "mtime" in md else file_stat(result.file_path)
    video = next((s for s in md.get("streams", []) if s.get("codec_type") == "video"), {})
    audio = next((s for s in md.get("streams", []) if s.get("codec_type") == "audio"), {})
    frames = sum(v.get("frames", 0) for v in md.get("frame_counts", {}).values()) if md.get("frame_counts") else None
    time_cov = (md.get("cf_coverage") or {}).get("time") or {}
    row = {
        "path": result.file_path, "size": size, "mtime": mtime,
        "format": md.get("format") or result.file_format or _detected(result.file_path), "reader": md.get("reader"), "strategy": streaming.get("shape"),
        "success": result.success, "error": result.error, "error_type": result.error_type,
        "duration": result.duration, "attempts": result.attempts, "worker": result.worker, "extracted_at": result.end_time or time.time(),
        "chunks_read": streaming.get("chunks_read"), "bytes_read": streaming.get("bytes_read"), "exact": streaming.get("exact"),
        "checksum": (md.get("checksum") or {}).get("value"), "entropy": (md.get("entropy") or {}).get("bits_per_byte"),
        "file_format": md.get("file_format"),
        "n_groups": len(md["groups"]) if isinstance(md.get("groups"), list) else None,
        "n_datasets": len(md["datasets"]) if isinstance(md.get("datasets"), list) else None,
        "n_variables": len(md["variables"]) if isinstance(md.get("variables"), dict) else None,
        "n_dimensions": len(md["dimensions"]) if isinstance(md.get("dimensions"), dict) else None,
        "time_start": time_cov.get("start"), "time_end": time_cov.get("end"),
        "container": md.get("container"), "media_duration": md.get("duration") if isinstance(md.get("duration"), (int, float)) else None,
        "codec": video.get("codec_name"), "width": video.get("width"), "height": video.get("height"),
        "fps": _fps(video.get("avg_frame_rate")) if video else None, "audio_codec": audio.get("codec_name"),
        "n_streams": len(md["streams"]) if isinstance(md.get("streams"), list) else None, "frames": frames,
        "metadata": json.dumps(md, default=str) if md else None,
    }
    return safe_dict(row)


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, {"string": "string", "int64": "int64", "int32": "int32", "float64": "float64", "bool": "bool_"}[kind])()) for name, kind in COLUMNS])


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(folder: str, name: str, write: Any) -> None:
    """write(path) to a hidden temporary, fsync, rename to ``name``, fsync the folder."""
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    write(tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, name))
    _fsync_dir(folder)


def _write_rows(path: str, rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), path)
    else:
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row, default=str) + "\n")


def part_files(folder: str) -> list[str]:
    """The complete parts of a catalog, in order."""
    return sorted(glob.glob(os.path.join(folder, "part-*.parquet")) + glob.glob(os.path.join(folder, "part-*.jsonl")))


def _read_part(path: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path, columns=columns).to_pylist()
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{k: r.get(k) for k in columns} for r in rows] if columns else rows


def read_catalog(folder: str) -> Any:
    """The catalog as a pandas DataFrame (one row per file)."""
    import pandas as pd

    parts = part_files(folder)
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype="object") for name, _ in COLUMNS})
    if parts[0].endswith(".parquet"):
        return pd.read_parquet(folder)
    return pd.DataFrame([row for p in parts for row in _read_part(p)], columns=[c for c, _ in COLUMNS])


class CatalogWriter:
    """Appends results to a catalog folder in crash-safe parts."""

    def __init__(self, folder: str, fmt: str = "parquet", flush_every: int = 200, flush_seconds: float = 10.0, force: bool = False):
        if fmt not in FORMATS:
            raise ValueError(f"unknown catalog format {fmt!r}; choose one of {', '.join(FORMATS)}")
        self.folder, self.fmt = folder, fmt
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        os.makedirs(folder, exist_ok=True)
        for leftover in glob.glob(os.path.join(folder, ".*.tmp")):  # from a run that was killed
            os.unlink(leftover)
        existing = part_files(folder)
        if existing and not existing[0].endswith("." + fmt):
            raise ValueError(f"{folder} holds a {existing[0].rsplit('.', 1)[1]} catalog; use the same --format or another folder")
        if force:
            for p in existing:
                os.unlink(p)
            existing = []
        self.next_part = 1 + max((int(os.path.basename(p).split("-")[1].split(".")[0]) for p in existing), default=-1)
        self.done: set[tuple[str, int, float]] = set()
        self.rows_written = sum(self._index(p) for p in existing)
        self.buffer: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()
        self.compact()

    def _index(self, part: str) -> int:
        rows = _read_part(part, ["path", "size", "mtime"])
        self.done.update((r["path"], r["size"], r["mtime"]) for r in rows)
        return len(rows)

    def is_done(self, path: str, size: int, mtime: float) -> bool:
        """Already in the catalog with this size and mtime."""
        return (safe_text(path), size, mtime) in self.done

    def add(self, result: ExtractionResult, size: int | None = None, mtime: float | None = None) -> None:
        self.buffer.append(to_row(result, size, mtime))
        if len(self.buffer) >= self.flush_every or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write buffered rows as one new part."""
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        rows, self.buffer = self.buffer, []
        name = f"part-{self.next_part:05d}.{self.fmt}"
        _atomic_write(self.folder, name, lambda tmp: _write_rows(tmp, rows, self.fmt))
        self.next_part += 1
        self.rows_written += len(rows)
        self.done.update((r["path"], r["size"], r["mtime"]) for r in rows)
        self._manifest()

    def compact(self) -> int:
        """Drop rows superseded by a newer row of the same path; returns how many."""
        newest: dict[str, tuple[float, str]] = {}
        parts = part_files(self.folder)
        per_part = {p: _read_part(p, ["path", "extracted_at"]) for p in parts}
        for part, rows in per_part.items():
            for r in rows:
                key = (r["extracted_at"] or 0.0, part)
                if r["path"] not in newest or key > newest[r["path"]]:
                    newest[r["path"]] = key
        dropped = 0
        for part, rows in per_part.items():
            keep = [i for i, r in enumerate(rows) if newest[r["path"]] == ((r["extracted_at"] or 0.0), part)]
            if len(keep) == len(rows):
                continue
            full = _read_part(part)
            kept = [full[i] for i in keep]
            dropped += len(rows) - len(kept)
            if kept:
                _atomic_write(self.folder, os.path.basename(part), lambda tmp, kept=kept: _write_rows(tmp, kept, self.fmt))
            else:
                os.unlink(part)
                _fsync_dir(self.folder)
        if dropped:
            self.done = set()
            self.rows_written = sum(self._index(p) for p in part_files(self.folder))
        return dropped

    def _manifest(self, **extra: Any) -> None:
        info = {"format": self.fmt, "parts": [os.path.basename(p) for p in part_files(self.folder)], "rows": self.rows_written,
                "columns": [c for c, _ in COLUMNS], "updated": time.time(), **extra}
        _atomic_write(self.folder, MANIFEST, lambda tmp: open(tmp, "w").write(json.dumps(info, indent=1)))

    def close(self, **summary: Any) -> None:
        """Flush, drop superseded rows, and record the run in the manifest."""
        self.flush()
        self.compact()
        self._manifest(**summary)
