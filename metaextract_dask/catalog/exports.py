"""A catalog exported for the tools users know: an intake-esm collection, a STAC Collection, kerchunk references.

Each export reads the catalog (files table, variables table, references) and
writes a folder; nothing is read from the scanned files again except the
whole-file SHA-256 that STAC's ``file:checksum`` needs (the catalog's own
checksum is a tree of block digests, not the file's plain hash).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from ..core.text import for_spreadsheet
from .read import read_catalog, read_variables
from .references import location

#: how intake-esm names the formats it opens
ESM_FORMATS = {"netcdf3": "netcdf", "netcdf4": "netcdf"}
#: global attributes worth grouping by are text, shared by most files, and take few values
MAX_GROUP_ATTRS = 8


def _records(catalog: str) -> tuple[Any, list[dict[str, Any]]]:
    """The files table's successful array files, each with its record parsed."""
    df = read_catalog(catalog)
    ok = df[df["success"].fillna(False).astype(bool)] if len(df) else df
    records = []
    for row in ok.to_dict("records"):
        md = row.get("metadata")
        md = json.loads(md) if isinstance(md, str) else (md or {})
        records.append({**row, "record": md})
    return df, records


def _section(rec: dict[str, Any]) -> dict[str, Any]:
    """The reader's own section of a record."""
    return rec["record"].get(rec.get("reader") or "", {}) or {}


def _asset(catalog: str, rec: dict[str, Any]) -> tuple[str, str] | None:
    """(path, intake-esm format) of a file: a netCDF file itself, an HDF5 file through its references.

    netCDF files are listed as files, not references, although they may have
    both: intake-esm 2025.12 opens every ``reference`` asset of a group with
    one shared ``storage_options`` dict, so a group of several reference
    assets reads one file several times (seen here; ``open`` has no such problem).
    """
    fmt = ESM_FORMATS.get(rec.get("format") or "")
    if fmt:
        from ..storage.urls import absolute

        return absolute(rec["path"]), fmt
    if isinstance(rec.get("references"), str) and rec["references"]:
        return os.path.abspath(location(catalog, rec["references"])), "reference"
    return None


def data_variables(catalog: str) -> dict[str, list[str]]:
    """Each file's data variables: its arrays that are not coordinates (a 1-D array named after its dimension)."""
    v = read_variables(catalog)
    out: dict[str, list[str]] = {}
    for row in v.to_dict("records") if len(v) else []:
        dims = list(row.get("dims") if row.get("dims") is not None else [])
        name = str(row["name"]).lstrip("/")
        if len(dims) == 1 and dims[0] == name.rsplit("/", 1)[-1]:
            continue
        out.setdefault(row["path"], []).append(name)
    return out


def _group_attrs(records: list[dict[str, Any]]) -> list[str]:
    """Global attributes users group by: text in at least half the files, with fewer distinct values than files."""
    seen: dict[str, list[str]] = {}
    for rec in records:
        for k, v in (_section(rec).get("attrs") or {}).items():
            if isinstance(v, str) and 0 < len(v) <= 200 and "\n" not in v and k.isidentifier():
                seen.setdefault(k, []).append(v)
    chosen = [k for k, vals in seen.items() if len(vals) * 2 >= len(records) and 1 <= len(set(vals)) < max(2, len(records))]
    return sorted(chosen, key=lambda k: (len(set(seen[k])), k))[:MAX_GROUP_ATTRS]


def export_esm(catalog: str, out: str, name: str = "metaextract") -> str:
    """An intake-esm collection (``collection.json`` + ``collection.csv``) of the catalog's HDF5 and netCDF files.

    One row per file, ``variable`` the list of its data variables, written
    as a list literal: open it with ``intake_esm.esm_datastore(json,
    read_csv_kwargs={"converters": {"variable": ast.literal_eval}})`` (what
    ``open_catalog`` does) and searches look inside it. (A Parquet
    collection reads its list column as NumPy arrays, which intake-esm
    2025.12's search cannot look into.) ``aggregation_control`` joins a
    dataset's files along their time coordinate and unions its variables.
    Returns the JSON's path.
    """
    import pandas as pd

    _df, records = _records(catalog)
    variables = data_variables(catalog)
    attrs = _group_attrs(records)
    rows, time_dims = [], []
    for rec in records:
        asset = _asset(catalog, rec)
        if asset is None:
            continue
        section = _section(rec)
        coverage = (section.get("cf_coverage") or {}).get("time") or {}
        if coverage.get("variable"):
            time_dims.append(str(coverage["variable"]).rsplit("/", 1)[-1])
        base = {"path": asset[0], "format": asset[1], "file": rec["path"], "file_format": rec.get("format"),
                "time_start": coverage.get("start"), "time_end": coverage.get("end"),
                **{a: (section.get("attrs") or {}).get(a) for a in attrs}}
        # arrays in sub-groups are not variables of the file's root dataset (the one xarray opens)
        rows.append({**base, "variable": [v for v in variables.get(rec["path"], []) if "/" not in v]})
    os.makedirs(out, exist_ok=True)
    table = pd.DataFrame(rows, columns=["path", "format", "variable", "file", "file_format", "time_start", "time_end", *attrs])
    table["variable"] = table["variable"].map(repr)  # a Python list literal: intake-esm's converters read it back
    table = table.map(for_spreadsheet)
    table.to_csv(os.path.join(out, "collection.csv"), index=False)
    aggregations: list[dict[str, Any]] = [{"type": "union", "attribute_name": "variable"}]
    if time_dims:
        dim = max(set(time_dims), key=time_dims.count)
        aggregations.append({"type": "join_existing", "attribute_name": "time_start",
                             "options": {"dim": dim, "coords": "minimal", "compat": "override"}})
    collection = {
        "esmcat_version": "0.1.0", "id": name,
        "description": f"HDF5 and netCDF files of the metaextract catalog {os.path.abspath(catalog)}",
        "catalog_file": "collection.csv",
        "attributes": [{"column_name": c, "vocabulary": ""} for c in ["variable", "time_start", "time_end", *attrs]],
        "assets": {"column_name": "path", "format_column_name": "format"},
        "aggregation_control": {"variable_column_name": "variable", "groupby_attrs": attrs or ["file_format"],
                                "aggregations": aggregations},
    }
    path = os.path.join(out, "collection.json")
    with open(path, "w") as f:
        json.dump(collection, f, indent=1)
    return path


def export_kerchunk(catalog: str, out: str) -> int:
    """Every file's references copied to ``out`` (``NAME.json`` or a ``NAME.parq`` folder) with ``index.csv`` (path -> entry)."""
    import pandas as pd

    _df, records = _records(catalog)
    os.makedirs(out, exist_ok=True)
    index = []
    for rec in records:
        if not (isinstance(rec.get("references"), str) and rec["references"]):
            continue
        src = location(catalog, rec["references"])
        dst = os.path.join(out, rec["references"])
        if os.path.isdir(src):
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dst)
        index.append({"path": rec["path"], "references": rec["references"]})
    pd.DataFrame(index, columns=["path", "references"]).map(for_spreadsheet).to_csv(os.path.join(out, "index.csv"), index=False)
    return len(index)


#: what ``export`` writes, by the name users give it
EXPORTS = ("esm", "stac", "kerchunk")


def export(catalog: str | os.PathLike, to: str, output: str | os.PathLike | None = None,
           progress: Any = None) -> str:
    """Export a catalog: ``to`` is ``esm`` (an intake-esm collection), ``stac`` (a STAC Collection, one Item per
    file) or ``kerchunk`` (every file's references).

    ``output`` defaults to the catalog's name with ``.esm``, ``.stac`` or
    ``.kerchunk`` beside it. Returns the written collection JSON (esm, stac)
    or folder (kerchunk). ``progress(done, total)`` is called as the STAC
    export hashes files (``file:checksum`` reads each file once). Notices
    (files changed since the scan) are issued as ``RuntimeWarning``.
    """
    from .read import part_files

    catalog = os.fspath(catalog)
    if to not in EXPORTS:
        raise ValueError(f"unknown export {to!r}; choose one of {', '.join(EXPORTS)}")
    if not os.path.isdir(catalog) or not part_files(catalog):
        raise ValueError(f"{catalog} is not a catalog (no part-*.parquet or part-*.jsonl in it)")
    out = os.fspath(output) if output is not None else os.path.normpath(catalog) + "." + to
    if to == "esm":
        return export_esm(catalog, out)
    if to == "stac":
        import warnings

        from .stac import export_stac

        path, notices = export_stac(catalog, out, progress)
        for notice in notices:
            warnings.warn(notice, RuntimeWarning, stacklevel=2)
        return path
    export_kerchunk(catalog, out)
    return out
