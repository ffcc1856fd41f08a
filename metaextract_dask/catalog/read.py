"""Reading a catalog folder: its complete parts, one part's rows, the whole as a DataFrame."""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any

from .schema import catalog_columns, current_row


def part_files(folder: str) -> list[str]:
    """The complete parts of a catalog, in order."""
    return sorted(glob.glob(os.path.join(folder, "part-*.parquet")) + glob.glob(os.path.join(folder, "part-*.jsonl")))


def part_problem(part: str) -> str | None:
    """Why a file named like a part is not one a scan wrote (a link, a folder, no Parquet, a foreign schema), or None.

    A catalog is input: each bad part is told in one line and left out
    (quarantined by a scan), never a traceback.
    """
    if os.path.islink(part):
        return "a symbolic link, not a part written by a scan"
    if not os.path.isfile(part):
        return "not a regular file"
    try:
        if part.endswith(".parquet"):
            import pyarrow.parquet as pq

            names = pq.read_schema(part).names
        else:
            from .trust import load_json

            with open(part, "rb") as f:
                first = f.readline(1 << 24)
            names = list(load_json(first, "its first line")) if first.strip() else ["path"]
    except Exception as exc:  # noqa: BLE001 - whatever the file is, it is not a part
        return f"does not read as a catalog part ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
    if "path" not in names:
        return "not a catalog part (it has no path column)"
    return None


def checked_parts(folder: str, warn: bool = True) -> list[str]:
    """The parts of ``folder`` that read as catalog parts; each other one is said in one ``RuntimeWarning`` and left out."""
    good = []
    for part in part_files(folder):
        why = part_problem(part)
        if why is None:
            good.append(part)
        elif warn:
            import warnings

            warnings.warn(f"{part}: {why}; left out", RuntimeWarning, stacklevel=3)
    return good


def _read_part(path: str, columns: list[str] | None = None) -> list[dict[str, Any]]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        part = pq.ParquetFile(path)  # not read_table: that imports pyarrow.dataset, 0.5 s of a CLI run
        if columns is not None:  # parts written before a column existed lack it
            present = set(part.schema_arrow.names)
            columns = [c for c in columns if c in present]
        rows: list[dict[str, Any]] = part.read(columns=columns).to_pylist()
        return rows
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{k: r.get(k) for k in columns} for r in rows] if columns else rows


def read_columns(path: str, columns: list[str]) -> dict[str, list[Any]]:
    """Some columns of one part, column by column (no dict per row); a column the part lacks is left out."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        part = pq.ParquetFile(path)
        present = set(part.schema_arrow.names)
        out: dict[str, list[Any]] = part.read(columns=[c for c in columns if c in present]).to_pydict()
        return out
    rows = _read_part(path, columns)
    return {c: [r.get(c) for r in rows] for c in columns}


#: the variables table's folder is the catalog's name with this suffix, beside it: inside the catalog folder,
#: dask.dataframe.read_parquet(catalog) would read its rows as files (it walks subfolders, "_" or "." ones too)
VARIABLES = ".variables"


def variables_folder(folder: str) -> str:
    """``catalog`` -> ``catalog.variables``, the folder beside it."""
    return os.path.normpath(folder) + VARIABLES


def read_variables(folder: str, columns: list[str] | None = None) -> Any:
    """The catalog's variables table as a pandas DataFrame: one row per (file, array), joinable on ``path``
    (``columns``: only these)."""
    import pandas as pd

    from .schema import VARIABLE_COLUMNS

    names = [c for c, _ in VARIABLE_COLUMNS]
    parts = [p for p in checked_parts(variables_folder(folder)) if _has_columns(p, names)]
    wanted = names if columns is None else [c for c in names if c in columns]
    if not parts:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in wanted})
    if parts[0].endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(parts, columns=wanted).to_pandas()
    return pd.DataFrame([row for p in parts for row in _read_part(p)], columns=names)[wanted]


def _has_columns(part: str, names: list[str]) -> bool:
    """Whether a variables part has the table's columns (a foreign one is said and left out)."""
    if part.endswith(".parquet"):
        import pyarrow.parquet as pq

        missing = set(names) - set(pq.read_schema(part).names)
        if missing:
            import warnings

            warnings.warn(f"{part}: not a variables part (it lacks {', '.join(sorted(missing)[:4])}); left out", RuntimeWarning, stacklevel=3)
        return not missing
    return True


def _lacking_reader_columns(part: str) -> list[str] | None:
    """The reader columns a Parquet part lacks while it has every other column of today's schema with today's type
    (a part written before a reader was added: none of its rows is that reader's, its columns are null); None when the
    part differs otherwise (its rows then go through ``current_row``)."""
    import pyarrow.parquet as pq

    from .arrow import table_from_rows
    from .schema import FRAMEWORK_COLUMNS, TRAILING_COLUMNS

    today = table_from_rows([], catalog_columns()).schema
    have = pq.read_schema(part).remove_metadata()
    if have.equals(today):
        return []
    missing = [f.name for f in today if f.name not in have.names]
    if set(missing) & {name for name, _ in FRAMEWORK_COLUMNS + TRAILING_COLUMNS} or set(have.names) - set(today.names):
        return None
    return None if any(have.field(n).type != today.field(n).type for n in have.names) else missing


def _read_tables(parts: list[str], columns: list[str] | None) -> Any:
    """The parts as one Arrow table of today's columns (or ``columns``), a reader column a part lacks as nulls."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .arrow import table_from_rows

    today = table_from_rows([], catalog_columns()).schema
    names = [n for n in (columns or today.names) if n in today.names]
    tables = []
    for part in parts:
        with pq.ParquetFile(part) as opened:  # not read_table: that imports pyarrow.dataset (and pandas), 0.4 s
            present = set(opened.schema_arrow.names)
            table = opened.read(columns=[n for n in names if n in present])
        tables.append(pa.table({n: table[n] if n in present else pa.nulls(len(table), today.field(n).type) for n in names}))
    return pa.concat_tables(tables)


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


def read_catalog(folder: str, columns: list[str] | None = None) -> Any:
    """The catalog as a pandas DataFrame, one row per file (``newest_rows``); parts of older schema versions read as today's.

    ``columns``: only these (``path`` always comes along); ``read_catalog(cat, columns=[...])`` without ``metadata``
    reads a catalog of millions of rows without its records' JSON, most of its size.
    """
    import pandas as pd

    parts = checked_parts(folder)
    every = catalog_columns()
    wanted = None if columns is None else ["path", *(c for c in columns if c != "path")]
    parquet = bool(parts) and parts[0].endswith(".parquet")
    if parquet and all(_lacking_reader_columns(p) is not None for p in parts):
        if wanted is not None and settled(folder):  # one row per file: no names to compare
            return _read_tables(parts, wanted).to_pandas()
        keys = [] if wanted is None else [c for c in ("path_bytes", "extracted_at") if c not in wanted]
        frame = newest_rows(_read_tables(parts, None if wanted is None else wanted + keys).to_pandas())
        return frame.drop(columns=keys)
    if not parts:
        frame = pd.DataFrame({name: pd.Series(dtype="object") for name, _ in every})
    elif parts[0].endswith(".parquet"):
        from .arrow import table_from_rows

        frame = newest_rows(table_from_rows(_rows_of(parts), every).to_pandas())
    else:
        frame = pd.DataFrame(_rows_of(parts), columns=[c for c, _ in every])
        for name, kind in every:  # JSON Lines keeps timestamps as ISO text
            if kind == "timestamp":
                frame[name] = pd.Series([_parse_time(v) for v in frame[name]], dtype="datetime64[us]")
        frame = newest_rows(frame)
    return frame if wanted is None else frame[[c for c in wanted if c in frame]]


#: what ``query_catalog`` returns unless asked for other columns: enough to pick and open the files
QUERY_COLUMNS = ["path", "size", "format", "variables", "standard_names", "time_start", "time_end", "calendar", "lat_min", "lat_max",
                 "lon_min", "lon_max", "crosses_antimeridian", "success"]
#: the columns the time and box conditions read
_WHERE = ["time_start", "time_end", "lat_min", "lat_max", "lon_min", "lon_max", "crosses_antimeridian"]


def settled(folder: str) -> bool:
    """Whether the catalog's last scan left one row per file (its manifest says no row is superseded): readers then
    need not compare names to find each file's newest row."""
    from .trust import CatalogInputError, read_manifest

    try:
        return read_manifest(folder).get("superseded") == 0
    except (CatalogInputError, OSError):
        return False


def query_catalog(folder: str, variable: str | None = None, time: tuple[Any, Any] | None = None,
                  bbox: tuple[float, float, float, float] | None = None, columns: list[str] | None = None) -> Any:
    """The rows of the files that hold ``variable`` (a variable's name or its ``standard_name``), overlap ``time``
    (start, end: anything pandas reads as a time; None on a side leaves it open) and overlap ``bbox``
    (lon_min, lat_min, lon_max, lat_max in degrees, -180..180; a box whose west edge is east of its east edge crosses
    the antimeridian), as a pandas DataFrame of ``columns`` (default ``QUERY_COLUMNS``; any catalog column).

    A Parquet catalog is read in two passes (a part written before a reader was added too: its columns are null
    there): the time and box columns of every row, then the variables and the
    columns asked for of the row groups that hold a match only (a catalog is written in folder order, so a query
    for one run or one region reads few). 3 million rows: benchmarks/RESULTS-scale.md. Each file answers with its
    newest row. A JSON Lines catalog is read whole and filtered the same way.
    """
    out = list(QUERY_COLUMNS if columns is None else columns)
    parts = checked_parts(folder)
    if not (parts and parts[0].endswith(".parquet") and all(_lacking_reader_columns(p) is not None for p in parts)):
        frame = read_catalog(folder)
        if time or bbox:
            frame = frame[_overlaps(time, bbox, lambda c: frame[c]).fillna(False).astype(bool)]
        frame = _holding(frame, variable)
        return frame[[c for c in out if c in frame]].reset_index(drop=True)
    import pandas as pd

    need = list(dict.fromkeys([*out, "path", "path_bytes", "extracted_at"]))  # the variables are matched in _matches
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # Arrow decodes without the GIL: parts side by side
        found = [t for t in pool.map(lambda part: _matches(part, time, bbox, variable, need), parts) if t is not None]
    frame = pd.concat([t.to_pandas() for t in found], ignore_index=True) if found else \
        read_catalog(folder, columns=need).iloc[0:0]
    if not settled(folder) and len(frame):  # a newer row of a matched file that does not match makes it no answer
        frame = frame.merge(read_catalog(folder, columns=["path_bytes", "extracted_at"]), on=["path", "path_bytes", "extracted_at"])
    else:
        frame = newest_rows(frame)
    return frame[[c for c in out if c in frame]].reset_index(drop=True)


def _matches(part: str, time: Any, bbox: Any, variable: str | None, need: list[str]) -> Any:
    """The rows of one Parquet part that match, with the ``need`` columns (None: no row matches).

    First the time and box columns of the whole part; then, of the row groups holding a candidate, the variables;
    then, of the row groups still holding a match, the columns asked for.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(part)
    starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)])
    rows = np.arange(starts[-1])
    cond = _overlaps(time, bbox, ds.field)
    if cond is not None:
        where = pf.read(columns=_WHERE)
        rows = np.asarray(where.append_column("_row", pa.array(rows)).filter(cond).column("_row"))

    def groups_of(at: Any) -> list[int]:
        return sorted(set((np.searchsorted(starts, at, side="right") - 1).tolist()))

    def read(at: Any, columns: list[str]) -> Any:
        """Columns of the rows ``at`` (indices into the part), reading only their row groups."""
        groups = groups_of(at)
        table = pf.read_row_groups(groups, columns=columns)
        local = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])
        return table.take(pa.array(np.searchsorted(local, at)))

    if variable is not None and len(rows):
        lists = read(rows, ["variables", "standard_names"])
        hit = np.zeros(len(rows), dtype=bool)
        for name in ("variables", "standard_names"):
            col = lists.column(name).combine_chunks()
            flat = pc.equal(pc.list_flatten(col), variable).to_numpy(zero_copy_only=False)
            hit[np.asarray(pc.list_parent_indices(col))[flat]] = True
        rows = rows[hit]
    if not len(rows):
        return None
    present = set(pf.schema_arrow.names)
    table = read(rows, [c for c in need if c in present])
    today = {name: kind for name, kind in catalog_columns()}
    for c in need:  # a reader's column a part written before that reader lacks: null in its rows
        if c not in present and c in today:
            from .arrow import column_array

            table = table.append_column(c, column_array(today[c], [None] * len(table)))
    return table


def _overlaps(time: tuple[Any, Any] | None, bbox: tuple[float, float, float, float] | None, field: Any) -> Any:
    """The time and box conditions over columns named through ``field`` (pyarrow's ``ds.field`` or a frame's columns)."""
    import pandas as pd

    cond = None

    def both(a: Any, b: Any) -> Any:
        return b if a is None else a & b

    if time is not None:
        start, end = (_naive(pd.Timestamp(t)).to_pydatetime() if t is not None else None for t in time)
        if start is not None:
            cond = both(cond, field("time_end") >= start)
        if end is not None:
            cond = both(cond, field("time_start") <= end)
    if bbox is not None:
        west, south, east, north = (float(v) for v in bbox)
        cond = both(cond, (field("lat_max") >= south) & (field("lat_min") <= north))
        crosses = field("crosses_antimeridian") == True  # noqa: E712 - an expression, not a truth test
        if west <= east:
            plain = (field("lon_max") >= west) & (field("lon_min") <= east)
            wraps = crosses & ((field("lon_min") <= east) | (field("lon_max") >= west))
        else:  # the query box itself crosses: [west, 180] and [-180, east]
            plain = (field("lon_max") >= west) | (field("lon_min") <= east)
            wraps = crosses
        cond = both(cond, plain | wraps)
    return cond


def _naive(ts: Any) -> Any:
    """A time as the catalog keeps it: UTC without a zone."""
    return ts.tz_convert(None) if ts.tzinfo is not None else ts


def _holding(frame: Any, variable: str | None) -> Any:
    """The rows whose ``variables`` or ``standard_names`` list holds ``variable``."""
    if variable is None or not len(frame):
        return frame

    def has(values: Any) -> bool:
        return values is not None and variable in list(values)

    return frame[frame["variables"].map(has) | frame["standard_names"].map(has)]


def _rows_of(parts: list[str]) -> list[dict[str, Any]]:
    """Every part's rows with today's columns; a part whose values do not fit them is said and left out.

    A Parquet part's values must fit the columns' Arrow types (an older
    part's rows are converted through ``current_row``); JSON Lines keeps
    records as objects and times as text, so its rows need only be objects.
    """
    from .arrow import table_from_rows

    out = []
    for part in parts:
        try:
            rows = current_rows(part)
            if part.endswith(".parquet"):
                table_from_rows(rows, catalog_columns())  # each value fits its column
            elif not all(isinstance(r, dict) for r in rows):
                raise TypeError("a line that is not a JSON object")
        except Exception as exc:  # noqa: BLE001 - an edited part: the others still read
            import warnings

            warnings.warn(f"{part}: its values do not fit the catalog's columns ({type(exc).__name__}: {exc}); left out",
                          RuntimeWarning, stacklevel=3)
            continue
        out.extend(rows)
    return out


def catalog_rows(folder: str) -> list[dict[str, Any]]:
    """The catalog's rows as plain Python values (None for null), one per file as ``newest_rows`` chooses, without
    pandas (the exports: an import of pandas is 0.4 s of an export's second)."""
    parts = checked_parts(folder)
    if parts and parts[0].endswith(".parquet") and all(_lacking_reader_columns(p) is not None for p in parts):
        rows: list[dict[str, Any]] = _read_tables(parts, None).to_pylist()
    else:
        rows = _rows_of(parts)
    if len(rows) < 2 or settled(folder):
        return rows
    newest: dict[Any, int] = {}
    for i, row in enumerate(rows):  # of equal times (or none), the later part's row
        key = row.get("path_bytes") if row.get("path_bytes") is not None else row.get("path")
        j = newest.get(key)
        if j is None or _at(rows[j]) <= _at(row):
            newest[key] = i
    return [rows[i] for i in sorted(newest.values())]


def _at(row: dict[str, Any]) -> float:
    """A row's extraction time as a number (a missing one first, as ``newest_rows`` orders them)."""
    at = row.get("extracted_at")
    return float(at) if isinstance(at, (int, float)) and at == at else float("-inf")


def trusted_records(catalog: str, notices: list[str] | None = None) -> list[dict[str, Any]]:
    """The files table's successful rows under the catalog's scanned roots, each with its record parsed (``trust``) and
    where its file is from here (``located``: a relative path found through the manifest's bases).

    A row naming a file outside the roots (an edited catalog) is left out,
    with a line in ``notices``.
    """
    from . import trust

    ok = [row for row in catalog_rows(catalog) if row.get("success")]
    roots = trust.scanned_roots(catalog) if ok else []
    records = []
    for row in ok:
        try:
            located = trust.check_in_roots(catalog, row.get("path"), roots)
        except trust.CatalogInputError as exc:
            if notices is not None:
                notices.append(f"{exc}; left out")
            continue
        records.append({**row, "record": trust.load_record(row.get("metadata")), "located": located})
    return records


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


#: global attributes worth grouping by are short words, shared by most files, and take few values
MAX_GROUP_ATTRS = 8
#: the attributes that name a dataset where archives follow a data reference syntax (CMIP6, CMIP5, CORDEX): chosen
#: before any other, in this order
DRS_FACETS = ("activity_id", "institution_id", "institute_id", "source_id", "model_id", "driving_model_id", "domain",
              "experiment_id", "table_id", "frequency", "modeling_realm", "grid_label", "variant_label", "member_id",
              "driving_model_ensemble_member", "rcm_version_id")
#: a value a group can be named by: a word (``historical``, ``r1i1p1f1``, ``CF-1.7``), not a sentence, date or URL
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}")


def record_section(rec: dict[str, Any]) -> dict[str, Any]:
    """The reader's own section of a trusted record (``trusted_records``)."""
    from .trust import section

    return section(rec["record"])


def group_attrs(records: list[dict[str, Any]]) -> list[str]:
    """Global attributes users group files by (the ESM export's groups, the Icechunk export's datasets): words
    (``_WORD``) in every file that holds them, held by at least half the files, each value shared by two files on
    average (not a file's own creation time or tracking id); the data reference syntax's facets first
    (``DRS_FACETS``), then those that tell files apart (the fewest values first), then those all files share. A sentence ("This dataset was created on 2013-05-06 at
    00:14:23.9", a model's description) names no group: CESM's files were grouped by their creation times, one group
    per two files."""
    from .trust import mapping

    seen: dict[str, list[str]] = {}
    sentences: set[str] = set()  # attributes some file holds a sentence in ("none" in some files, a log in others)
    for rec in records:
        for k, v in mapping(record_section(rec).get("attrs")).items():
            if k in sentences or not isinstance(v, str) or not k.isidentifier():
                continue
            if _WORD.fullmatch(v) is None:
                sentences.add(k)
                seen.pop(k, None)
            else:
                seen.setdefault(k, []).append(v)
    chosen = [k for k, vals in seen.items() if len(vals) * 2 >= len(records) and len(set(vals)) <= max(1, len(vals) // 2)]

    def rank(k: str) -> tuple[int, int, int, str]:
        values = len(set(seen[k]))
        return (DRS_FACETS.index(k) if k in DRS_FACETS else len(DRS_FACETS), values == 1, values, k)

    return sorted(chosen, key=rank)[:MAX_GROUP_ATTRS]
