"""Degrade, don't fail: a problem confined to one object is a warning on that object.

Exotic HDF5 datatypes (128-bit integers, quad precision, H5T_TIME, undefined
fill values), every CF calendar, year-zero references, "months since" and
undecodable units: the file's record succeeds, with the raw facts and a
warning where something could not be decoded.
"""

from __future__ import annotations

import os

import numpy as np
import public_corpus
import pytest

from metaextract_dask import extract_metadata

pytestmark = pytest.mark.unit

h5py = pytest.importorskip("h5py")
netCDF4 = pytest.importorskip("netCDF4")


def exotic_h5(path: str) -> str:
    """A file with datatypes h5py cannot map to NumPy, next to an ordinary dataset."""
    from h5py import h5a, h5d, h5s, h5t

    with h5py.File(path, "w") as f:
        i128 = h5t.STD_I64LE.copy()
        i128.set_size(16)
        quad = h5t.IEEE_F64LE.copy()
        quad.set_size(16)
        quad.set_precision(128)
        quad.set_fields(127, 112, 15, 0, 112)
        quad.set_ebias(16383)
        space = h5s.create_simple((4,))
        for name, tid in ((b"int128", i128), (b"quad", quad), (b"time", h5t.UNIX_D32LE.copy()), (b"time_be", h5t.UNIX_D64BE.copy())):
            h5d.create(f.id, name, tid, space)
        h5a.create(f.id, b"int128_attr", i128, h5s.create(h5s.SCALAR))
        f.attrs["plain"] = 7
        f.create_dataset("normal", data=np.arange(10.0))
        f["normal"].attrs["units"] = "K"
        h5a.create(f["normal"].id, b"quad_attr", quad, h5s.create(h5s.SCALAR))
    return path


def test_exotic_hdf5_datatypes_are_described_not_fatal(tmp_path):
    record = extract_metadata(exotic_h5(str(tmp_path / "exotic.h5")))["hdf5"]
    ds = {d["name"]: d for d in record["datasets"]}
    assert ds["/int128"]["datatype"] == {"class": "integer", "size": 16, "order": "little-endian", "signed": True,
                                         "text": "128-bit little-endian integer"}
    assert ds["/int128"]["dtype"] == "128-bit little-endian integer"
    assert ds["/quad"]["datatype"]["class"] == "float" and ds["/quad"]["datatype"]["size"] == 16
    assert ds["/quad"]["datatype"]["text"] == "128-bit little-endian floating-point"
    assert ds["/time"]["datatype"] == {"class": "time", "size": 4, "text": "4-byte time (H5T_TIME)"}
    assert ds["/time_be"]["datatype"]["size"] == 8
    for name in ("/int128", "/quad", "/time"):
        assert "no NumPy equivalent" in ds[name]["stats_note"] and "stats" not in ds[name]
        assert ds[name]["shape"] == [4]
    # the ordinary dataset next to them is read whole
    assert ds["/normal"]["stats"]["max"] == 9.0 and ds["/normal"]["stats"]["exact"]
    # unreadable attributes keep their names, their datatype and a warning on their object
    assert record["attrs"] == {"int128_attr": None, "plain": 7}
    assert ds["/normal"]["attrs"] == {"units": "K", "quad_attr": None}
    assert ds["/normal"]["attr_datatypes"]["quad_attr"]["text"] == "128-bit little-endian floating-point"
    assert any("int128_attr" in w and "128-bit little-endian integer" in w for w in record["warnings"])
    assert any(w.startswith("/normal: attribute 'quad_attr'") for w in record["warnings"])


@pytest.fixture(scope="module")
def pytables_files():
    """Real files with these datatypes, written by PyTables and others (not by this project)."""
    folder = os.path.join(public_corpus.cache_dir(), "corpus-v1")
    wheels = public_corpus.fetch_wheels(os.path.join(public_corpus.cache_dir(), "wheels"))
    files = public_corpus.unpack_data(next(w for w in wheels if "tables-" in os.path.basename(w)), folder)
    return {os.path.basename(p).replace("tables__tests__", ""): p for p in files}


def test_real_quad_precision_and_long_double(pytables_files):
    record = extract_metadata(pytables_files["float.h5"])["hdf5"]
    ds = {d["name"]: d for d in record["datasets"]}
    assert ds["/quadprecision"]["datatype"]["text"] == "128-bit little-endian floating-point"
    assert "no NumPy equivalent" in ds["/quadprecision"]["stats_note"]
    assert ds["/longdouble"]["stats"]["max"] == 9.0  # x87 long double maps to NumPy: read, as a float
    assert ds["/float16"]["stats"]["max"] == 9.0


def test_real_time_datatype_and_128_bit_attribute(pytables_files):
    times = extract_metadata(pytables_files["times-nested-be.h5"])["hdf5"]
    ds = {d["name"]: d for d in times["datasets"]}
    assert ds["/earr32"]["datatype"]["class"] == "time" and ds["/earr64"]["datatype"]["size"] == 8
    attrs = extract_metadata(pytables_files["attr-u16.h5"])["hdf5"]
    assert any("ref_time" in w and "128-bit big-endian unsigned integer" in w for w in attrs["warnings"])


def test_real_undefined_fill_value(pytables_files):
    record = extract_metadata(pytables_files["ex-noattr.h5"])["hdf5"]
    tdc = next(d for d in record["datasets"] if d["name"] == "/columns/TDC")
    assert tdc["fillvalue"] is None and tdc["fillvalue_defined"] == "undefined"
    assert tdc["stats"]["max"] == 9 and tdc["stats"]["count"] == 10


def nc_time(path: str, units: str, calendar: str | None, values: list[float]) -> str:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", len(values))
        t = ds.createVariable("time", "f8", ("time",))
        t.units = units
        t.standard_name = "time"
        if calendar is not None:
            t.calendar = calendar
        t[:] = values
        ds.createVariable("sst", "f4", ("time",))[:] = np.arange(len(values), dtype="f4")
    return path


# (units, calendar, values, start, end): the ends follow from each calendar's month and year lengths
CALENDARS = [
    ("days since 2000-01-01", "standard", [0, 366], "2000-01-01T00:00:00", "2001-01-01T00:00:00"),
    ("days since 2000-01-01", "gregorian", [0, 31], "2000-01-01T00:00:00", "2000-02-01T00:00:00"),
    ("days since 1500-01-01", "proleptic_gregorian", [0, 365], "1500-01-01T00:00:00", "1501-01-01T00:00:00"),
    ("days since 1500-01-01", "julian", [0, 366], "1500-01-01T00:00:00", "1501-01-01T00:00:00"),
    ("days since 2000-01-01", "noleap", [0, 365], "2000-01-01T00:00:00", "2001-01-01T00:00:00"),
    ("days since 2001-01-01", "365_day", [0, 59], "2001-01-01T00:00:00", "2001-03-01T00:00:00"),
    ("days since 2001-01-01", "all_leap", [0, 366], "2001-01-01T00:00:00", "2002-01-01T00:00:00"),
    ("days since 2001-01-01", "366_day", [0, 60], "2001-01-01T00:00:00", "2001-03-01T00:00:00"),
    ("days since 2000-01-01", "360_day", [0, 359], "2000-01-01T00:00:00", "2000-12-30T00:00:00"),
    ("hours since 0000-01-01 00:00:00", "standard", [0, 744], "0000-01-01T00:00:00", "0000-02-01T00:00:00"),
    ("hours since 0000-01-01", None, [24, 8784], "0000-01-02T00:00:00", "0001-01-01T00:00:00"),
    ("days since 0000-01-01", "noleap", [0, 365], "0000-01-01T00:00:00", "0001-01-01T00:00:00"),
    ("months since 1990-01-01", "standard", [0, 11], "1990-01-01T00:00:00", "1990-12-01T00:00:00"),
    ("years since 1990-01-01", "standard", [0, 5], "1990-01-01T00:00:00", "1995-01-01T00:00:00"),
    ("months since 0000-01-01", "360_day", [0.5, 11.5], "0000-01-16T00:00:00", "0000-12-16T00:00:00"),
    ("seconds since 1970-01-01T00:00:00Z", "standard", [0, 86400], "1970-01-01T00:00:00", "1970-01-02T00:00:00"),
    ("days since 2000-01-01", "proleptic_gregorian", [0, 1e6], "2000-01-01T00:00:00", "4737-11-28T00:00:00"),
]


@pytest.mark.parametrize("units,calendar,values,start,end", CALENDARS, ids=[f"{c}:{u}" for u, c, *_ in CALENDARS])
def test_every_calendar_and_reference(tmp_path, units, calendar, values, start, end):
    record = extract_metadata(nc_time(str(tmp_path / "t.nc"), units, calendar, values))["netcdf"]
    cov = record["cf_coverage"]["time"]
    assert (cov["start"], cov["end"]) == (start, end)
    assert cov["calendar"] == (calendar or "standard")
    assert cov["raw_min"] == values[0] and cov["raw_max"] == values[-1]
    assert record["warnings"] == []
    assert record["variables"]["sst"]["stats"]["max"] == len(values) - 1


@pytest.mark.parametrize("units,calendar,why", [
    ("furlongs since the flood", "standard", "could not be decoded"),
    ("days since 2000-01-01", "martian", "unknown calendar"),
    ("seconds since 1970-01-01", "standard", "could not be decoded"),
])
def test_undecodable_time_keeps_raw_values_with_a_warning(tmp_path, units, calendar, why):
    record = extract_metadata(nc_time(str(tmp_path / "t.nc"), units, calendar, [0.0, 1e19]))["netcdf"]
    cov = record["cf_coverage"]["time"]
    assert "start" not in cov and cov["raw_max"] == 1e19 and cov["units"] == units
    assert any(w.startswith("time: time coverage:") and why in w for w in record["warnings"])
    assert any(why in w for w in record["variables"]["time"]["warnings"])
    assert record["variables"]["sst"]["stats"]["count"] == 2  # the rest of the file is there


def test_calendar_none_counts_no_dates(tmp_path):
    record = extract_metadata(nc_time(str(tmp_path / "t.nc"), "days since 2000-01-01", "none", [0, 3]))["netcdf"]
    cov = record["cf_coverage"]["time"]
    assert "start" not in cov and "no dates" in cov["note"] and record["warnings"] == []


SETTINGS_BLOCKS = """
import dask
from metaextract_dask import StreamingConfig
seen = []
for prober in ("ffprobe", "pyav"):  # each block, in a process whose defaults were not read before the first
    with dask.config.set({"metaextract.video.prober": prober}):
        seen.append((StreamingConfig().chunk_size, StreamingConfig().timeout))
seen.append((StreamingConfig().chunk_size, StreamingConfig().timeout))
print(seen)
"""


def test_settings_keep_their_defaults_through_successive_config_blocks():
    """A notebook's ``with dask.config.set({"metaextract.video.prober": ...})``, twice, in a process that had not read the
    project's settings before: every setting keeps its default in and after each block. Before, the second block made
    a ``metaextract`` section of its one key, the defaults were not put back, and ``StreamingConfig()`` failed with a
    TypeError (the chunk size None)."""
    import ast
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SETTINGS_BLOCKS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-800:]
    defaults = subprocess.run([sys.executable, "-c", "from metaextract_dask import StreamingConfig as S; print((S().chunk_size, S().timeout))"],
                              capture_output=True, text=True, timeout=120, check=True).stdout
    assert ast.literal_eval(done.stdout) == [ast.literal_eval(defaults)] * 3
