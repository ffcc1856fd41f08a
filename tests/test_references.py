"""Kerchunk references made in the scan, ``open`` from a row to the data, and the intake-esm export.

The yardsticks are the peers' own: kerchunk's ``SingleHdf5ToZarr`` for the
references (on real files this project did not write), h5py and netCDF4 for
the values, intake-esm for the collection.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import h5py
import netCDF4
import numpy as np
import pytest

import metaextract_dask as me
from metaextract_dask.readers.h5refs import hdf5_references, open_references

sys.path.insert(0, os.path.dirname(__file__))
import public_corpus  # noqa: E402


@pytest.fixture(scope="module")
def real_hdf5_files():
    """The public corpus's HDF5 and netCDF-4 files, and netcdf-c's own netCDF-4 files (attributes of every type, an
    infinity among them, which failed a file's whole extraction with --references)."""
    folder = os.path.join(public_corpus.cache_dir(), "corpus-v1")
    found = public_corpus.build(folder)
    return [p for p in found["hdf5"] + found["netcdf"] + public_corpus.netcdf_c_files() if h5py.is_hdf5(p)]


def normalised(refs: dict) -> dict:
    """Metadata keys parsed (JSON text may differ in spacing and key order), chunk references as they are."""
    return {k: json.loads(v) if k.rsplit("/", 1)[-1].startswith(".") else v for k, v in refs.items()}


def kerchunk_refs(path: str) -> dict:
    from kerchunk.hdf import SingleHdf5ToZarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SingleHdf5ToZarr(path, inline_threshold=500).translate()["refs"]


@pytest.mark.integration
def test_references_equal_kerchunks_on_every_virtualizable_real_file(real_hdf5_files):
    same, refused = [], []
    for path in real_hdf5_files:
        with h5py.File(path, "r") as f:
            found = hdf5_references(f, path)
        if not found["virtualizable"]:
            assert found["reasons"] and found["refs"] is None
            refused.append(path)
            continue
        try:
            theirs = kerchunk_refs(path)
        except TypeError:  # kerchunk 0.2.10 cannot compare a compound attribute (netcdf-c's tst_compounds4): opened below
            continue
        assert normalised(found["refs"]["refs"]) == normalised(theirs), path
        same.append(path)
    assert len(same) >= 20, (len(same), len(refused))
    assert refused  # compound types, vlen strings, szip, blosc... are said, not guessed


@pytest.mark.integration
def test_classic_netcdf_files_open_through_their_references_as_xarray_reads_them():
    """netCDF classic files (NCAR's data in Debian's libncarg-data, netcdf-c's own classic, 64-bit offset and CDF-5
    files): references made from the header (``cdf_refs``), a chunk per fixed-size variable and per record of a
    record variable. Every file xarray reads opens through them with the same values and types; a file with character
    arrays says so. Before, every classic file had no references ("a netCDF-3 (classic) file")."""
    import glob

    import xarray as xr

    from metaextract_dask.readers.cdf_refs import classic_references

    files = sorted(glob.glob("/usr/share/ncarg/data/cdf/*.nc")) + public_corpus.netcdf_c_files()
    same, refused = [], []
    for path in files:
        try:
            with netCDF4.Dataset(path) as ds:
                if not ds.data_model.startswith("NETCDF3"):
                    continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = xr.open_dataset(path, decode_times=False).load()
        except (OSError, ValueError, KeyError, TypeError):  # what xarray cannot read, nor is compared here
            continue
        found = classic_references(path, path)
        if not found["virtualizable"]:
            assert any("fixed-length strings" in r for r in found["reasons"]), (path, found["reasons"])
            refused.append(path)
            continue
        with open_references(found["refs"], decode_times=False) as ours:
            xr.testing.assert_identical(ours.load(), theirs)
            assert {k: v.dtype for k, v in ours.variables.items()} == {k: v.dtype for k, v in theirs.variables.items()}, path
        same.append(path)
    assert len(same) >= 20 and refused, (len(same), len(refused))


@pytest.mark.integration
def test_a_file_of_many_dimensions_names_them_from_its_walk(tmp_path, monkeypatch):
    """netcdf-c's ref_hdf5_compat1.nc holds 2,000 variables on 1,001 dimensions: its references took 11 s, each
    dimension scale named by libhdf5's H5Iget_name, which searches the whole file for an object reached through a
    dimension list. The scales are named from the file's own walk now (1.5 s): the same references as kerchunk's, and
    no such search (counted on h5py's own call)."""
    path = str(tmp_path / "many.nc")
    with netCDF4.Dataset(path, "w") as ds:
        for i in range(300):
            ds.createDimension(f"d{i:03d}", 2)
            ds.createVariable(f"d{i:03d}", "f4", (f"d{i:03d}",))[:] = [i, i + 0.5]
            ds.createVariable(f"v{i:03d}", "i2", (f"d{i:03d}",))[:] = [i, -i]
    reached, searches = [], []  # scales reached through dimension lists; name searches of those
    get_name, iterate = h5py.h5i.get_name, h5py.h5ds.iterate
    monkeypatch.setattr(h5py.h5ds, "iterate", lambda dsid, n, f: iterate(dsid, n, lambda scale: reached.append(scale) or f(scale)))
    monkeypatch.setattr(h5py.h5i, "get_name", lambda obj: (any(obj is r for r in reached) and searches.append(obj)) or get_name(obj))
    with h5py.File(path, "r") as f:
        found = hdf5_references(f, path)
    assert len(reached) == 300 and not searches  # each v on its scale d
    monkeypatch.undo()
    assert found["virtualizable"] and normalised(found["refs"]["refs"]) == normalised(kerchunk_refs(path))
    assert json.loads(found["refs"]["refs"]["v123/.zattrs"])["_ARRAY_DIMENSIONS"] == ["d123"]


@pytest.mark.integration
def test_open_reads_the_arrays_of_a_file_that_also_holds_what_is_not_an_array(real_hdf5_files, tmp_path):
    """h5py's vlen_string_s390x.h5 holds four numeric datasets beside one of variable-length strings; PyTables'
    python3.h5 arrays beside tables. ``open`` refused the whole file for the one dataset references cannot carry; it
    reads the others now, with the values h5py reads, and warns naming what it left out and why. PyTables' float.h5
    (float128) is refused with a reason, where zarr failed on it."""
    wanted = {name: next(p for p in real_hdf5_files if p.endswith(os.sep + name) or p.endswith("__" + name))
              for name in ("vlen_string_s390x.h5", "tables__tests__python3.h5", "tables__tests__float.h5")}
    catalog = str(tmp_path / "cat")
    data = tmp_path / "data"
    data.mkdir()
    for name, path in wanted.items():
        shutil.copy(path, data / name)
    me.scan(str(data), catalog, progress=False)
    for name in ("vlen_string_s390x.h5", "tables__tests__python3.h5"):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            ds = me.open(catalog, str(data / name))
        left_out = [str(w.message) for w in said if "opened without" in str(w.message)]
        assert len(left_out) == 1 and ("/DSvariable: variable-length strings" in left_out[0] or "a compound type" in left_out[0])
        assert len(ds.data_vars) >= 3
        with h5py.File(data / name, "r") as f:
            for var in ds.data_vars:
                np.testing.assert_array_equal(ds[var].values, f[var][()])
    with h5py.File(data / "tables__tests__float.h5", "r") as f:
        found = hdf5_references(f, str(data / "tables__tests__float.h5"))
    assert any("extended-precision floats" in r for r in found["reasons"]), found["reasons"]


@pytest.mark.unit
def test_reasons_name_the_array_and_what_stands_in_the_way(tmp_path):
    path = str(tmp_path / "mixed.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("ok", data=np.arange(10.0))
        f.create_dataset("names", data=["a", "bb"], dtype=h5py.string_dtype())
        f.create_dataset("table", data=np.zeros(3, dtype=[("x", "i4"), ("y", "f8")]))
        f.create_dataset("fast", data=np.ones(100), compression="lzf")
        f["elsewhere"] = h5py.ExternalLink("/etc/passwd", "/x")
    with h5py.File(path, "r") as f:
        found = hdf5_references(f, path)
    assert not found["virtualizable"] and found["refs"] is None
    text = "\n".join(found["reasons"])
    for expected in ("/names: variable-length strings", "/table: a compound type", "/fast: the lzf filter has no Zarr codec",
                     "/elsewhere: an external link"):
        assert expected in text, text
    assert "/ok" not in text


@pytest.mark.integration
def test_every_virtualizable_real_file_opens_through_its_references_with_the_same_values(real_hdf5_files):
    import fsspec

    opened = 0
    for path in real_hdf5_files:
        with h5py.File(path, "r") as f:
            found = hdf5_references(f, path)
            if not found["virtualizable"]:
                continue
            ds = open_references(found["refs"], decode_cf=False, mask_and_scale=False, decode_times=False)
            fs = fsspec.filesystem("reference", fo=found["refs"], remote_protocol="file")
            arrays = [k[: -len("/.zarray")] for k in found["refs"]["refs"] if k.endswith("/.zarray")]
            for name in arrays:
                if "/" in name:  # an array of a sub-group: read it through zarr on the same references
                    import zarr

                    got = zarr.open_array(fs.get_mapper(name), mode="r", zarr_format=2)[...]
                else:
                    got = ds[name].values
                np.testing.assert_array_equal(got, f[name][()], err_msg=f"{path}:{name}")
            opened += 1
    assert opened >= 20


def catalog_of(tmp_path, references=True):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):  # one model run split in time, the way archives hold it
        with netCDF4.Dataset(data / f"run_{i}.nc", "w") as ds:
            ds.source, ds.experiment_id = "MODEL-X", "historical"
            ds.createDimension("time", None)
            ds.createDimension("lat", 3)
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.standard_name = "days since 2000-01-01", "noleap", "time"
            lat = ds.createVariable("lat", "f4", ("lat",))
            lat.units = "degrees_north"
            lat[:] = [10, 20, 30]
            for name in ("tas", "pr"):
                v = ds.createVariable(name, "f4", ("time", "lat"), zlib=True, fill_value=np.float32(1e20))
                v[0:4] = np.arange(12, dtype="f4").reshape(4, 3) + 100 * i
            t[0:4] = np.arange(4) + 4 * i
    with h5py.File(data / "plain.h5", "w") as f:
        f.create_dataset("grid", data=np.arange(600.0).reshape(20, 30), chunks=(5, 10), compression="gzip", shuffle=True)
        f.create_dataset("names", data=["a", "b"], dtype=h5py.string_dtype())
    with h5py.File(data / "clean.h5", "w") as f:
        f.create_dataset("grid", data=np.arange(600.0).reshape(20, 30), chunks=(5, 10), compression="gzip")
    cat = tmp_path / "cat"
    me.scan(str(data), str(cat), references=references, progress=False)
    return data, cat


@pytest.mark.integration
def test_a_scan_with_references_keeps_them_beside_the_catalog_and_open_reads_through_them(tmp_path):
    data, cat = catalog_of(tmp_path)
    df = me.read_catalog(str(cat)).set_index("path")
    assert bool(df.loc[str(data / "run_1.nc"), "virtualizable"]) is True
    assert bool(df.loc[str(data / "plain.h5"), "virtualizable"]) is False
    assert pd_isna(df.loc[str(data / "plain.h5"), "references"])
    record = json.loads(df.loc[str(data / "plain.h5"), "metadata"])
    assert any("/names: variable-length strings" in r for r in record["references"]["reasons"])
    entry = df.loc[str(data / "clean.h5"), "references"]
    assert os.path.exists(os.path.join(str(cat) + ".references", entry))
    assert "refs" not in json.loads(df.loc[str(data / "clean.h5"), "metadata"])["references"]  # not copied into the row

    ds = me.open(str(cat), str(data / "run_1.nc"))
    with netCDF4.Dataset(data / "run_1.nc") as direct:
        np.testing.assert_array_equal(ds["tas"].values, direct["tas"][:])
    grid = me.open(str(cat), df.loc[str(data / "clean.h5")].to_dict() | {"path": str(data / "clean.h5")})["grid"].values
    np.testing.assert_array_equal(grid, np.arange(600.0).reshape(20, 30))
    with pytest.warns(RuntimeWarning, match="opened without .*/names: variable-length strings"):
        plain = me.open(str(cat), str(data / "plain.h5"))  # no references stored: made now, its strings left out with why
    assert list(plain.data_vars) == ["grid"]
    np.testing.assert_array_equal(plain["grid"].values, np.arange(600.0).reshape(20, 30))


@pytest.mark.integration
def test_reference_entries_are_made_durable_beside_the_scan_before_the_part_that_names_them(tmp_path):
    """A row must never name an entry a crash could have emptied, and the thread writing the catalog must not pay one
    fsync per file as it writes (0.65 ms each here, 0.13 s for 200 files; far more on a parallel file system): every
    new entry is fsynced by another thread, after its rename and before the catalog part is renamed into place. Seen
    by strace in the scan's own process (the first code fsynced each entry's temporary as it was written; the next,
    all of them in one pass on the writing thread before the part)."""
    import shutil

    if shutil.which("strace") is None:
        pytest.fail("strace is needed to see the order of the writes (.ci/run installs it)")
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        with h5py.File(data / f"f{i}.h5", "w") as f:
            f.create_dataset("grid", data=np.arange(600.0).reshape(20, 30) + i, chunks=(5, 10), compression="gzip")
    cat, trace = tmp_path / "cat", tmp_path / "trace"
    subprocess.run(["strace", "-qq", "-f", "-y", "-e", "trace=fsync,rename,renameat,renameat2", "-o", str(trace),
                    sys.executable, "-m", "metaextract_dask.cli", "scan", str(data), "-o", str(cat), "--references",
                    "-q", "--local"], check=True, timeout=300)
    lines = trace.read_text().splitlines()
    folder = str(cat) + ".references"
    entry = re.compile(rf"{re.escape(folder)}/([0-9a-f]+\.json)")
    renamed = {entry.findall(line)[-1]: (i, line.split()[0]) for i, line in enumerate(lines)
               if "rename" in line and f"{folder}/." in line}
    synced = {entry.findall(line)[0]: (i, line.split()[0]) for i, line in enumerate(lines)
              if line.split()[1].startswith("fsync(") and entry.search(line) and ".tmp>" not in line}
    published = [i for i, line in enumerate(lines) if "rename" in line and "/part-" in line and "variables" not in line]
    assert len(renamed) == 4 and len(published) == 1, "\n".join(lines)
    assert set(synced) == set(renamed), "\n".join(lines)
    for name, (at, thread) in synced.items():
        assert renamed[name][0] < at < published[0], "\n".join(lines)
        assert thread != renamed[name][1], "an entry fsynced by the thread that writes the catalog:\n" + "\n".join(lines)
    assert all(os.path.getsize(os.path.join(folder, name)) > 0 for name in os.listdir(folder))


@pytest.mark.integration
def test_a_large_file_gets_parquet_references_that_open_reads(tmp_path):
    """At metaextract.references.parquet-min-chunks chunks a file's references go to fsspec's Parquet layout."""
    import dask

    data = tmp_path / "data"
    data.mkdir()
    values = np.arange(5000.0).reshape(50, 100)
    with h5py.File(data / "many.h5", "w") as f:
        f.create_dataset("grid", data=values, chunks=(5, 10))  # 100 chunks of 400 bytes: inlined below 500
        f.create_dataset("big", data=values * 2, chunks=(25, 50))  # 4 chunks of 10,000 bytes: [path, offset, size]
    cat = tmp_path / "cat"
    with dask.config.set({"metaextract.references.parquet-min-chunks": 100}):
        me.scan(str(data), str(cat), references=True, progress=False)
    entry = me.read_catalog(str(cat))["references"].iloc[0]
    assert entry.endswith(".parq") and os.path.isdir(os.path.join(str(cat) + ".references", entry))
    ds = me.open(str(cat), str(data / "many.h5"))
    np.testing.assert_array_equal(ds["grid"].values, values)
    np.testing.assert_array_equal(ds["big"].values, values * 2)


@pytest.mark.integration
def test_datasets_of_different_sizes_without_dimension_scales_open(tmp_path):
    """kerchunk names both first axes phony_dim_0; open() gives each distinct size its own name, as h5netcdf does."""
    data = tmp_path / "data"
    data.mkdir()
    with h5py.File(data / "mixed.h5", "w") as f:
        f.create_dataset("rows", data=np.arange(50.0), chunks=(10,))
        f.create_dataset("long", data=np.arange(2000.0), chunks=(500,))
        f.create_dataset("square", data=np.ones((50, 50)), chunks=(25, 25))
    cat = tmp_path / "cat"
    me.scan(str(data), str(cat), references=True, progress=False)
    stored = json.load(open(os.path.join(str(cat) + ".references", me.read_catalog(str(cat))["references"].iloc[0])))
    assert json.loads(stored["refs"]["long/.zattrs"])["_ARRAY_DIMENSIONS"] == ["phony_dim_0"]  # as kerchunk makes it
    ds = me.open(str(cat), str(data / "mixed.h5"))
    assert ds["rows"].sizes[ds["rows"].dims[0]] == 50 and ds["long"].dims != ds["rows"].dims
    assert len(set(ds["square"].dims)) == 2 and ds["square"].dims[0] == ds["rows"].dims[0]
    with h5py.File(data / "mixed.h5", "r") as f:
        for name in ("rows", "long", "square"):
            np.testing.assert_array_equal(ds[name].values, f[name][()])


@pytest.mark.unit
def test_a_reference_set_from_a_worker_must_look_like_one():
    from metaextract_dask.catalog import references

    with pytest.raises(ValueError, match="not a kerchunk reference set"):
        references.store("/nonexistent/cat", b"/x.h5", b'{"refs": "../../etc"}')


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


@pytest.mark.integration
def test_a_catalog_without_references_still_opens_hdf5_and_netcdf(tmp_path):
    data, cat = catalog_of(tmp_path, references=False)
    assert me.read_catalog(str(cat))["references"].isna().all()
    np.testing.assert_array_equal(me.open(str(cat), str(data / "clean.h5"))["grid"].values, np.arange(600.0).reshape(20, 30))
    assert float(me.open(str(cat), str(data / "run_2.nc"))["tas"].max()) == 211.0


@pytest.mark.integration
def test_rows_of_deleted_files_take_their_references_with_them(tmp_path):
    data, cat = catalog_of(tmp_path)
    entries = set(os.listdir(str(cat) + ".references"))
    gone = me.read_catalog(str(cat)).set_index("path").loc[str(data / "clean.h5"), "references"]
    os.unlink(data / "clean.h5")
    me.scan(str(data), str(cat), references=True, progress=False)
    assert set(os.listdir(str(cat) + ".references")) == entries - {gone}


@pytest.mark.integration
def test_a_fresh_catalog_sweeps_stray_entries_without_reading_its_parts_back(tmp_path, monkeypatch):
    """At its close a scan drops the sidecar entries no row names (a killed run's, a deleted file's). When every row is
    this scan's (a new catalog, or --force) it knows which entries its rows name: it reads no part back to find out
    (the references column of every part, 40 ms of a 200-file scan's 1 s here, and a whole catalog's on a --force)."""
    from metaextract_dask.catalog import writer

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        with h5py.File(data / f"f{i}.h5", "w") as f:
            f.create_dataset("grid", data=np.arange(600.0).reshape(20, 30) + i, chunks=(5, 10))
    cat = tmp_path / "cat"
    folder = tmp_path / "cat.references"
    folder.mkdir()
    (folder / ("0" * 32 + ".json")).write_text('{"version":1,"refs":{}}')  # a killed run's entry: no row names it
    read = []
    real = writer._read_part
    monkeypatch.setattr(writer, "_read_part", lambda part, columns=None: read.append(columns) or real(part, columns))
    me.scan(str(data), str(cat), references=True, progress=False)
    rows = me.read_catalog(str(cat))
    assert sorted(os.listdir(folder)) == sorted(rows["references"]) and len(rows) == 4
    assert ["references"] not in read, read

    os.unlink(data / "f0.h5")
    me.scan(str(data), str(cat), references=True, progress=False, force=True)
    assert sorted(os.listdir(folder)) == sorted(me.read_catalog(str(cat))["references"]) and len(os.listdir(folder)) == 3
    assert ["references"] not in read, read
    me.scan(str(data), str(cat), references=True, progress=False)  # a resume: its rows are older than this scan
    assert ["references"] in read and len(os.listdir(folder)) == 3


@pytest.mark.integration
def test_the_esm_export_opens_with_intake_esm_and_joins_the_run_along_time(tmp_path):
    data, cat = catalog_of(tmp_path)
    datastore = me.open_catalog(str(cat))
    assert sorted(datastore.df["format"].unique()) == ["netcdf", "reference"]  # the HDF5 file through its references
    assert sorted(map(sorted, datastore.df["variable"])) == [["grid"]] + [["pr", "tas"]] * 3
    found = datastore.search(file_format="netcdf4")
    assert len(found.df) == 3
    sets = found.to_dataset_dict(progressbar=False)
    (ds,) = sets.values()
    assert ds.sizes["time"] == 12
    expected = np.concatenate([np.arange(12, dtype="f4").reshape(4, 3) + 100 * i for i in range(3)])
    np.testing.assert_array_equal(ds["tas"].values, expected)
    collection = json.load(open(str(cat) + ".esm/collection.json"))
    assert {"type": "join_existing", "attribute_name": "time_start",
            "options": {"dim": "time", "coords": "minimal", "compat": "override"}} in collection["aggregation_control"]["aggregations"]
    assert set(collection["aggregation_control"]["groupby_attrs"]) >= {"experiment_id", "source"}


@pytest.mark.integration
def test_export_cli(tmp_path):
    _data, cat = catalog_of(tmp_path)
    out = tmp_path / "refs"
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "export", str(cat), "--to", "kerchunk", "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    index = (out / "index.csv").read_text().splitlines()
    assert len(index) == 1 + 4  # three netCDF-4 runs and the clean HDF5 file
    bad = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "export", str(tmp_path / "nothing"), "--to", "esm"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "is not a catalog" in bad.stderr


@pytest.mark.integration
def test_open_finds_relative_paths_from_any_folder_and_combines_rows_as_open_mfdataset(tmp_path, monkeypatch):
    """A scan given a relative path keeps rows as typed (data/run_0.nc); open works from another working folder, with and
    without references, on netCDF and HDF5 rows; a DataFrame, a list or a query of a run split in time opens as
    xarray.open_mfdataset opens its files; a file gone is "file not found". Before: kerchunk's ReferenceNotReachable,
    FileNotFoundError from the netCDF library, "the HDF5 library cannot open it", and pandas' "truth value of a Series"."""
    import dask
    import xarray as xr

    (tmp_path / "made").mkdir()
    data, _ = catalog_of(tmp_path / "made")
    os.rename(data, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    with dask.config.set({"metaextract.references.parquet-min-chunks": 12}):  # clean.h5's 12 chunks: the Parquet layout
        me.scan("data", "refs", references=True, progress=False)
    me.scan("data", "plain", references=False, progress=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    refs, plain = str(tmp_path / "refs"), str(tmp_path / "plain")
    frame = me.read_catalog(refs)
    assert set(frame["path"]) >= {"data/run_0.nc", "data/clean.h5"}  # as typed
    assert frame.set_index("path").loc["data/clean.h5", "references"].endswith(".parq")
    grid = np.arange(600.0).reshape(20, 30)
    for cat in (refs, plain):
        np.testing.assert_array_equal(me.open(cat, "data/clean.h5")["grid"].values, grid)
        with netCDF4.Dataset(tmp_path / "data" / "run_1.nc") as direct:
            np.testing.assert_array_equal(me.open(cat, "data/run_1.nc")["tas"].values, direct["tas"][:])
    expected = xr.open_mfdataset(sorted(str(p) for p in (tmp_path / "data").glob("run_*.nc")))
    runs = frame[frame["path"].str.contains("run_")]
    plain_frame = me.read_catalog(plain)
    plain_runs = plain_frame[plain_frame["path"].str.contains("run_")]
    for cat, rows in ((refs, runs), (plain, plain_runs), (refs, list(runs["path"])), (refs, {"variable": "tas"})):
        combined = me.open(cat, rows)
        assert combined.sizes["time"] == 12
        xr.testing.assert_identical(combined[["tas", "pr"]].load(), expected[["tas", "pr"]].load())
    import pandas as pd

    me.export(plain, "esm")  # its files' paths found from here too (before: relative to this folder, where none is)
    assets = pd.read_csv(str(tmp_path / "plain.esm" / "collection.csv"))
    netcdf = assets[assets["format"] == "netcdf"]["path"]
    assert len(netcdf) == 3 and all(os.path.isabs(p) and os.path.exists(p) for p in netcdf)
    os.unlink(tmp_path / "data" / "run_2.nc")
    with pytest.raises(FileNotFoundError, match="data/run_2.nc: file not found"):
        me.open(plain, "data/run_2.nc")


@pytest.mark.integration
def test_a_run_with_one_global_attribute_joins_through_intake_esm(tmp_path):
    """Files sharing one global attribute: intake-esm 2025.12 under pandas 3 grouped by that one column into keys it
    could not look up (KeyError: 'model'); the export's groups now always have two keys."""
    import pandas as pd
    import xarray as xr

    (tmp_path / "data").mkdir()
    for i in range(3):
        t = pd.date_range(f"200{i}-01-01", periods=4, freq="D")
        xr.Dataset({"tas": (("time", "lat"), np.full((4, 3), i, dtype="f4"))}, coords={"time": t, "lat": [1.0, 2.0, 3.0]},
                   attrs={"source": "model"}).to_netcdf(tmp_path / "data" / f"run{i}.nc")
    me.scan(str(tmp_path / "data"), str(tmp_path / "cat"))
    (joined,) = me.open_catalog(str(tmp_path / "cat")).to_dataset_dict(progressbar=False).values()
    assert joined.sizes["time"] == 12 and float(joined["tas"][-1, 0]) == 2.0


@pytest.mark.unit
def test_a_writer_that_stops_without_committing_leaves_no_fsync_thread(tmp_path):
    """Entries are fsynced by a thread beside the scan (``sidecars.Unsynced``); a writer closed after a failed write
    (a full disk: it commits nothing more) ends that thread too, or a notebook's failed scans would each leave one."""
    import threading
    import time

    from metaextract_dask.catalog.writer import CatalogWriteError, CatalogWriter
    from metaextract_dask.core.model import ExtractionResult
    from metaextract_dask.core.settings import StreamingConfig
    from metaextract_dask.execution.batch import extract_metadata

    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(100.0), chunks=(10,))
    record = extract_metadata(str(path), StreamingConfig(references=True))

    def fsync_threads():
        return [t for t in threading.enumerate() if t.name == "metaextract-fsync"]

    before = len(fsync_threads())
    writer = CatalogWriter(str(tmp_path / "cat"))
    writer.add(ExtractionResult(str(path), str(path), True, record, start_time=time.time(), end_time=time.time()))
    assert len(fsync_threads()) == before + 1  # the entry went to the thread
    writer.broken = CatalogWriteError(28, "No space left on device")  # what a failed write leaves (writer._guarded)
    writer.close()
    assert len(fsync_threads()) == before


@pytest.mark.integration
def test_a_catalog_of_unrelated_files_opens_dataset_by_dataset_through_intake_esm(tmp_path):
    """Files with no global attribute in common (a folder of unrelated netCDF files, as any archive has): the ESM export
    grouped them all by format, so intake-esm merged unrelated files into one dataset (here: tas, pr and a grid's area
    over 6 steps, the copy of a run's file folded in) or failed (733 real files: every key with more than one file).
    Files holding the same variables along the time coordinate are one dataset now, any other file one of its own, and
    a copy overlapping a run in time is not joined to it."""
    data = tmp_path / "data"
    (data / "copy").mkdir(parents=True)

    def write(path, variables, day=None):
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("x", 3)
            if day is not None:
                ds.createDimension("time", 2)
                t = ds.createVariable("time", "f8", ("time",))
                t.units = "days since 2000-01-01"
                t[:] = [day, day + 1]
            for v in variables:
                ds.createVariable(v, "f4", ("time", "x") if day is not None else ("x",))[:] = 1.0

    for i in range(3):
        write(data / f"tas_{i}.nc", ["tas"], day=2 * i)
    for i in range(2):
        write(data / f"pr_{i}.nc", ["pr"], day=2 * i)
    write(data / "grid.nc", ["area"])
    shutil.copy(data / "tas_1.nc", data / "copy" / "tas_1.nc")
    cat = str(tmp_path / "cat")
    me.scan(str(data), cat, progress=False)
    datastore = me.open_catalog(cat)
    sets = {key: datastore[key].to_dask() for key in datastore.keys()}  # not to_dataset_dict: its threads (xarray #9779)
    sizes = sorted((sorted(ds.data_vars), ds.sizes.get("time", 0)) for ds in sets.values())
    assert sizes == [(["area"], 0), (["pr"], 4), (["tas"], 2), (["tas"], 6)]


@pytest.mark.integration
def test_the_esm_export_of_cmip_and_cesm_files_opens_every_dataset_and_joins_only_runs(tmp_path):
    """ecgtools' own sample data (its 2024.7.31 source on PyPI): CMIP5 and CMIP6 output of many models, experiments and
    ensemble members, and CESM files, in one folder. The ESM export chose attributes most files hold and left the
    others' cells empty, so intake-esm refused the collection ("The data in the activity_id column should either be
    all NaN or there should be no NaNs"). Now a file without a grouping attribute is ``(absent)`` there, and every
    key opens: its files lie on one grid, and files of the same variables follow each other in time and are named
    alike but for their numbers (two ensemble members, or two models' files of one variable, are not joined; an
    ocean and a land variable are not merged onto one grid)."""
    data = public_corpus.ecgtools_sample(str(tmp_path / "data"), ("cmip", "cesm", "cesm_obs"))
    cat = str(tmp_path / "cat")
    me.scan(str(data), cat, progress=False, metadata_only=True)
    datastore = me.open_catalog(cat)
    assert len(datastore.df) == 97
    keys = datastore.esmcat.aggregation_control.groupby_attrs
    assert "dataset" in keys and not datastore.df[keys].isna().any().any()
    assert keys[:3] == ["activity_id", "institution_id", "source_id"] and {"experiment_id", "variant_label"} <= set(keys), keys
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in datastore.keys():  # one at a time: intake-esm opens datasets in threads, where netCDF4 crashes (xarray #9779)
            ds = datastore[key].to_dask()
            if "time" in ds.indexes:
                assert ds.indexes["time"].is_monotonic_increasing and ds.indexes["time"].is_unique, key
            rows = datastore[key].df
            for variables, files in rows.groupby(rows["variable"].map(lambda v: tuple(sorted(v)))):
                assert len({re.sub(r"\d+", "#", os.path.basename(p)) for p in files["path"]}) == 1, (key, list(files["path"]))
    members = datastore.df[datastore.df["path"].str.contains("hfls_Amon_CNRM-CM5_historical_r[78]i1p1")]
    assert len(members) == 2 and members["dataset"].nunique() == 2


@pytest.mark.integration
def test_the_esm_export_groups_a_large_ensemble_by_run_not_by_creation_time(tmp_path):
    """CESM's Large Ensemble in ecgtools' sample data (214 files: a control run of 18 decades and 50-odd members of two
    experiments, two variables each). Their global attributes hold sentences ("This dataset was created on 2013-05-06
    at 00:14:23.9", "All years have exactly 365 days."), and the ESM export grouped by them: 107 datasets of two files,
    cut at each file's creation time. Now sentences name no group; each dataset is one case and member (its two
    variables, its years), the control run one dataset of its 36 files, and datasets open with their time in order."""
    import warnings

    data = public_corpus.ecgtools_sample(str(tmp_path / "data"), ("cesm-le",))
    cat = str(tmp_path / "cat")
    me.scan(data, cat, progress=False, metadata_only=True)
    datastore = me.open_catalog(cat)
    keys = datastore.esmcat.aggregation_control.groupby_attrs
    assert not {"start_time", "calendar", "revision"} & set(keys), keys
    df = datastore.df
    runs = df["path"].map(lambda p: ".".join(re.search(r"b\.e11\.(\w+)\.f09_g16\.(\d+)\.", p).groups()))
    assert (df.assign(run=runs).groupby(keys)["run"].nunique() == 1).all()
    assert df.assign(run=runs).groupby(keys).size().max() == 36
    assert len(datastore.keys()) == runs.nunique() == 65  # a control run and 64 members, each one dataset
    sizes = {key: len(datastore[key].df) for key in datastore.keys()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in sorted(sizes, key=sizes.get, reverse=True)[:5]:  # the control run and four members (65 take 40 s)
            ds = datastore[key].to_dask()
            assert ds.indexes["time"].is_monotonic_increasing and ds.indexes["time"].is_unique, key
            assert set(ds.data_vars) >= {"SHF", "STF_O2"}, key
