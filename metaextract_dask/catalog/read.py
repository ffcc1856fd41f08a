"""Reading a catalog folder: its complete parts, one part's rows, the whole as a DataFrame."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from .schema import catalog_columns


def part_files(folder: str) -> list[str]:
    """The complete parts of a catalog, in order."""
    return sorted(glob.glob(os.path.join(folder, "part-*.parquet")) + glob.glob(os.path.join(folder, "part-*.jsonl")))


def _read_part(path: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        if columns is not None:  # parts written before a column existed lack it
            present = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in present]
        return pq.read_table(path, columns=columns).to_pylist()
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


def read_catalog(folder: str) -> Any:
    """The catalog as a pandas DataFrame (one row per file)."""
    import pandas as pd

    parts = part_files(folder)
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype="object") for name, _ in catalog_columns()})
    if parts[0].endswith(".parquet"):
        return pd.read_parquet(folder)
    return pd.DataFrame([row for p in parts for row in _read_part(p)], columns=[c for c, _ in catalog_columns()])
