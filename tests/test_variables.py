"""The variables table: one row per array of a file, beside the files table, kept in step with it."""

from __future__ import annotations

import os

import h5py
import netCDF4
import numpy as np
import pandas as pd
import pytest

from metaextract_dask import read_variables, scan
from metaextract_dask.demo import make_bin

pytestmark = pytest.mark.integration


def archive(root):
    data = root / "data"
    data.mkdir()
    with h5py.File(data / "a.h5", "w") as f:
        f.create_dataset("packed", data=np.arange(5000.0), compression="gzip", shuffle=True, chunks=(500,))
        f.create_dataset("plain", data=np.arange(10, dtype="i4"))
        f.create_group("grp").create_dataset("fast", data=np.ones((20, 20)), compression="lzf")
    with h5py.File(data / "b.h5", "w") as f:
        f.create_dataset("also_packed", data=np.zeros(100), compression="gzip")
    with netCDF4.Dataset(data / "ocean.nc", "w") as ds:
        ds.createDimension("time", 4)
        ds.createDimension("x", 8)
        t = ds.createVariable("time", "f8", ("time",))
        t.units = "days since 1990-01-01"
        t[:] = np.arange(4)
        sst = ds.createVariable("sst", "f4", ("time", "x"), zlib=True, fill_value=-1.0)  # shuffle too: netCDF4's default
        sst.units, sst.standard_name, sst.long_name = "K", "sea_surface_temperature", "SST"
        sst[:] = np.full((4, 8), 290.0, dtype="f4")
    with netCDF4.Dataset(data / "land.nc", "w", format="NETCDF3_CLASSIC") as ds:
        ds.createDimension("x", 3)
        ds.createVariable("tas", "f4", ("x",))[:] = [1.0, 2.0, 3.0]
    make_bin(data / "c.bin", 2000, 1)
    (data / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 600)
    return data


def gzip_datasets(folder) -> set[tuple[str, str]]:
    """The ground truth, from h5py itself: (file, dataset) compressed with gzip."""
    out = set()
    for name in ("a.h5", "b.h5"):
        with h5py.File(folder / name, "r") as f:
            f.visititems(lambda n, o: out.add((name, "/" + n)) if isinstance(o, h5py.Dataset) and o.compression == "gzip" else None)
    return out


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_the_variables_table_answers_questions_in_one_expression(tmp_path, fmt):
    data, catalog = archive(tmp_path), tmp_path / "cat"
    files = scan(str(data), str(catalog), format=fmt, progress=False)
    v = read_variables(str(catalog))
    base = v["path"].map(os.path.basename)
    # every HDF5 dataset compressed with gzip
    gz = v[(v["reader"] == "hdf5") & v["filters"].map(lambda f: "gzip" in list(f))]
    assert set(zip(gz["path"].map(os.path.basename), gz["name"])) == gzip_datasets(data)
    # every file with variable sst: from the variables table, and from the files table's own list column
    assert sorted(v.loc[v["name"] == "sst", "path"].map(os.path.basename)) == ["ocean.nc"]
    assert sorted(files.loc[files["variables"].map(lambda names: names is not None and "sst" in list(names)), "path"]
                  .map(os.path.basename)) == ["ocean.nc"]
    by_name = files.set_index(files["path"].map(os.path.basename))
    assert list(by_name.loc["ocean.nc", "standard_names"]) == ["sea_surface_temperature"]
    assert list(by_name.loc["a.h5", "compression"]) == ["gzip", "lzf", "shuffle"] and list(by_name.loc["land.nc", "compression"]) == []
    sst = v[v["name"] == "sst"].iloc[0]
    assert (list(sst["dims"]), list(sst["shape"]), sst["units"], sst["standard_name"]) == (["time", "x"], [4, 8], "K",
                                                                                         "sea_surface_temperature")
    assert list(sst["filters"]) == ["gzip", "shuffle"] and sst["min"] == sst["max"] == 290.0 and sst["count"] == 32 and sst["exact"]
    # one row per array, joinable on the files table
    per_file = v.groupby(base).size().to_dict()
    assert per_file == {"a.h5": 3, "b.h5": 1, "ocean.nc": 2, "land.nc": 1}  # nothing for the binary or the failed file
    joined = files.merge(v, on="path", suffixes=("", "_var"))
    assert set(joined["path"].map(os.path.basename)) == {"a.h5", "b.h5", "ocean.nc", "land.nc"}
    for name, group in joined.groupby(joined["path"].map(os.path.basename)):
        wanted = group["n_datasets"].iloc[0] if name.endswith(".h5") else group["n_variables"].iloc[0]
        assert len(group) == wanted


def test_variables_follow_their_files_through_rescans_and_deletions(tmp_path):
    data, catalog = archive(tmp_path), tmp_path / "cat"
    scan(str(data), str(catalog), progress=False)
    before = read_variables(str(catalog))
    st = os.stat(data / "a.h5")
    os.utime(data / "a.h5", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # changed: re-extracted, its old rows dropped
    os.unlink(data / "land.nc")  # deleted: its rows dropped
    scan(str(data), str(catalog), progress=False)
    after = read_variables(str(catalog))
    count = lambda frame: frame.groupby(frame["path"].map(os.path.basename)).size().to_dict()  # noqa: E731
    assert count(after) == {"a.h5": 3, "b.h5": 1, "ocean.nc": 2}
    assert len(before) == 7 and len(after) == 6
    assert not after.duplicated(["path", "name"]).any()


def test_the_schema_page_lists_every_column_with_its_type(tmp_path):
    """docs/catalog-schema.md stays true: every column written, with its type, and the manifest's schema version."""
    import json
    import re

    from metaextract_dask.catalog import VARIABLE_COLUMNS, catalog_columns
    from metaextract_dask.catalog.schema import SCHEMA_VERSION

    page = open(os.path.join(os.path.dirname(__file__), "..", "docs", "catalog-schema.md")).read()
    files, variables = page.split("## Variables table")
    for text, columns in ((files, catalog_columns()), (variables, VARIABLE_COLUMNS)):
        listed = dict(re.findall(r"^\| `(\w+)` \| ([\w<>]+) \|", text, flags=re.M))
        assert listed == dict(columns)
    assert f"Schema version **{SCHEMA_VERSION}**" in page
    data = tmp_path / "d"
    data.mkdir()
    make_bin(data / "x.bin", 10, 1)
    scan(str(data), str(tmp_path / "cat"), progress=False)
    assert json.loads((tmp_path / "cat" / "_manifest.json").read_text())["schema_version"] == SCHEMA_VERSION


def coverage_file(path, years, lats, lons):
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", len(years))
        ds.createDimension("lat", len(lats))
        ds.createDimension("lon", len(lons))
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 1900-01-01", "standard"
        t[:] = [(y - 1900) * 365.25 for y in years]
        la = ds.createVariable("lat", "f4", ("lat",))
        la.units = "degrees_north"
        la[:] = lats
        lo = ds.createVariable("lon", "f4", ("lon",))
        lo.units = "degrees_east"
        lo[:] = lons
        ds.createVariable("tas", "f4", ("time", "lat", "lon"))[:] = np.zeros((len(years), len(lats), len(lons)))


def test_which_netcdf_files_cover_1990_to_2000_between_30_and_60_north(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    coverage_file(data / "match.nc", [1985, 1995], [20.0, 40.0], [0.0, 90.0, 180.0, 270.0, 359.0])  # global in 0..360
    coverage_file(data / "too_late.nc", [2005, 2010], [35.0, 50.0], [-10.0, 10.0])
    coverage_file(data / "too_south.nc", [1990, 2000], [-60.0, -30.0], [-10.0, 10.0])
    coverage_file(data / "pacific.nc", [1999, 2001], [45.0, 70.0], [170.0, 190.0])  # across the antimeridian
    f = scan(str(data), str(tmp_path / "cat"), progress=False)
    hits = f[(f.time_start <= "2000-12-31") & (f.time_end >= "1990-01-01") & (f.lat_min <= 60) & (f.lat_max >= 30)]
    assert sorted(hits["path"].map(os.path.basename)) == ["match.nc", "pacific.nc"]
    by = f.set_index(f["path"].map(os.path.basename))
    assert (by.loc["match.nc", "lon_min"], by.loc["match.nc", "lon_max"], by.loc["match.nc", "crosses_antimeridian"]) == (-180, 180, False)
    assert (by.loc["pacific.nc", "lon_min"], by.loc["pacific.nc", "lon_max"]) == (170, -170) and by.loc["pacific.nc", "crosses_antimeridian"]
    assert (by.loc["too_late.nc", "lon_min"], by.loc["too_late.nc", "lon_max"], by.loc["too_late.nc", "crosses_antimeridian"]) == (-10, 10, False)


def model_calendar_file(path, calendar, days):
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", len(days))
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2000-01-01", calendar
        t[:] = days
        ds.createVariable("tas", "f4", ("time",))[:] = np.zeros(len(days))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_time_columns_are_timestamps_with_their_calendar(tmp_path, fmt):
    """A date with a Gregorian twin is a timestamp; 2000-02-30 of a 360-day year has none and keeps its ISO text."""
    from metaextract_dask import read_catalog

    data = tmp_path / "data"
    data.mkdir()
    model_calendar_file(data / "model.nc", "360_day", [0.0, 59.0])
    model_calendar_file(data / "real.nc", "standard", [0.0, 59.0])
    scan(str(data), str(tmp_path / "cat"), format=fmt, progress=False)
    f = read_catalog(str(tmp_path / "cat")).set_index("path")
    f.index = f.index.map(os.path.basename)
    assert str(f.time_start.dtype).startswith("datetime64")
    model, real = f.loc["model.nc"], f.loc["real.nc"]
    assert (model.calendar, model.time_start_iso, model.time_end_iso) == ("360_day", "2000-01-01T00:00:00", "2000-02-30T00:00:00")
    assert model.time_start == np.datetime64("2000-01-01") and pd.isna(model.time_end)
    assert (real.calendar, real.time_start, real.time_end) == ("standard", np.datetime64("2000-01-01"), np.datetime64("2000-02-29"))
    if fmt == "jsonl":  # a JSON object per row, its timestamps as ISO text
        import json

        row = json.loads(next((tmp_path / "cat").glob("part-*.jsonl")).read_text().splitlines()[0])
        assert isinstance(row["metadata"], dict) and row["time_start"] in ("2000-01-01T00:00:00",)


def test_parts_of_an_older_schema_are_migrated_on_open_and_read_as_todays(tmp_path):
    """A schema-3 part (time_start as text, no calendar column) reads with today's types, and a re-scan rewrites it."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from metaextract_dask import read_catalog
    from metaextract_dask.catalog.schema import SCHEMA_VERSION

    data, catalog = tmp_path / "data", tmp_path / "cat"
    data.mkdir()
    model_calendar_file(data / "real.nc", "standard", [0.0, 59.0])
    scan(str(data), str(catalog), progress=False)
    part = next(catalog.glob("part-*.parquet"))
    t = pq.read_table(part).drop_columns(["calendar", "time_start_iso", "time_end_iso"])
    as_text = [pa.array([str(x.as_py().isoformat()) if x.as_py() else None for x in t[c]], pa.string()) for c in ("time_start", "time_end")]
    t = t.set_column(t.schema.get_field_index("time_start"), "time_start", as_text[0])
    t = t.set_column(t.schema.get_field_index("time_end"), "time_end", as_text[1])
    pq.write_table(t, part)  # what version 3 wrote
    old = read_catalog(str(catalog))
    assert str(old.time_start.dtype).startswith("datetime64") and old.calendar.tolist() == ["standard"]
    model_calendar_file(data / "more.nc", "noleap", [0.0, 1.0])
    scan(str(data), str(catalog), progress=False)  # opens the catalog: the old part is rewritten
    assert all(pq.read_schema(p).field("time_start").type == pa.timestamp("us") for p in catalog.glob("part-*.parquet"))
    both = pd.read_parquet(catalog)  # one schema: pandas reads the folder directly
    assert sorted(both.calendar) == ["noleap", "standard"] and both.time_end.notna().all()
    assert json.loads((catalog / "_manifest.json").read_text())["schema_version"] == SCHEMA_VERSION
