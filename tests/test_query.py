"""query_catalog: files by variable, time range and bounding box, from the catalog alone, each file by its newest row."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.integration


def _cf_file(path, variable: str, standard_name: str, days: tuple[int, int], lat: tuple[float, float], lon: tuple[float, float]):
    """A small CF netCDF file: ``variable`` on (time, lat, lon) over ``days`` since 2000-01-01 and the given box."""
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", 3)
        ds.createDimension("lat", 4)
        ds.createDimension("lon", 5)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar, t.standard_name = "days since 2000-01-01", "standard", "time"
        t[:] = np.linspace(*days, 3)
        y = ds.createVariable("lat", "f4", ("lat",))
        y.units, y.standard_name = "degrees_north", "latitude"
        y[:] = np.linspace(*lat, 4)
        x = ds.createVariable("lon", "f4", ("lon",))
        x.units, x.standard_name = "degrees_east", "longitude"
        x[:] = np.linspace(*lon, 5)
        v = ds.createVariable(variable, "f4", ("time", "lat", "lon"))
        v.standard_name, v.units = standard_name, "1"
        v[:] = np.ones((3, 4, 5), dtype="f4")
    return str(path)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from metaextract_dask import scan

    data = tmp_path_factory.mktemp("cf")
    (data / "2020").mkdir()
    (data / "2021").mkdir()
    _cf_file(data / "2020" / "tas.nc", "tas", "air_temperature", (7305, 7335), (40, 60), (-10, 20))     # Europe, Jan 2020
    _cf_file(data / "2021" / "tas.nc", "tas", "air_temperature", (7671, 7701), (-40, -10), (110, 150))  # Australia, Jan 2021
    _cf_file(data / "2020" / "pr.nc", "pr", "precipitation_flux", (7305, 7335), (40, 60), (-10, 20))    # Europe, Jan 2020
    _cf_file(data / "2020" / "sst.nc", "sst", "sea_surface_temperature", (7305, 7335), (-10, 10), (170, 190))  # across 180
    cat = tmp_path_factory.mktemp("q") / "cat"
    scan(str(data), str(cat), progress=False, as_frame=False)
    return data, cat


def _names(frame, data) -> set[str]:
    return {os.path.relpath(p, data) for p in frame["path"]}


def test_a_query_by_variable_time_and_box_answers_from_the_catalog(catalog):
    from metaextract_dask import query_catalog

    data, cat = catalog
    assert _names(query_catalog(cat, variable="tas"), data) == {"2020/tas.nc", "2021/tas.nc"}
    assert _names(query_catalog(cat, variable="air_temperature"), data) == {"2020/tas.nc", "2021/tas.nc"}  # a standard_name
    europe = (-5, 45, 5, 55)
    assert _names(query_catalog(cat, variable="tas", bbox=europe), data) == {"2020/tas.nc"}
    assert _names(query_catalog(cat, bbox=europe, time=("2020-01-10", "2020-01-12")), data) == {"2020/tas.nc", "2020/pr.nc"}
    assert _names(query_catalog(cat, time=("2021-01-01", None)), data) == {"2021/tas.nc"}
    assert _names(query_catalog(cat, bbox=(175, -5, 179, 5)), data) == {"2020/sst.nc"}  # a file whose box crosses 180
    assert _names(query_catalog(cat, bbox=(-179, -5, -175, 5)), data) == {"2020/sst.nc"}
    assert _names(query_catalog(cat, bbox=(140, -50, -170, 50)), data) == {"2020/sst.nc", "2021/tas.nc"}  # the query crosses
    frame = query_catalog(cat, variable="pr", columns=["path", "time_start"])
    assert list(frame.columns) == ["path", "time_start"] and len(frame) == 1


def test_a_file_whose_newest_row_no_longer_matches_is_no_answer(catalog, tmp_path, monkeypatch):
    """A re-extracted file's old row may stay on disk until compaction (a large catalog defers it): the query answers
    with each file's newest row only."""
    import shutil

    from metaextract_dask import query_catalog, scan
    from metaextract_dask.catalog import writer

    data, cat = catalog
    here = tmp_path / "data"
    shutil.copytree(data, here)
    own = tmp_path / "cat"
    scan(str(here), str(own), progress=False, as_frame=False)
    _cf_file(here / "2020" / "pr.nc", "pr", "precipitation_flux", (8036, 8066), (40, 60), (-10, 20))  # now 2022
    os.utime(here / "2020" / "pr.nc", (1, 1))
    monkeypatch.setattr(writer, "COMPACT_ALWAYS_BELOW", 0)  # the policy of a large catalog with few superseded rows:
    monkeypatch.setattr(writer, "COMPACT_SHARE", 1.0)       # the old row stays on disk
    scan(str(here), str(own), progress=False, as_frame=False)
    import pyarrow.parquet as pq

    assert sum(os.path.basename(p) == "pr.nc" for p in pq.read_table(own, columns=["path"]).column("path").to_pylist()) == 2
    assert _names(query_catalog(own, variable="pr", time=("2020-01-01", "2020-02-01")), here) == set()
    assert _names(query_catalog(own, variable="pr", time=("2022-01-01", "2022-02-01")), here) == {"2020/pr.nc"}
    # the exports' reader (no pandas) chooses the same rows as read_catalog
    from metaextract_dask import read_catalog
    from metaextract_dask.catalog.read import catalog_rows

    rows, frame = catalog_rows(str(own)), read_catalog(str(own))
    assert len(rows) == len(frame) and sorted((r["path"], r["extracted_at"]) for r in rows) == \
        sorted(zip(frame["path"], frame["extracted_at"]))


def test_a_catalog_written_before_a_reader_was_added_is_still_queried_in_two_passes(catalog, tmp_path, monkeypatch):
    """Before: a part lacking a newer reader's columns (Zarr's, GeoTIFF's) sent the query to read the whole catalog
    (3 million rows: 10 s and 6.8 GB instead of 1.5 s and 0.3 GB, benchmarks/RESULTS-scale.md). Now such a part is
    read in the same two passes, the missing columns null."""
    import glob
    import shutil

    import pyarrow.parquet as pq

    from metaextract_dask import query_catalog
    from metaextract_dask.catalog import read

    data, cat = catalog
    old = tmp_path / "old"
    shutil.copytree(cat, old)
    for part in glob.glob(str(old / "part-*.parquet")):
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["zarr_format", "consolidated", "n_arrays", "raster_width"]), part)
    expected = query_catalog(cat, variable="tas", bbox=(-5, 45, 5, 55), columns=["path", "time_start", "zarr_format"])

    def whole(*args, **kwargs):
        raise AssertionError("the whole catalog was read")

    monkeypatch.setattr(read, "read_catalog", whole)
    got = query_catalog(old, variable="tas", bbox=(-5, 45, 5, 55), columns=["path", "time_start", "zarr_format"])
    assert _names(got, data) == {"2020/tas.nc"} and list(got.columns) == ["path", "time_start", "zarr_format"]
    assert got["time_start"].tolist() == expected["time_start"].tolist() and got["zarr_format"].isna().all()
