"""A catalog exported for the tools users know: an intake-esm collection, a STAC Collection, kerchunk references.

Each export reads the catalog (files table, variables table, references) and
writes a folder; nothing is read from the scanned files again except the
whole-file SHA-256 that STAC's ``file:checksum`` needs (the catalog's own
checksum is a tree of block digests, not the file's plain hash).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

from ..core.text import for_spreadsheet
from . import references
from .read import group_attrs, read_variables, record_section, trusted_records
from .references import location


def _asset(catalog: str, rec: dict[str, Any]) -> tuple[str, str] | None:
    """(path, intake-esm format) of a file: the file itself when its reader names an ESM format (netCDF), else through
    its references (HDF5).

    netCDF files are listed as files, not references, although they may have
    both: intake-esm 2025.12 opens every ``reference`` asset of a group with
    one shared ``storage_options`` dict, so a group of several reference
    assets reads one file several times (seen here; ``open`` has no such problem).
    """
    from ..readers.registry import esm_format

    fmt = esm_format(rec.get("format"))
    if fmt:
        from ..storage.urls import absolute, is_url

        where = absolute(rec.get("located") or rec["path"])  # found from any working folder
        if fmt == "zarr" and not is_url(where):  # intake-esm hands zarr storage options, which a local path refuses
            import pathlib

            where = pathlib.Path(where).as_uri()
        return where, fmt
    if isinstance(rec.get("references"), str) and rec["references"]:
        references.checked(catalog, rec["references"], rec["path"])
        return os.path.abspath(location(catalog, rec["references"])), "reference"
    return None


def _outside(path: str, fmt: Any) -> str | None:
    """Why intake-esm must not be handed a local file (it points outside itself: ``guard.refused_references``, or its
    reader's ``points_outside``: a Zarr store's links), or None."""
    from ..readers.guard import refused_references, restrict_plugins
    from ..readers.registry import reader_of_format
    from ..storage.urls import is_url

    if is_url(path):
        return None
    reader = reader_of_format(fmt)
    reasons = reader.points_outside(path) if reader is not None else []
    if not reasons and os.path.isfile(path):
        restrict_plugins()
        reasons = refused_references(path)
    return f"{path}: points outside itself ({'; '.join(reasons[:2])}); left out" if reasons else None


def data_variables(catalog: str) -> dict[str, list[str]]:
    """Each file's data variables: its arrays that are not coordinates (``is_coordinate``)."""
    v = read_variables(catalog)
    out: dict[str, list[str]] = {}
    for row in v.to_dict("records") if len(v) else []:
        name = str(row["name"]).lstrip("/")
        if not is_coordinate(name, list(row.get("dims") if row.get("dims") is not None else [])):
            out.setdefault(row["path"], []).append(name)
    return out


def is_coordinate(name: str, dims: list[str]) -> bool:
    """Whether an array is a coordinate: one dimension, named after it."""
    return len(dims) == 1 and dims[0] == name.rsplit("/", 1)[-1]


def grouping_row(rec: dict[str, Any], variables: list[str], attrs: list[str]) -> dict[str, Any]:
    """What tells which dataset a file belongs to (the ESM export's ``dataset``, the Icechunk export's groups): its
    path, format, time range and time dimension, grid (dimensions but time), grouping attributes' values (``attrs``)
    and data variables of its root group (``variables``; arrays in sub-groups are not variables of the dataset
    xarray opens)."""
    from .trust import mapping, text

    section = record_section(rec)
    coverage = mapping(mapping(section.get("cf_coverage")).get("time"))
    time_dim = coverage["variable"].rsplit("/", 1)[-1] if text(coverage.get("variable")) else None
    dims = mapping(section.get("dimensions"))
    return {"file": rec["path"], "file_format": rec.get("format"),
            "time_start": text(coverage.get("start")), "time_end": text(coverage.get("end")),
            **{a: group_value(mapping(section.get("attrs")).get(a)) for a in attrs},
            "variable": [v for v in variables if "/" not in v], "time_dim": time_dim,
            "grid": tuple(sorted((str(k), str(v)) for k, v in dims.items() if k != time_dim and "/" not in str(k)))}


def export_esm(catalog: str, out: str, name: str = "metaextract") -> tuple[str, list[str]]:
    """An intake-esm collection (``collection.json`` + ``collection.csv``) of the catalog's HDF5 and netCDF files.

    One row per file, ``variable`` the list of its data variables, written
    as a list literal: open it with ``intake_esm.esm_datastore(json,
    read_csv_kwargs={"converters": {"variable": ast.literal_eval}})`` (what
    ``open_catalog`` does) and searches look inside it. (A Parquet
    collection reads its list column as NumPy arrays, which intake-esm
    2025.12's search cannot look into.) ``aggregation_control`` joins a
    dataset's files along their time coordinate and unions its variables.
    Returns (the JSON's path, notices): rows outside the scanned roots,
    references that fail ``references.checked`` and files that point
    outside themselves (intake-esm would hand them to libnetcdf, which
    follows external links) are left out, each with a notice.
    """
    import pandas as pd

    from .trust import CatalogInputError

    notices: list[str] = []
    records = trusted_records(catalog, notices)
    variables = data_variables(catalog)
    attrs = group_attrs(records)
    rows = []
    for rec in records:
        try:
            asset = _asset(catalog, rec)
        except CatalogInputError as exc:
            notices.append(f"{exc}; left out")
            continue
        if asset is None:
            continue
        why = _outside(rec.get("located") or rec["path"], rec.get("format"))
        if why:
            notices.append(why)
            continue
        row = {"path": asset[0], "format": asset[1], **grouping_row(rec, variables.get(rec["path"], []), attrs)}
        rows.append(row)
    keys = [*attrs, "format", "dataset"] if attrs else ["file_format", "format", "dataset"]
    name_datasets(rows, attrs)
    os.makedirs(out, exist_ok=True)
    table = pd.DataFrame(rows, columns=["path", "format", "variable", "file", "file_format", "time_start", "time_end", *attrs,
                                        "dataset"])
    table["variable"] = table["variable"].map(repr)  # a Python list literal: intake-esm's converters read it back
    table = table.map(for_spreadsheet)
    table.to_csv(os.path.join(out, "collection.csv"), index=False)
    aggregations: list[dict[str, Any]] = [{"type": "union", "attribute_name": "variable"}]
    dim = time_dimension(rows)
    if dim is not None:
        aggregations.append({"type": "join_existing", "attribute_name": "time_start",
                             "options": {"dim": dim, "coords": "minimal", "compat": "override"}})
    collection = {
        "esmcat_version": "0.1.0", "id": name,
        "description": f"HDF5 and netCDF files of the metaextract catalog {os.path.abspath(catalog)}",
        "catalog_file": "collection.csv",
        "attributes": [{"column_name": c, "vocabulary": ""} for c in ["variable", "time_start", "time_end", *attrs, "dataset"]],
        "assets": {"column_name": "path", "format_column_name": "format"},
        # two keys at least: intake-esm 2025.12 under pandas 3 groups by one column into keys it cannot look up (KeyError)
        "aggregation_control": {"variable_column_name": "variable", "groupby_attrs": keys,
                                "aggregations": aggregations},
    }
    path = os.path.join(out, "collection.json")
    with open(path, "w") as f:
        json.dump(collection, f, indent=1)
    return path, notices


#: a grouping attribute's value in the ESM collection for a file that lacks the attribute (or holds no text in it): a
#: file so marked is grouped apart, and the column has no empty cell (intake-esm refuses a grouping column whose
#: values are missing for some files and not for others: "should either be all NaN or there should be no NaNs")
ABSENT = "(absent)"


def group_value(value: Any) -> Any:
    """A file's value of a grouping attribute in the ESM collection: ``ABSENT`` for none, empty text or not-a-number."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return ABSENT
    return value


def time_dimension(rows: list[dict[str, Any]]) -> str | None:
    """The time dimension most of the files ``rows`` (``grouping_row``) have, the one datasets are joined along."""
    found = [row["time_dim"] for row in rows if row.get("time_dim")]
    return max(set(found), key=found.count) if found else None


def name_datasets(rows: list[dict[str, Any]], attrs: list[str]) -> dict[Any, list[str]]:
    """Each row's ``dataset``: the files intake-esm combines into one dataset (its variables unioned, its files joined
    along the collection's time coordinate, the one ``aggregation_control`` joins along). Returns why each group of
    files sharing the attributes was not one dataset (by the group's values of ``attrs``).

    Files that share the grouping attributes ``attrs`` (and a format) are one dataset when they can be combined
    (``_not_combinable`` finds nothing): two ensemble members or experiments whose attributes the grouping does not
    tell apart would otherwise be joined along time, an ocean and a land variable merged onto each other's grid
    (intake-esm fails on both, or joins what is not one run). Otherwise, and when no attribute is shared, files of one
    format holding the same variables along the time coordinate, named alike but for their numbers and following
    each other in time are one dataset (a run split in time, ``_runs``); any other file is one of its own. Each is
    named after its first file."""
    dim = time_dimension(rows)
    shared: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        shared.setdefault(tuple(row.get(a) for a in attrs) + (row.get("format"),), []).append(row)
    groups: list[list[dict[str, Any]]] = []
    reasons: dict[Any, list[str]] = {}
    for key, members in shared.items():
        why = _not_combinable(members) if attrs else ["no attribute is shared"]
        if not why:
            groups.append(members)
            continue
        parts = _runs(members, dim)
        groups += parts
        if len(parts) > 1:
            reasons[key[:-1]] = why
    taken: set[str] = set()
    for members in groups:
        first = min(str(m["file"]) for m in members)
        name = stem = os.path.splitext(os.path.basename(first.rstrip("/")))[0] or "dataset"
        n = 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        for m in members:
            m["dataset"] = name
    return reasons


def _not_combinable(rows: list[dict[str, Any]]) -> list[str]:
    """Why the files ``rows`` are not one dataset, in words (none: they are): they lie on other grids (other
    dimensions but time), or files of the same variables have no time range, are named apart but for their numbers,
    or overlap in time."""
    def base(row: dict[str, Any]) -> str:
        return os.path.basename(str(row["file"]).rstrip("/"))

    why = []
    grids: dict[Any, dict[str, Any]] = {}
    for row in rows:
        grids.setdefault(row.get("grid"), row)
    if len(grids) > 1:
        a, b = list(grids.values())[:2]
        why.append(f"{base(a)} and {base(b)} lie on other grids")
    by_variables: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_variables.setdefault(tuple(sorted(row["variable"])), []).append(row)
    for same in (group for group in by_variables.values() if len(group) > 1):
        untimed = [m for m in same if m.get("time_start") is None]
        if untimed:
            why.append(f"{base(untimed[0])} has no time dimension to join along")
            continue
        named: dict[str, dict[str, Any]] = {}
        for m in same:
            named.setdefault(_named(m), m)
        if len(named) > 1:
            a, b = list(named.values())[:2]
            why.append(f"{base(a)} and {base(b)} hold the same variables but are named apart (other members, experiments or "
                       "models)")
        ordered = sorted(same, key=lambda m: (str(m.get("time_start")), str(m.get("time_end"))))
        for before, after in zip(ordered, ordered[1:]):
            if str(after.get("time_start")) <= str(before.get("time_end")):
                why.append(f"{base(after)} starts ({after.get('time_start')}) before {base(before)} ends "
                           f"({before.get('time_end')}): files that overlap in time are not joined")
                break
    return why


def _named(row: dict[str, Any]) -> str:
    """A file's name with its numbers left out (dates, ranges, counters): what the files of one run share."""
    return re.sub(r"\d+", "#", os.path.basename(str(row["file"]).rstrip("/")))


def _members(alike: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """For each file of ``alike`` (named alike but for their numbers, ``_named``), the numbers of its name that tell
    its run from the others': those in which files starting at the same time differ (``rcp850001_..._20060101_20061231.nc``
    and ``rcp850002_..._20060101_20061231.nc``: two ensemble members), but for a date of the file's own (a number
    starting with the year its time starts or ends in: a rerun of another length is not another member)."""
    numbers = [re.findall(r"\d+", os.path.basename(str(r["file"]).rstrip("/"))) for r in alike]

    def dated(i: int, p: int) -> bool:
        return numbers[i][p][:4] in (str(alike[i].get("time_start"))[:4], str(alike[i].get("time_end"))[:4])

    starts: dict[str, list[int]] = {}
    for i, r in enumerate(alike):
        starts.setdefault(str(r.get("time_start")), []).append(i)
    positions = sorted({p for same in starts.values() if len(same) > 1 for p in range(len(numbers[same[0]]))
                        if len({numbers[i][p] for i in same}) > 1 and not all(dated(i, p) for i in same)})
    return [tuple(n[p] for p in positions) for n in numbers]


def _runs(rows: list[dict[str, Any]], dim: str | None) -> list[list[dict[str, Any]]]:
    """The files ``rows`` as runs: files of one format holding the same variables along the time coordinate ``dim``,
    named alike but for their numbers (``tas_Amon_MODEL_r1i1p1_185001-189912.nc`` and ``..._190001-194912.nc``, not
    another model's file of the same variable), of one member (``_members``) and following each other in time (files
    that overlap in time, copies and reruns, are not one run); any other file alone."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for row in rows:
        timed = dim is not None and row.get("time_dim") == dim and row.get("time_start") is not None
        key = (row.get("file_format"), row.get("format"), tuple(sorted(row["variable"])), _named(row)) if timed else (row["file"],)
        groups.setdefault(key, []).append(row)
    for key, members in list(groups.items()):  # ensemble members named alike: a run each, not one of their files a year
        if len(key) > 1:
            del groups[key]
            for row, member in zip(members, _members(members)):
                groups.setdefault((*key, member), []).append(row)
    for key, members in list(groups.items()):
        members.sort(key=lambda m: (str(m.get("time_start")), str(m.get("time_end"))))
        end = None
        for m in list(members):
            if end is not None and str(m.get("time_start")) <= end:
                members.remove(m)
                groups[(m["file"],)] = [m]
            else:
                end = str(m.get("time_end"))
    return list(groups.values())


def export_kerchunk(catalog: str, out: str) -> tuple[int, list[str]]:
    """Every file's references written to ``out`` (``NAME.json`` or a ``NAME.parq`` folder) with ``index.csv`` (path -> entry).

    Each set is checked first (``references.checked``: no links, chunks of
    the row's own file only) and what was checked is what is written: a
    JSON set is written from its parsed content, a Parquet folder copied
    without following links. Returns (sets written, notices).
    """
    import pandas as pd

    from .trust import CatalogInputError

    notices: list[str] = []
    records = trusted_records(catalog, notices)
    os.makedirs(out, exist_ok=True)
    index = []
    for rec in records:
        if not (isinstance(rec.get("references"), str) and rec["references"]):
            continue
        try:
            found = references.checked(catalog, rec["references"], rec["path"])
        except CatalogInputError as exc:
            notices.append(f"{exc}; left out")
            continue
        dst = os.path.join(out, rec["references"])
        if isinstance(found, dict):
            with open(dst, "w") as f:
                json.dump(found, f)
        else:
            shutil.copytree(found, dst, symlinks=True, dirs_exist_ok=True)
        index.append({"path": rec["path"], "references": rec["references"]})
    pd.DataFrame(index, columns=["path", "references"]).map(for_spreadsheet).to_csv(os.path.join(out, "index.csv"), index=False)
    return len(index), notices


def _stac(catalog: str, out: str, progress: Any) -> tuple[str, list[str]]:
    from .stac import export_stac

    return export_stac(catalog, out, progress)


def _stac_geoparquet(catalog: str, out: str, progress: Any) -> tuple[str, list[str]]:
    from .stac import export_stac_geoparquet

    return export_stac_geoparquet(catalog, out, progress)


def _kerchunk(catalog: str, out: str, progress: Any) -> tuple[str, list[str]]:
    return out, export_kerchunk(catalog, out)[1]


def _icechunk(catalog: str, out: str, progress: Any) -> tuple[str, list[str]]:
    from .virtual import export_icechunk

    return export_icechunk(catalog, out, progress)


#: the exports, by the name users give them: (what it writes, in words; how: ``(catalog, out, progress) -> (path, notices)``).
#: The CLI's ``--to`` choices and help come from here.
EXPORTS: dict[str, tuple[str, Any]] = {
    "esm": ("collection.json + collection.csv for intake-esm", lambda catalog, out, _progress: export_esm(catalog, out)),
    "stac": ("collection.json and one Item per file (datacube and file extensions; reads each file once for file:checksum)",
             _stac),
    "stac-geoparquet": ("the same STAC Items as one stac-geoparquet file, items.parquet (no file:checksum: nothing is read "
                        "again), for catalogs too large for a JSON file per Item", _stac_geoparquet),
    "kerchunk": ("the references of a scan made with --references, one entry per file, with index.csv", _kerchunk),
    "icechunk": ("an Icechunk repository of the catalog's runs as virtual datasets (needs --references; a new commit for "
                 "each export after a re-scan)", _icechunk),
}

#: the exports made from the reference sets a scan keeps (``--references``)
NEEDS_REFERENCES = frozenset({"kerchunk", "icechunk"})


def export(catalog: str | os.PathLike[str], to: str, output: str | os.PathLike[str] | None = None,
           progress: Any = None, storage_options: dict[str, Any] | None = None) -> str:
    """Export a catalog: ``to`` is ``esm`` (an intake-esm collection), ``stac`` (a STAC Collection, one Item per
    file), ``kerchunk`` (every file's references) or ``icechunk`` (an Icechunk repository of the runs as virtual
    datasets, ``catalog.virtual``; a new commit after each re-scan).

    ``output`` defaults to the catalog's name with ``.esm``, ``.stac``,
    ``.kerchunk`` or ``.icechunk`` beside it. Returns the written collection
    JSON (esm, stac) or folder (kerchunk, icechunk). ``progress(done, total)`` is called as the STAC
    export hashes files (``file:checksum`` reads each file once). Notices
    (files changed since the scan, rows and references of an edited catalog
    left out) are issued as ``RuntimeWarning``; a catalog whose manifest
    records no scanned roots is refused (``trust.CatalogInputError``).
    ``storage_options``: how to reach the remote objects a catalog of a
    bucket names (the scan's own; nothing of them is written).
    """
    from .read import part_files

    catalog = os.fspath(catalog)
    if to not in EXPORTS:
        raise ValueError(f"unknown export {to!r}; choose one of {', '.join(EXPORTS)}")
    if not os.path.isdir(catalog) or not part_files(catalog):
        raise ValueError(f"{catalog} is not a catalog (no part-*.parquet or part-*.jsonl in it)")
    out = os.fspath(output) if output is not None else os.path.normpath(catalog) + "." + to
    from ..storage.remote import using

    with using(storage_options):  # remote rows' bytes (an Icechunk export's coordinates) are read with these
        path, notices = EXPORTS[to][1](catalog, out, progress)
    import warnings

    for notice in notices:
        warnings.warn(notice, RuntimeWarning, stacklevel=2)
    return str(path)
