"""CF conventions shared by the readers of CF data (netCDF files, Zarr stores): which arrays are the time, latitude and
longitude coordinates, their coverage, and that coverage as catalog columns."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from . import arrays

#: coordinate variables larger than this are not read whole for CF coverage
COORD_LIMIT = 10_000_000

#: the catalog columns of CF coverage (``time_columns`` and ``bounds_columns``), for a reader's ``columns``
COVERAGE_COLUMNS = (("time_start", "timestamp"), ("time_end", "timestamp"), ("calendar", "string"), ("time_start_iso", "string"),
                    ("time_end_iso", "string"), ("lat_min", "float64"), ("lat_max", "float64"),
                    ("lon_min", "float64"), ("lon_max", "float64"), ("crosses_antimeridian", "bool"))


def _cf_role(name: str, attrs: dict[str, Any]) -> str | None:
    std = str(attrs.get("standard_name", "")).lower()
    units = str(attrs.get("units", "")).lower()
    axis = str(attrs.get("axis", "")).upper()
    if std == "time" or axis == "T" or (" since " in units and name.lower() in ("time", "t")):
        return "time"
    if std == "latitude" or units in ("degrees_north", "degree_north", "degrees_n") or name.lower() in ("lat", "latitude"):
        return "latitude"
    if std == "longitude" or units in ("degrees_east", "degree_east", "degrees_e") or name.lower() in ("lon", "longitude"):
        return "longitude"
    return None


def coverage(header: dict[str, Any], read: Callable[[str], Any]) -> dict[str, Any]:
    """Time range decoded from its units (calendar-aware), latitude and longitude bounds.

    ``header["variables"]`` maps each array's path to its ``attrs`` and
    ``shape``; ``read(path)`` gives a coordinate's values as users read them
    (a masked array where values are missing). A coordinate that cannot be
    read or decoded becomes a warning on its variable (the time range then
    keeps its raw numbers); the file goes on.
    """
    import numpy as np

    from .cftime_range import decode_range

    coverage: dict[str, Any] = {}
    for path, entry in header["variables"].items():
        role = _cf_role(path.rsplit("/", 1)[-1], entry["attrs"])
        if role is None or role in coverage or not entry["shape"] or np.prod(entry["shape"]) > COORD_LIMIT:
            continue
        try:
            values = read(path)
            values = values.compressed() if np.ma.isMaskedArray(values) else np.asarray(values).ravel()
            if values.size == 0 or not arrays.is_numeric(values.dtype):
                continue
            lo, hi = arrays.to_jsonable(values.min()), arrays.to_jsonable(values.max())
        except Exception as exc:  # noqa: BLE001 - confined to this coordinate
            warn(header, path, entry, f"{role} coverage: values not read: {exc} [{type(exc).__name__}]")
            continue
        if role == "time":
            units = entry["attrs"].get("units")
            if not units or " since " not in str(units):
                continue
            found, warning = decode_range(lo, hi, str(units), entry["attrs"].get("calendar"))
            coverage["time"] = {"variable": path, **found}
            if warning:
                warn(header, path, entry, f"time coverage: {warning}")
        else:
            coverage[role] = {"variable": path, "min": lo, "max": hi}
    return coverage


def normal_longitude(x: float) -> float:
    """A longitude in -180..180 (180 stays 180)."""
    return x if -180.0 <= x <= 180.0 else ((x + 180.0) % 360.0) - 180.0


def bounds_columns(coverage: dict[str, Any]) -> dict[str, Any]:
    """lat_min/lat_max, and lon_min/lon_max normalised to -180..180; a box whose normalised west edge is east of
    its east edge crosses the antimeridian (``crosses_antimeridian``); a grid spanning 360 degrees is global."""
    lat, lon = coverage.get("latitude") or {}, coverage.get("longitude") or {}
    number = lambda v: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None  # noqa: E731
    out: dict[str, Any] = {"lat_min": number(lat.get("min")), "lat_max": number(lat.get("max"))}
    lo, hi = number(lon.get("min")), number(lon.get("max"))
    if lo is None or hi is None:
        return {**out, "lon_min": None, "lon_max": None, "crosses_antimeridian": None}
    if hi - lo >= 359.0:  # a global grid (0..359, -180..179.5): every longitude
        return {**out, "lon_min": -180.0, "lon_max": 180.0, "crosses_antimeridian": False}
    west, east = normal_longitude(lo), normal_longitude(hi)
    return {**out, "lon_min": west, "lon_max": east, "crosses_antimeridian": west > east}


def time_columns(time_range: dict[str, Any]) -> dict[str, Any]:
    """time_start/time_end as timestamps, the calendar, and the dates as ISO text in that calendar."""
    from .cftime_range import timestamp

    start, end = time_range.get("start"), time_range.get("end")
    return {"time_start": timestamp(start), "time_end": timestamp(end), "calendar": time_range.get("calendar") if start else None,
            "time_start_iso": start, "time_end_iso": end}


def warn(header: dict[str, Any], path: str, entry: dict[str, Any], message: str) -> None:
    """A warning on one variable, repeated in the record's list."""
    entry.setdefault("warnings", []).append(message)
    header.setdefault("warnings", []).append(f"{path}: {message}")


def attach_stats(header: dict[str, Any], entries: dict[str, dict[str, Any]], stats: dict[str, Any]) -> None:
    """Each array's merged statistics on its entry (``arrays.final_stats``), or, where reading them failed, a warning on
    it (``warn``)."""
    for path, entry in entries.items():
        found = stats.get(path)
        if found is not None and "error" in found:
            warn(header, path, entry, f"statistics: {found['error']}")
        elif found is not None:
            entry["stats"] = arrays.final_stats(found, found.get("cells_total", 0))
