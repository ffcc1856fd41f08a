"""Reading a catalog folder: its complete parts, one part's rows, the whole as a DataFrame."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from .schema import catalog_columns, current_row


def part_files(folder: str) -> list[str]:
    """The complete parts of a catalog, in order."""
    return sorted(glob.glob(os.path.join(folder, "part-*.parquet")) + glob.glob(os.path.join(folder, "part-*.jsonl")))


def _read_part(path: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        part = pq.ParquetFile(path)  # not read_table: that imports pyarrow.dataset, 0.5 s of a CLI run
        if columns is not None:  # parts written before a column existed lack it
            present = set(part.schema_arrow.names)
            columns = [c for c in columns if c in present]
        return part.read(columns=columns).to_pylist()
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{k: r.get(k) for k in columns} for r in rows] if columns else rows


#: the variables table's folder is the catalog's name with this suffix, beside it: inside the catalog folder,
#: dask.dataframe.read_parquet(catalog) would read its rows as files (it walks subfolders, "_" or "." ones too)
VARIABLES = ".variables"


def variables_folder(folder: str) -> str:
    """``catalog`` -> ``catalog.variables``, the folder beside it."""
    return os.path.normpath(folder) + VARIABLES


def read_variables(folder: str) -> Any:
    """The catalog's variables table as a pandas DataFrame: one row per (file, array), joinable on ``path``."""
    import pandas as pd

    from .schema import VARIABLE_COLUMNS

    parts = part_files(variables_folder(folder))
    names = [c for c, _ in VARIABLE_COLUMNS]
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in names})
    if parts[0].endswith(".parquet"):
        return pd.read_parquet(variables_folder(folder))
    return pd.DataFrame([row for p in parts for row in _read_part(p)], columns=names)


def is_current(part: str) -> bool:
    """Whether a part has exactly today's columns and types (else its rows go through ``current_row``)."""
    if part.endswith(".parquet"):
        import pyarrow.parquet as pq

        from .arrow import table_from_rows

        return bool(pq.read_schema(part).remove_metadata().equals(table_from_rows([], catalog_columns()).schema))
    with open(part) as f:
        first = f.readline()
    return not first.strip() or list(json.loads(first)) == [c for c, _ in catalog_columns()]


def current_rows(part: str) -> list[dict[str, Any]]:
    """A part's rows with today's columns, whatever schema version wrote it."""
    rows = _read_part(part)
    return rows if is_current(part) else [{**current_row(r), "path_bytes": r.get("path_bytes")} for r in rows]


def read_catalog(folder: str) -> Any:
    """The catalog as a pandas DataFrame, one row per file (``newest_rows``); parts of older schema versions read as today's."""
    import pandas as pd

    parts = part_files(folder)
    columns = catalog_columns()
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype="object") for name, _ in columns})
    if parts[0].endswith(".parquet"):
        if all(is_current(p) for p in parts):
            return newest_rows(pd.read_parquet(folder))
        from .arrow import table_from_rows

        return newest_rows(table_from_rows([r for p in parts for r in current_rows(p)], columns).to_pandas())
    frame = pd.DataFrame([row for p in parts for row in current_rows(p)], columns=[c for c, _ in columns])
    for name, kind in columns:  # JSON Lines keeps timestamps as ISO text
        if kind == "timestamp":
            frame[name] = pd.Series([_parse_time(v) for v in frame[name]], dtype="datetime64[us]")
    return newest_rows(frame)


def newest_rows(frame: Any) -> Any:
    """Each file's newest row only (latest ``extracted_at``; of equal ones, the later part's).

    A re-scan writes a changed file's new row in a new part and drops the
    old row when it compacts, at its end or at the next scan's start: a
    scan killed between the two leaves both on disk. Readers see one.
    """
    if len(frame) < 2 or "path_bytes" not in frame:
        return frame
    keys = frame["path_bytes"].where(frame["path_bytes"].notna(), frame["path"])
    if not keys.duplicated().any():
        return frame
    ranked = frame.assign(_key=keys.to_numpy(), _at=frame["extracted_at"].to_numpy(), _i=range(len(frame)))
    newest = ranked.sort_values(["_at", "_i"], na_position="first", kind="stable").drop_duplicates("_key", keep="last")
    return newest.sort_values("_i").drop(columns=["_key", "_at", "_i"]).reset_index(drop=True)


def _parse_time(value: Any) -> Any:
    import datetime

    return datetime.datetime.fromisoformat(value) if isinstance(value, str) else None
