"""The NetCDF reader agrees with ncdump -h, and its statistics with numpy."""

from __future__ import annotations

import re
import subprocess

import netCDF4
import numpy as np
import pytest

from metaextract_dask import StreamingConfig, extract_file

FORMATS = ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA", "NETCDF4"]
CDL = {"float32": "float", "float64": "double", "int32": "int", "int16": "short", "int8": "byte", "uint8": "ubyte",
       "int64": "int64", "uint16": "ushort", "|S1": "char"}


def make(path, fmt):
    rng = np.random.default_rng(11)
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        ds.title = "test run"
        ds.Conventions = "CF-1.8"
        ds.createDimension("time", None)
        ds.createDimension("lat", 36)
        ds.createDimension("lon", 72)
        ds.createDimension("nchar", 8)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar, t.standard_name = "hours since 2020-01-01 00:00:00", "standard", "time"
        t[:] = np.arange(0, 48 * 6, 6)
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat.units, lat.standard_name = "degrees_north", "latitude"
        lat[:] = np.linspace(-87.5, 87.5, 36)
        lon = ds.createVariable("lon", "f4", ("lon",))
        lon.units = "degrees_east"
        lon[:] = np.linspace(-177.5, 177.5, 72)
        kw = dict(zlib=True, complevel=4, chunksizes=(4, 36, 36)) if fmt == "NETCDF4" else {}
        tas = ds.createVariable("tas", "f4", ("time", "lat", "lon"), fill_value=np.float32(1e20), **kw)
        tas.units, tas.long_name = "K", "air temperature"
        values = rng.normal(285, 12, (48, 36, 72)).astype("f4")
        values[3, 4, 5:9] = 1e20  # fill
        tas[:] = values
        pr = ds.createVariable("pr", "i2", ("time", "lat", "lon"))
        pr.missing_value = np.int16(-1)
        pr.scale_factor, pr.add_offset = np.float32(0.5), np.float32(10.0)
        pr.set_auto_maskandscale(False)
        raw = rng.integers(0, 1000, (48, 36, 72)).astype("i2")
        raw[0, 0, :10] = -1
        pr[:] = raw
        ds.createVariable("station", "S1", ("nchar",))[:] = netCDF4.stringtochar(np.array(["ABCDEFGH"], "S8"))[0]
        if fmt == "NETCDF4":
            g = ds.createGroup("surface")
            g.createDimension("site", 5)
            v = g.createVariable("height", "f8", ("site",))
            v.units = "m"
            v[:] = [1.0, 2.5, np.nan, 4.0, 8.0]
    return str(path)


@pytest.fixture(scope="module", params=FORMATS)
def ncfile(request, tmp_path_factory):
    return make(tmp_path_factory.mktemp("nc") / f"{request.param}.nc", request.param), request.param


def ncdump(path):
    """Dimensions, variables (type, dims) and attribute names per variable, from ncdump -h."""
    text = subprocess.run(["ncdump", "-h", path], capture_output=True, text=True, check=True).stdout
    dims, unlimited, variables, attrs, group = {}, [], {}, {}, ""
    for line in text.splitlines():
        s = line.strip()
        if m := re.match(r"^group: (\w+) \{", s):
            group = m.group(1) + "/"
        elif m := re.match(r"^(\w+) = UNLIMITED ; // \((\d+) currently\)", s):
            dims[group + m.group(1)] = int(m.group(2))
            unlimited.append(group + m.group(1))
        elif m := re.match(r"^(\w+) = (\d+) ;$", s):
            dims[group + m.group(1)] = int(m.group(2))
        elif m := re.match(r"^(\w+) (\w+)\(?([\w, ]*)\)? ;$", s):
            variables[group + m.group(2)] = (m.group(1), [d.strip() for d in m.group(3).split(",") if d.strip()])
        elif m := re.match(r"^(\w+):(\w+) = (.*) ;$", s):
            attrs.setdefault(group + m.group(1), set()).add(m.group(2))
        elif m := re.match(r"^:(\w+) = ", s):
            attrs.setdefault(group or "/", set()).add(m.group(1))
    return dims, unlimited, variables, attrs, text


@pytest.mark.integration
def test_header_agrees_with_ncdump(ncfile):
    path, fmt = ncfile
    record = extract_file(path)[0]
    dims, unlimited, variables, attrs, text = ncdump(path)
    assert record["reader"] == "netcdf" and record["netcdf"]["file_format"] == fmt
    assert record["netcdf"]["dimensions"] == dims and record["netcdf"]["unlimited_dimensions"] == unlimited == ["time"]
    assert set(record["netcdf"]["variables"]) == set(variables)
    for name, (cdl_type, vdims) in variables.items():
        ours = record["netcdf"]["variables"][name]
        assert ours["dims"] == vdims
        assert CDL[ours["dtype"]] == cdl_type
        assert ours["shape"] == [dims.get(d, dims.get(name.rsplit("/", 1)[0] + "/" + d)) for d in vdims]
        assert set(ours["attrs"]) == attrs.get(name, set())
    assert set(record["netcdf"]["attrs"]) == attrs["/"] and record["netcdf"]["attrs"]["title"] == "test run"
    if fmt == "NETCDF4":
        assert record["netcdf"]["groups"] == ["surface"] and record["netcdf"]["variables"]["tas"]["chunks"] == [4, 36, 36]
        assert record["netcdf"]["variables"]["tas"]["compression"]["zlib"] is True


@pytest.mark.integration
def test_big_endian_variables_are_named_as_ncdump_names_them(tmp_path):
    """A netCDF-4 variable stored big-endian (as netcdf-c's nc_test4/ref_tst_interops4.nc holds them) is an ``int`` to
    ncdump: its record's dtype is ``int32`` (marked ``endianness: big``) and so is its row in the variables table, beside
    an HDF5 dataset stored big-endian, not ``>i4`` where the same values stored little-endian say ``int32``."""
    import h5py

    import metaextract_dask as me

    with netCDF4.Dataset(tmp_path / "big.nc", "w") as ds:
        ds.createDimension("x", 4)
        ds.createVariable("b", ">i4", ("x",), endian="big")[:] = [1, 2, 3, 4]
        ds.createVariable("d", ">f8", ("x",), endian="big")[:] = [0.5, 1.5, 2.5, 3.5]
        ds.createVariable("l", "i4", ("x",), endian="little")[:] = [5, 6, 7, 8]
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f["b"] = np.arange(4, dtype=">i4")
    _, _, variables, _, _ = ncdump(str(tmp_path / "big.nc"))
    record = extract_file(str(tmp_path / "big.nc"))[0]["netcdf"]["variables"]
    assert {name: CDL[v["dtype"]] for name, v in record.items()} == {name: t for name, (t, _) in variables.items()}
    assert {name: v.get("endianness") for name, v in record.items()} == {"b": "big", "d": "big", "l": None}
    assert record["b"]["stats"]["max"] == 4 and record["d"]["stats"]["mean"] == 2.0
    me.scan(str(tmp_path), str(tmp_path / "cat"), progress=False)
    table = me.read_variables(str(tmp_path / "cat"))
    assert dict(zip(table.name, table.dtype)) == {"b": "int32", "d": "float64", "l": "int32", "/b": "int32"}


@pytest.mark.unit
def test_cf_coverage(ncfile):
    path, _ = ncfile
    cov = extract_file(path)[0]["netcdf"]["cf_coverage"]
    assert cov["time"]["start"] == "2020-01-01T00:00:00" and cov["time"]["end"] == "2020-01-12T18:00:00"
    assert cov["latitude"] == {"variable": "lat", "min": -87.5, "max": 87.5}
    assert cov["longitude"]["min"] == -177.5 and cov["longitude"]["max"] == 177.5


@pytest.mark.unit
@pytest.mark.parametrize("strategy", ["sequential", "windowed"])
def test_statistics_equal_numpy_with_fill_and_missing_values(ncfile, strategy):
    path, fmt = ncfile
    record = extract_file(path, StreamingConfig(strategy=strategy, chunk_size=64 * 1024))[0]
    with netCDF4.Dataset(path) as ds:
        for name in ("tas", "pr", "time", "lat") + (("surface/height",) if fmt == "NETCDF4" else ()):
            var = ds[name] if "/" not in name else ds.groups["surface"]["height"]
            values = var[...]  # masked and unpacked, as users read it
            plain = values.compressed() if np.ma.isMaskedArray(values) else np.asarray(values).ravel()
            nan = np.isnan(plain) if plain.dtype.kind == "f" else np.zeros(plain.shape, bool)
            stats = record["netcdf"]["variables"][name]["stats"]
            assert stats["exact"] is True
            assert stats["min"] == pytest.approx(plain[~nan].min()) and stats["max"] == pytest.approx(plain[~nan].max())
            assert stats["mean"] == pytest.approx(plain[~nan].astype("f8").mean(), rel=1e-9)
            assert stats["nan_count"] == int(nan.sum())
            assert stats["fill_count"] == (int(np.ma.count_masked(values)) if np.ma.isMaskedArray(values) else 0)
    assert record["netcdf"]["variables"]["tas"]["stats"]["fill_count"] == 4
    assert record["netcdf"]["variables"]["pr"]["stats"]["fill_count"] == 10
    assert "stats" not in record["netcdf"]["variables"]["station"]


@pytest.mark.integration
def test_records_of_many_variables_are_read_in_one_pass(tmp_path):
    """A classic file whose records interleave 20 variables (station data's layout): its statistics come from one read
    of the whole file, where libnetcdf alone reads each variable record by record (about 40,000 reads of this file,
    counted by strace on the old code); the statistics are those of the test above (its classic files are read so)."""
    import shutil
    import sys

    if shutil.which("strace") is None:
        pytest.skip("strace is needed to count the reads")
    path = tmp_path / "stations.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("time", None)
        ds.createDimension("x", 10)
        for i in range(20):
            ds.createVariable(f"v{i}", "f4", ("time", "x"))[0:2000] = np.random.default_rng(i).random((2000, 10))
    trace = tmp_path / "trace"
    script = ("import metaextract_dask as me; from metaextract_dask.core.settings import StreamingConfig; "
              f"r = me.extract_metadata({str(path)!r}, StreamingConfig(checksum=None)); "
              "assert all(v['stats']['exact'] for v in r['netcdf']['variables'].values()), r")
    subprocess.run(["strace", "-f", "-qq", "-P", str(path), "-e", "trace=read,pread64,readv,preadv", "-o", str(trace),
                    sys.executable, "-c", script], check=True, timeout=300)
    reads = trace.read_text().splitlines()
    assert 0 < len(reads) < 200, f"{len(reads)} reads of a {path.stat().st_size}-byte file"


@pytest.mark.unit
def test_a_pinned_file_the_library_refuses_is_named_by_its_own_path(tmp_path):
    """Libraries open a pinned file as /proc/self/fd/N (``core.pin``): their errors must still name the file."""
    from metaextract_dask.core import pin
    from metaextract_dask.core.errors import CorruptFileError
    from metaextract_dask.readers import netcdf
    from metaextract_dask.readers.probe import probe

    path = tmp_path / "broken.nc"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 12)
    with pin.pinned(str(path), probe(str(path)).etag), pytest.raises(CorruptFileError) as err:
        netcdf.open_dataset(str(path))
    assert "/proc/self/fd" not in str(err.value) and str(err.value).count(str(path)) >= 1, str(err.value)
