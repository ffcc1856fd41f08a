"""The catalog: a folder of Parquet (or JSON Lines) parts plus a manifest.

``schema`` builds rows (framework columns, then each reader's declared ones),
``writer`` writes them crash-safe and resumes, ``read`` reads the folder back.
Read it with ``pandas.read_parquet(folder)``, ``pyarrow.dataset.dataset(folder)``
or ``dask.dataframe.read_parquet(folder)``; the variables table (one row per
array of a file, in the folder ``folder + ".variables"`` beside it) with ``read_variables(folder)``.
"""

from ..readers.probe import file_stat
from .read import part_files, query_catalog, read_catalog, read_variables
from .schema import (
    ARROW_TYPES,
    FRAMEWORK_COLUMNS,
    TRAILING_COLUMNS,
    VARIABLE_COLUMNS,
    catalog_columns,
    path_key,
    reader_columns,
    row_key,
    to_row,
)
from .trust import MANIFEST
from .writer import FORMATS, LOCK, QUARANTINE, CatalogLock, CatalogLockedError, CatalogWriteError, CatalogWriter

__all__ = ["ARROW_TYPES", "FORMATS", "FRAMEWORK_COLUMNS", "LOCK", "MANIFEST", "QUARANTINE", "TRAILING_COLUMNS", "CatalogLock",
           "CatalogLockedError", "CatalogWriteError", "CatalogWriter", "catalog_columns", "file_stat", "part_files", "path_key",
           "VARIABLE_COLUMNS", "query_catalog", "read_catalog", "read_variables", "reader_columns", "row_key", "to_row"]
