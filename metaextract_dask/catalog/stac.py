"""A catalog as a STAC Collection: one Item per file, with the datacube and file extensions.

Built with pystac from what the scan recorded: the box and the time range
(``lat_min``..``lon_max``, ``time_start``/``time_end``), each array as a
``cube:variables`` entry and each dimension as a ``cube:dimensions`` entry
(the extents of its coordinate variable's statistics), and the file's size.
``file:checksum`` is the only thing read again: the multihash of the file's
plain SHA-256 (``1220`` + hex), which the catalog's own checksum (a tree of
1 MiB block digests) is not. A file that changed since the scan gets no
checksum (its row would describe another file) and a notice; a remote
object gets none (it would be downloaded whole).
"""

from __future__ import annotations

import datetime
import hashlib
import math
import mimetypes
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from ..readers.cftime_range import STANDARD_CALENDARS
from . import sidecars
from .references import entry_name, location
from .writer import THUMBNAILS

#: STAC common metadata data types (datacube ``data_type``) by numpy's names
DATA_TYPES = {**{f"{k}{n}": f"{k}{n}" for k in ("int", "uint") for n in (8, 16, 32, 64)},
              **{f: f for f in ("float16", "float32", "float64")}, "complex64": "cfloat32", "complex128": "cfloat64"}
#: the multihash prefix of SHA2-256: code 0x12, length 0x20
SHA256_MULTIHASH = "1220"
HASH_BLOCK = 8 * 2**20
LATITUDE_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n"}
LONGITUDE_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e"}
AUXILIARY_ATTRS = ("coordinates", "bounds", "grid_mapping")
VERTICAL = {"height", "depth", "altitude", "air_pressure", "model_level_number", "atmosphere_hybrid_height_coordinate"}


def file_multihash(path: str, size: int | None, mtime: float | None) -> str | None:
    """``1220`` + SHA-256 hex of the file as scanned, or None when it is not what the row describes.

    Opened without following a final symlink and checked against the row's
    size and mtime after opening: a name swapped since the scan is never
    hashed in its place.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if size is not None and st.st_size != size or mtime is not None and abs(st.st_mtime - mtime) > 1e-3:
            return None
        digest = hashlib.sha256()
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return SHA256_MULTIHASH + digest.hexdigest()


def _iso(value: Any) -> str | None:
    """A timestamp (pandas, numpy or datetime) as RFC 3339 UTC text, or None for NaT/None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "NaT":
        return None
    if not isinstance(value, datetime.datetime):
        value = value.to_pydatetime() if hasattr(value, "to_pydatetime") else datetime.datetime.fromisoformat(str(value))
    return str(value.replace(tzinfo=None).isoformat()) + "Z"


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def bbox_and_geometry(row: dict[str, Any]) -> tuple[list[float] | None, dict[str, Any] | None]:
    """The row's lon/lat box as a STAC bbox and GeoJSON geometry; a box across the antimeridian is two polygons."""
    found = [_number(row.get(k)) for k in ("lon_min", "lon_max", "lat_min", "lat_max")]
    if any(x is None for x in found):
        return None, None
    west, east, south, north = (float(x) for x in found if x is not None)

    def box(w: float, e: float) -> list[list[list[float]]]:
        return [[[w, south], [e, south], [e, north], [w, north], [w, south]]]

    if row.get("crosses_antimeridian") and west > east:
        return [west, south, east, north], {"type": "MultiPolygon", "coordinates": [box(west, 180.0), box(-180.0, east)]}
    return [west, south, east, north], {"type": "Polygon", "coordinates": box(west, east)}


def _data_type(dtype: Any) -> str:
    import numpy as np

    try:
        name = np.dtype(str(dtype)).name
    except Exception:  # noqa: BLE001 - compound and other text numpy cannot parse back: "other"
        return "other"
    return DATA_TYPES.get(name, "other")


def _is_axis(v: dict[str, Any], units: set[str], standard: str) -> bool:
    return str(v.get("units") or "").lower() in units or v.get("standard_name") == standard


def datacube(row: dict[str, Any], arrays: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``cube:dimensions``, ``cube:variables``) of one file from its variables-table rows and its time range.

    A dimension with a 1-D coordinate variable of its name takes that
    variable's extent and unit (x/y when its units are degrees east/north,
    z for heights, depths and pressures, ``temporal`` with ISO dates when
    it is the time coordinate and the dates have Gregorian twins); one
    without is an index (``extent`` 0..size-1). HDF5 datasets without
    dimension scales get dimensions named ``DATASET_dim_N``.
    """
    dims: dict[str, dict[str, Any]] = {}
    variables: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    named = []
    for v in arrays:
        name = str(v["name"]).strip("/")
        shape = [int(n) for n in _listed(v.get("shape"))]
        vd = [str(d) for d in _listed(v.get("dims"))]
        if len(vd) != len(shape):
            vd = [f"{name}_dim_{i}" for i in range(len(shape))]
        sizes.update(zip(vd, shape))
        named.append((name, vd, v))
    coords = {name: v for name, vd, v in named if vd == [name.rsplit("/", 1)[-1]]}
    time_var = str(row.get("_time_variable") or "").strip("/")
    for dim, size in sizes.items():
        c = coords.get(dim)
        lo, hi = (_number(c.get("min")), _number(c.get("max"))) if c else (None, None)
        unit = str(c.get("units")) if c and c.get("units") not in (None, "") and not _nan(c.get("units")) else None
        entry: dict[str, Any]
        gregorian = str(row.get("calendar") or "standard") in STANDARD_CALENDARS  # ISO dates in STAC; others: numbers
        if c and dim == time_var and gregorian and _iso(row.get("time_start")) and _iso(row.get("time_end")):
            entry = {"type": "temporal", "extent": [_iso(row["time_start"]), _iso(row["time_end"])]}
        elif c and lo is not None and _is_axis(c, LONGITUDE_UNITS, "longitude"):
            entry = {"type": "spatial", "axis": "x", "extent": [lo, hi], "reference_system": 4326}
        elif c and lo is not None and _is_axis(c, LATITUDE_UNITS, "latitude"):
            entry = {"type": "spatial", "axis": "y", "extent": [lo, hi], "reference_system": 4326}
        elif c and lo is not None and (c.get("standard_name") in VERTICAL or dim.lower() in VERTICAL):
            entry = {"type": "spatial", "axis": "z", "extent": [lo, hi]}
        elif c and lo is not None:
            entry = {"type": "temporal" if dim == time_var else "other", "extent": [lo, hi]}
            if dim == time_var and row.get("calendar"):
                entry["description"] = f"CF time in the {row['calendar']} calendar, as its numbers: the dates are not ISO 8601's"
        else:
            entry = {"type": "index", "extent": [0, max(size - 1, 0)], "description": "array index (no coordinate variable)"}
        if unit and not isinstance(entry["extent"][0], str):  # ISO dates carry no "hours since" unit
            entry["unit"] = unit
        dims[dim] = entry
    auxiliary = _auxiliary(named)
    for name, vd, v in named:
        if name in coords and name in dims:
            continue  # a dimension's own coordinate: described by its dimension
        item: dict[str, Any] = {"dimensions": vd, "type": "auxiliary" if name in auxiliary else "data",
                                "data_type": _data_type(v.get("dtype"))}
        for key, field in (("units", "unit"), ("long_name", "description")):
            if v.get(key) not in (None, "") and not _nan(v.get(key)):
                item[field] = str(v[key])
        lo, hi = _number(v.get("min")), _number(v.get("max"))
        if lo is not None and hi is not None:
            item["extent"] = [lo, hi]
        variables[name] = item
    return dims, variables


def _listed(value: Any) -> list[Any]:
    """A list column's value (a list or a NumPy array from Parquet; None when missing) as a list."""
    return [] if value is None else list(value)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _auxiliary(named: list[tuple[str, list[str], dict[str, Any]]]) -> set[str]:
    """Arrays named in another's ``coordinates``, ``bounds`` or ``grid_mapping`` attribute (CF's auxiliary variables)."""
    out: set[str] = set()
    for _name, _dims, v in named:
        for key in AUXILIARY_ATTRS:
            text = v.get(key)
            if isinstance(text, str):
                out.update(t.rstrip(":") for t in text.split())
    return out


def _item_id(path: str) -> str:
    """Stable and unique: the file's name, made URL-safe, and a digest of its path's bytes."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(path))[:80] or "file"
    return f"{base}-{entry_name(os.fsencode(path), False)[:12]}"


def media_type(row: dict[str, Any], record: dict[str, Any]) -> str:
    """What the format's reader says (``media_types``, ``media_type``), else a guess from the name, else octet-stream."""
    from ..readers.registry import media_type as readers_say
    from .trust import section

    return readers_say(row.get("format"), section(record)) or mimetypes.guess_type(str(row["path"]))[0] or "application/octet-stream"


def export_stac(catalog: str, out: str, progress: Callable[[int, int], None] | None = None,
                checksums: bool = True) -> tuple[str, list[str]]:
    """Write ``out/collection.json`` and ``out/items/ID/ID.json``; returns (the collection's path, notices).

    Failed rows are left out (they describe no data). ``checksums=False``
    skips reading the files (no ``file:checksum``).
    """
    import pystac

    notices: list[str] = []
    items = _items(catalog, notices, progress if checksums else None, checksums)
    collection = _collection(catalog, items, pystac)
    os.makedirs(out, exist_ok=True)
    collection.normalize_and_save(os.path.abspath(out) + os.sep, catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return os.path.join(os.path.abspath(out), "collection.json"), notices


def export_stac_geoparquet(catalog: str, out: str, progress: Callable[[int, int], None] | None = None) -> tuple[str, list[str]]:
    """The same Items as one stac-geoparquet file, ``out/items.parquet`` (the collection in its metadata), for
    catalogs too large for a JSON file per Item: written with the stac-geoparquet library, read back with
    ``stac_geoparquet.arrow.stac_table_to_items`` or any GeoParquet reader. No ``file:checksum`` (reading every
    file again is what a catalog of millions cannot afford). Returns (its path, notices)."""
    import pystac
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    notices: list[str] = []
    items = _items(catalog, notices, None, False)
    if not items:
        raise ValueError(f"{catalog}: no file to describe (every row failed)")
    collection = _collection(catalog, items, pystac)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(os.path.abspath(out), "items.parquet")
    dicts = []
    for item in items:
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        d["collection"] = collection.id
        d["links"] = []
        dicts.append(d)
    unplaced = sum(d.get("geometry") is None for d in dicts)
    if unplaced:  # a STAC Item may have no geometry; a stac-geoparquet row may not (its geometry column is required)
        dicts = [d for d in dicts if d.get("geometry") is not None]
        notices.append(f"{unplaced} file{'s' if unplaced > 1 else ''} with no spatial footprint (no bounding box) left out: "
                       "stac-geoparquet requires a geometry per Item; the STAC export (--to stac) lists every file")
    if not dicts:
        raise ValueError(f"{catalog}: no file with a spatial footprint (a bounding box) for stac-geoparquet; use --to stac")
    _one_kind_per_field(dicts, notices)
    to_parquet(parse_stac_items_to_arrow(dicts), path,
               collections={collection.id: collection.to_dict(include_self_link=False, transform_hrefs=False)})
    return path, notices


def _one_kind_per_field(dicts: list[dict[str, Any]], notices: list[str]) -> None:
    """Each field of the Items one kind of value, as an Arrow column needs: a field that holds different kinds in
    different files (a dimension ``time`` with ISO dates in one file and numbers in another: its ``extent``) is written
    as JSON text in every Item, and named in ``notices``. Whole numbers beside fractions stay numbers."""
    import json

    kinds: dict[str, set[str]] = {}

    def kind(value: Any) -> str:
        return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__

    def walk(path: str, value: Any) -> None:
        if value is None:
            return
        kinds.setdefault(path, set()).add(kind(value))
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{path}\0{k}", v)
        elif isinstance(value, list):
            for v in value:
                walk(path + "\0[]", v)

    for d in dicts:
        walk("", {k: v for k, v in d.items() if k not in ("geometry", "bbox", "links")})
    found_mixed = {path.split("\0[]", 1)[0] for path, found in kinds.items() if len(found) > 1}
    mixed = sorted(p for p in found_mixed if not any(p.startswith(q + "\0") for q in found_mixed if q != p))  # the outermost
    for path in mixed:
        *parents, last = path.split("\0")[1:]
        for d in dicts:
            node: Any = d
            for key in parents:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, dict) and node.get(last) is not None:
                node[last] = json.dumps(node[last], default=str)
    if mixed:
        shown = ", ".join(".".join(p.split("\0")[1:]) for p in mixed[:5])
        notices.append(f"{len(mixed)} field{'s' if len(mixed) > 1 else ''} whose values differ in kind from file to file written as "
                       f"JSON text: {shown}{' ...' if len(mixed) > 5 else ''}")


def _items(catalog: str, notices: list[str], progress: Callable[[int, int], None] | None, checksums: bool) -> list[Any]:
    """One pystac Item per successfully read file of the catalog (``_item``)."""
    import pystac
    from pystac.extensions.datacube import DatacubeExtension
    from pystac.extensions.file import FileExtension

    from .read import read_variables, trusted_records

    records = trusted_records(catalog, notices)
    arrays: dict[str, list[dict[str, Any]]] = {}
    v = read_variables(catalog)
    for a in v.to_dict("records") if len(v) else []:
        arrays.setdefault(a["path"], []).append(a)
    _attach_attrs(records, arrays)
    hashes = _hashes(records, progress) if checksums else {}
    items = []
    for rec in records:
        try:
            items.append(_item(catalog, rec, arrays.get(rec["path"], []), hashes, notices, pystac, DatacubeExtension,
                               FileExtension))
        except Exception as exc:  # noqa: BLE001 - one odd record costs its own Item, with a notice, never the export
            notices.append(f"{rec['path']}: no STAC Item ({type(exc).__name__}: {exc})")
    return items


def _attach_attrs(records: list[dict[str, Any]], arrays: dict[str, list[dict[str, Any]]]) -> None:
    """The ``coordinates``/``bounds``/``grid_mapping`` attributes of each array, and the time variable's name, from the records."""
    from .trust import mapping, section, text

    for rec in records:
        own = section(rec["record"])
        by_name = own.get("variables") or own.get("datasets") or {}
        if isinstance(by_name, list):  # HDF5: a list of datasets, each with its name
            by_name = {d.get("name"): d for d in by_name if isinstance(d, dict) and isinstance(d.get("name"), str)}
        by_name = mapping(by_name)
        for a in arrays.get(rec["path"], []):
            attrs = mapping(mapping(by_name.get(a["name"]) or by_name.get(str(a["name"]).lstrip("/"))).get("attrs"))
            for key in AUXILIARY_ATTRS:
                a[key] = attrs.get(key) if isinstance(attrs.get(key), str) else None
        rec["_time_variable"] = text(mapping(mapping(own.get("cf_coverage")).get("time")).get("variable"))


def _hashes(records: list[dict[str, Any]], progress: Callable[[int, int], None] | None) -> dict[str, str | None]:
    """Every file's multihash, two at a time (hashlib releases the GIL while it hashes)."""
    from ..storage.urls import is_url

    out: dict[str, str | None] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:  # a remote object is not downloaded whole at export: no file:checksum
        futures = {rec["path"]: pool.submit(file_multihash, rec.get("located") or rec["path"], rec.get("size"), rec.get("mtime")) for rec in records
                   if not is_url(rec["path"]) and not os.path.isdir(rec.get("located") or rec["path"])}  # a Zarr store: many files
        for i, (path, fut) in enumerate(futures.items(), 1):
            out[path] = fut.result()
            if progress is not None:
                progress(i, len(futures))
    return out


def _item(catalog: str, rec: dict[str, Any], arrays: list[dict[str, Any]], hashes: dict[str, str | None], notices: list[str],
          pystac: Any, DatacubeExtension: Any, FileExtension: Any) -> Any:
    bbox, geometry = bbox_and_geometry(rec)
    start, end = _iso(rec.get("time_start")), _iso(rec.get("time_end"))
    props: dict[str, Any] = {"metaextract:format": rec.get("format"), "metaextract:reader": rec.get("reader")}
    for key in ("calendar", "time_start_iso", "time_end_iso"):
        if isinstance(rec.get(key), str):
            props[f"metaextract:{key}"] = rec[key]
    when = None
    if start and end:
        props.update({"start_datetime": start, "end_datetime": end})
    else:  # no time coordinate with Gregorian dates: the file's modification time says when it was made
        from .trust import finite

        when = datetime.datetime.fromtimestamp(finite(rec.get("mtime")) or 0.0, tz=datetime.timezone.utc)
        props["metaextract:datetime_is"] = "file modification time"
    item = pystac.Item(id=_item_id(rec["path"]), geometry=geometry, bbox=bbox, datetime=when, properties=props)
    from ..storage.urls import absolute

    asset = pystac.Asset(href=absolute(rec.get("located") or rec["path"]), media_type=media_type(rec, rec["record"]), roles=["data"],
                         title=os.path.basename(rec["path"]))
    item.add_asset("data", asset)
    fext = FileExtension.ext(asset, add_if_missing=True)
    fext.size = int(rec["size"]) if rec.get("size") is not None else None
    digest = hashes.get(rec["path"])
    if digest:
        fext.checksum = digest
    elif rec["path"] in hashes:
        notices.append(f"{rec['path']}: changed or unreadable since the scan; its Item has no file:checksum")
    if _references_ok(catalog, rec, notices):
        ref = location(catalog, rec["references"])
        item.add_asset("references", pystac.Asset(href=os.path.abspath(ref), roles=["references"],
                                                  media_type=pystac.MediaType.JSON if ref.endswith(".json") else None,
                                                  title="kerchunk references"))
    if isinstance(rec.get("thumbnail"), str) and rec["thumbnail"]:
        thumb = sidecars.entry_location(catalog, THUMBNAILS, rec["thumbnail"])
        item.add_asset("thumbnail", pystac.Asset(href=os.path.abspath(thumb), media_type=pystac.MediaType.PNG, roles=["thumbnail"],
                                                 title="poster frame"))
    extra, schemas = _reader_properties(rec)
    item.properties.update(extra)
    item.stac_extensions.extend(s for s in schemas if s not in item.stac_extensions)
    if arrays:
        dims, variables = datacube(rec, arrays)
        DatacubeExtension.add_to(item)
        item.properties["cube:dimensions"], item.properties["cube:variables"] = dims, variables
    return item


def _reader_properties(rec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What the row's reader adds to its Item (``stac_properties``: a raster's projection), or nothing."""
    from ..readers.registry import reader_of_format
    from .trust import section

    reader = reader_of_format(rec.get("format"))
    if reader is None:
        return {}, []
    try:
        props, schemas = reader.stac_properties(section(rec["record"]))
    except Exception:  # noqa: BLE001 - an odd record: its Item goes without them
        return {}, []
    return {k: v for k, v in props.items() if v is not None}, [str(s) for s in schemas]


def _references_ok(catalog: str, rec: dict[str, Any], notices: list[str]) -> bool:
    """Whether the row names a reference set that passes ``references.checked`` (else a notice says why not)."""
    from . import references
    from .trust import CatalogInputError

    if not (isinstance(rec.get("references"), str) and rec["references"]):
        return False
    try:
        references.checked(catalog, rec["references"], rec["path"])
    except CatalogInputError as exc:
        notices.append(f"{exc}; its Item has no references asset")
        return False
    return True


def _collection(catalog: str, items: list[Any], pystac: Any) -> Any:
    boxes = [i.bbox for i in items if i.bbox]
    if boxes:
        crossing = any(b[0] > b[2] for b in boxes)
        spatial = [[-180.0, min(b[1] for b in boxes), 180.0, max(b[3] for b in boxes)]] if crossing else \
            [[min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]]
    else:
        spatial = [[-180.0, -90.0, 180.0, 90.0]]
    times = [t for i in items for t in (i.common_metadata.start_datetime, i.common_metadata.end_datetime, i.datetime) if t]
    temporal = [[min(times), max(times)]] if times else [[None, None]]
    collection = pystac.Collection(
        id="metaextract-" + entry_name(os.fsencode(os.path.abspath(catalog)), False)[:12],
        description=f"Files of the metaextract catalog {os.path.abspath(catalog)}, one Item each",
        extent=pystac.Extent(pystac.SpatialExtent(spatial), pystac.TemporalExtent(temporal)),
        license="other", title=os.path.basename(os.path.normpath(catalog)))
    collection.add_items(items)
    from .virtual import VIRTUAL_SCHEMAS, stac_assets

    virtual = stac_assets(catalog)  # the Icechunk export beside the catalog, when there is one
    for key, fields in virtual:
        href, roles, title = fields.pop("href"), fields.pop("roles"), fields.pop("title")
        collection.add_asset(key, pystac.Asset(href=href, media_type=fields.pop("type", None), roles=roles, title=title, extra_fields=fields))
    if virtual:
        collection.stac_extensions.extend(s for s in VIRTUAL_SCHEMAS if s not in collection.stac_extensions)
    return collection
