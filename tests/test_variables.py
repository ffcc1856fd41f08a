"""The variables table: one row per array of a file, beside the files table, kept in step with it."""

from __future__ import annotations

import os

import h5py
import netCDF4
import numpy as np
import pytest

from metaextract_dask import read_variables, scan
from metaextract_dask.demo import make_bin


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
