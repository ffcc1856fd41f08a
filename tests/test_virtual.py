"""Virtual datasets in Icechunk (``export --to icechunk``), against what xarray reads from the files themselves.

A run of 100 netCDF-4 files split in time (written by xarray through libnetcdf, packed as int16 with scale_factor
and add_offset, chunked): the repository, opened with ``xarray.open_zarr`` over Icechunk, equals
``xarray.open_mfdataset`` of the files; a file whose ``scale_factor`` differs, and one whose chunks differ, are split
off with a note naming them and the difference (``export --check`` says the same and exits 1); a source file touched
after the export makes Icechunk refuse its chunks; a re-scan after adding 10 files and changing 2 makes one commit
whose diff holds exactly their chunks, and the previous snapshot still reads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import warnings
from typing import Any, Iterator

import numpy as np
import pytest

import metaextract_dask as me

sys.path.insert(0, os.path.dirname(__file__))
import public_corpus  # noqa: E402

pytestmark = pytest.mark.integration

icechunk = pytest.importorskip("icechunk")
STEPS = 4  # time steps per file, two chunks of two


def write_run(folder, first: int, count: int, scale: float = 0.01, chunks: tuple[int, int, int] = (2, 20, 30), shift: float = 0.0,
              time_units: Any = None, bounds: bool = False) -> list[str]:
    """``count`` files of a run, day ``first`` onwards, each ``STEPS`` steps of a packed temperature field (chunks of
    more than the 500 bytes a reference set inlines: every chunk is a virtual reference). ``time_units(day)``: the
    units each file's time counts in, as int32 (else hours since 2001-01-01); ``bounds``: CF time bounds too."""
    import pandas as pd
    import xarray as xr

    os.makedirs(folder, exist_ok=True)
    out = []
    rng = np.random.default_rng(first)
    for day in range(first, first + count):
        time = pd.date_range("2001-01-01", periods=STEPS, freq="6h") + pd.Timedelta(days=day)
        tas = (rng.random((STEPS, 20, 30)) * 40 + 250 + shift).astype("f4")
        tas[0, 0, 0] = np.nan  # a missing value: packed as _FillValue
        ds = xr.Dataset({"tas": (("time", "lat", "lon"), tas, {"units": "K", "standard_name": "air_temperature"})},
                        coords={"time": time, "lat": np.linspace(-57, 57, 20), "lon": np.linspace(0, 348, 30)},
                        attrs={"source": "toy-model", "experiment_id": "historical"})
        if bounds:
            ds["time_bnds"] = (("time", "nv"), np.stack([time.values, (time + pd.Timedelta(hours=6)).values], axis=1))
            ds["time"].attrs["bounds"] = "time_bnds"
        path = os.path.join(folder, f"tas_{day:04d}.nc")
        encoding = {"units": time_units(day), "dtype": "int32"} if time_units else {"units": "hours since 2001-01-01"}
        ds.to_netcdf(path, encoding={"tas": {"dtype": "int16", "scale_factor": scale, "add_offset": 270.0, "_FillValue": -32767,
                                             "zlib": True, "chunksizes": chunks},
                                     "time": {**encoding, "calendar": "standard"}})
        out.append(path)
    return out


@contextlib.contextmanager
def warnings_caught() -> Iterator[list[str]]:
    """The notices (RuntimeWarning) issued inside, as text."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        said: list[str] = []
        yield said
    said += [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def scan_and_export(folder, cat) -> subprocess.CompletedProcess:
    me.scan(str(folder), str(cat), references=True)
    return subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "export", str(cat), "--to", "icechunk"],
                          capture_output=True, text=True, timeout=600)


def open_group(repo_path, folder, group, snapshot=None):
    import xarray as xr

    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(repo_path)),
                                    authorize_virtual_chunk_access=icechunk.containers_credentials({f"file://{folder}/": None}))
    session = repo.readonly_session(snapshot_id=snapshot) if snapshot else repo.readonly_session("main")
    return repo, xr.open_zarr(session.store, group=group, consolidated=False)


def mfdataset(paths):
    import xarray as xr

    return xr.open_mfdataset(sorted(paths), combine="by_coords")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("virtual")
    files = write_run(root / "data", 0, 100)
    cat = root / "cat"
    done = scan_and_export(root / "data", cat)
    assert done.returncode == 0, done.stderr
    return root, files, cat


def test_an_export_imports_no_dask(run, tmp_path):
    """An export opens no HDF5 file and runs no Dask: its process imports no dask (0.1 to 0.2 s of its start), the
    CLI's plugin-folder safety and the reader registry included."""
    _root, _files, cat = run
    code = ("import sys; from metaextract_dask.cli import main; rc = main(sys.argv[1:]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dask')); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, "export", str(cat), "--to", "icechunk", "-o", str(tmp_path / "repo")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_a_run_in_icechunk_equals_open_mfdataset(run):
    import xarray as xr

    root, files, cat = run
    _repo, ours = open_group(str(cat) + ".icechunk", root / "data", "historical.toy-model")
    with ours, mfdataset(files) as theirs:
        assert ours.sizes["time"] == 100 * STEPS
        xr.testing.assert_identical(ours.load(), theirs.load())


def test_a_scan_exports_its_catalog_in_the_same_process(run, tmp_path):
    """``scan --export icechunk --export esm``: the scan, then each export as ``export --to`` would write it, in one
    process (an export's own start, 0.3 to 0.4 s, is most of a small run's export); icechunk turns references on."""
    import xarray as xr

    root, files, _cat = run
    data = tmp_path / "data"
    data.mkdir()
    for path in files[:12]:
        shutil.copy(path, data)
    cat = tmp_path / "cat"
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", str(data), "-o", str(cat), "-q",
                           "--export", "icechunk", "--export", "esm"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-2:] == [f"icechunk: {cat}.icechunk", f"esm: {cat}.esm/collection.json"], done.stdout
    assert os.path.isfile(f"{cat}.esm/collection.json")
    _repo, ours = open_group(str(cat) + ".icechunk", data, "historical.toy-model")
    with ours, mfdataset([os.path.join(data, os.path.basename(p)) for p in files[:12]]) as theirs:
        xr.testing.assert_identical(ours.load(), theirs.load())


def test_files_that_would_decode_wrong_are_split_off_with_a_note(run, tmp_path):
    """One file packed with another scale_factor, one chunked otherwise: each its own part, named in the notes."""
    import xarray as xr

    _root, files, _cat = run
    data = tmp_path / "data"
    shutil.copytree(os.path.dirname(files[0]), data)
    odd_scale = write_run(data, 40, 1, scale=0.02)[0]  # replaces tas_0040.nc
    odd_chunks = write_run(data, 70, 1, chunks=(4, 20, 30))[0]
    cat = tmp_path / "cat"
    me.scan(str(data), str(cat), references=True)
    check = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "export", str(cat), "--check"], capture_output=True, text=True)
    assert check.returncode == 1
    assert "tas_0040.nc" in check.stderr and "tas scale_factor: 0.01" in check.stderr and "0.02" in check.stderr, check.stderr
    assert "tas_0070.nc" in check.stderr and "tas chunk shape: [2, 20, 30]" in check.stderr, check.stderr
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "export", str(cat), "--to", "icechunk"], capture_output=True, text=True)
    assert done.returncode == 0 and "split" in done.stderr, done.stderr
    others = [p for p in (os.path.join(data, n) for n in sorted(os.listdir(data))) if p not in (odd_scale, odd_chunks)]
    _repo, main = open_group(str(cat) + ".icechunk", data, "historical.toy-model")
    with main, mfdataset(others) as theirs:
        xr.testing.assert_identical(main.load(), theirs.load())
    for part, path in (("historical.toy-model.part2", odd_scale), ("historical.toy-model.part3", odd_chunks)):
        _repo, ours = open_group(str(cat) + ".icechunk", data, part)
        with ours, xr.open_dataset(path) as theirs:
            xr.testing.assert_identical(ours.load(), theirs.load())


def test_files_counting_time_from_their_own_first_day_are_one_dataset_when_it_counts_exactly(tmp_path):
    """Model output written a year (here a day) a file often counts each file's time from its own first day ("hours
    since 1851-01-31T23:15:00" beside "hours since 1850-01-31T23:15:00": MPI-GE's files in ecgtools' sample data). Such
    files were split off, each a dataset of its own. Their time coordinate and bounds are written as values, so they
    are now counted from the first file's date, which decodes to the same instants: one dataset, equal to
    open_mfdataset. A file whose times the first file's unit cannot count exactly (6-hour steps in whole days) is
    still split off, with a note saying so."""
    import xarray as xr

    data = tmp_path / "data"
    files = write_run(data, 0, 6, time_units=lambda day: f"hours since 2001-01-{1 + day:02d} 00:00:00", bounds=True)
    cat = tmp_path / "cat"
    me.scan(str(data), str(cat), references=True, metadata_only=True, progress=False)
    with warnings_caught() as notices:
        me.export(str(cat), "icechunk")
    assert not [n for n in notices if "split" in n], notices
    _repo, ours = open_group(str(cat) + ".icechunk", data, "historical.toy-model")
    with ours, mfdataset(files) as theirs:
        assert ours.sizes["time"] == 6 * STEPS
        xr.testing.assert_identical(ours.load(), theirs.load())

    import pandas as pd

    odd = tmp_path / "odd"
    odd.mkdir()
    for name, times, units in (("tas_1.nc", ["2001-01-01", "2001-01-02"], "days since 2001-01-01"),  # whole days, as int32
                               ("tas_2.nc", ["2001-01-03 00:00", "2001-01-03 12:00"], "hours since 2001-01-03 00:00:00")):
        tas = np.arange(2 * 20 * 30, dtype="f4").reshape(2, 20, 30)
        xr.Dataset({"tas": (("time", "lat", "lon"), tas)}, coords={"time": pd.to_datetime(times)}, attrs={"source": "odd"}).to_netcdf(
            odd / name, encoding={"time": {"units": units, "dtype": "int32"}, "tas": {"zlib": True, "chunksizes": (1, 20, 30)}})
    me.scan(str(odd), str(tmp_path / "odd-cat"), references=True, metadata_only=True, progress=False)
    with warnings_caught() as notices:
        me.export(str(tmp_path / "odd-cat"), "icechunk")
    assert any("tas_2.nc counts time in 'hours since 2001-01-03', which tas_1.nc's 'days since 2001-01-01' cannot count "
               "exactly" in n for n in notices), notices


def test_a_classic_netcdf_run_is_one_virtual_dataset(tmp_path):
    """A run of netCDF classic files (64-bit offset, as CMIP5-era archives hold them; two record variables, so their
    records interleave): each file's references come from its header, and the run is one Icechunk dataset equal to
    open_mfdataset. Before, classic files had no references and were left out of the export."""
    import pandas as pd
    import xarray as xr

    data = tmp_path / "data"
    data.mkdir()
    files = []
    for day in range(5):
        time = pd.date_range("2001-01-01", periods=4, freq="6h") + pd.Timedelta(days=day)
        rng = np.random.default_rng(day)
        ds = xr.Dataset({"tas": (("time", "lat", "lon"), rng.random((4, 10, 12)).astype("f4"), {"units": "K"}),
                         "pr": (("time", "lat", "lon"), rng.random((4, 10, 12)), {"units": "kg m-2 s-1"})},
                        coords={"time": time, "lat": np.linspace(-45, 45, 10), "lon": np.linspace(0, 330, 12)},
                        attrs={"source": "classic-model"})
        files.append(str(data / f"run_{day}.nc"))
        ds.to_netcdf(files[-1], format="NETCDF3_64BIT", unlimited_dims=["time"],
                     encoding={"time": {"units": "hours since 2001-01-01"}})
    cat = str(tmp_path / "cat")
    me.scan(str(data), cat, references=True, metadata_only=True, progress=False)
    with warnings_caught() as notices:
        me.export(cat, "icechunk")
    assert not notices, notices
    _repo, ours = open_group(cat + ".icechunk", data, "classic-model")
    with ours, mfdataset(files) as theirs:
        assert ours.sizes["time"] == 20
        xr.testing.assert_identical(ours.load(), theirs.load())


def test_the_members_of_an_ensemble_are_a_run_each_and_equal_open_mfdataset(tmp_path):
    """MPI-GE's files in ecgtools' sample data (the Max Planck Institute Grand Ensemble: seven members of three
    experiments, four outputs each, a year a file, each file counting time from its own first day). Files named alike
    but for their numbers were joined in time order whatever member they came from: rcp850003's 2006 and 2007 and
    rcp850002's 2008 were one dataset, in the ESM export and in Icechunk; and every Icechunk dataset was split into its
    files by their time units. Now each member's output is one dataset of its three years, equal to open_mfdataset."""
    import xarray as xr
    import zarr

    data = public_corpus.ecgtools_sample(str(tmp_path / "data"), ("mpi-ge",))
    cat = str(tmp_path / "cat")
    me.scan(data, cat, references=True, metadata_only=True, progress=False)
    with warnings_caught() as notices:
        me.export(cat, "icechunk")
    assert not [n for n in notices if "time units" in n], notices
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(cat + ".icechunk"))
    store = repo.readonly_session("main").store
    datasets = zarr.open_group(store, mode="r").attrs["metaextract:datasets"]
    assert len(datasets) == 28
    for name, found in datasets.items():
        paths = sorted(found["files"])
        assert len(paths) == 3 and len({os.path.basename(p).split("_")[0] for p in paths}) == 1, (name, paths)
        _repo, ours = open_group(cat + ".icechunk", data, name)
        with ours, xr.open_mfdataset(paths, combine="nested", concat_dim="time", data_vars="minimal", coords="minimal",
                                     compat="override") as theirs:
            xr.testing.assert_equal(ours.load(), theirs.load())
    esm = me.open_catalog(cat).df
    for _key, rows in esm.groupby("dataset"):
        assert len(rows) == 3 and rows["path"].map(lambda p: os.path.basename(p).split("_")[0]).nunique() == 1, list(rows["path"])


def test_only_a_fill_value_the_file_names_is_masked(tmp_path):
    """A fill value the file's variable does not name in a ``_FillValue`` attribute is HDF5's: netCDF's default fill
    of a variable libnetcdf does not mark as its own (a CF grid mapping, a scalar: iris's sample data), or 0 in a plain
    HDF5 file. netCDF readers and xarray mask neither, but the Icechunk export wrote each as ``_FillValue``: the grid
    mapping read back as NaN (float64, not int32) and every 0 of an HDF5 array as NaN. Each group now equals the file
    opened with xarray, type and values."""
    import h5py
    import xarray as xr
    import zarr

    iris = [p for w in public_corpus.fetch_wheels(os.path.join(public_corpus.cache_dir(), "wheels")) if "iris_sample_data" in w
            for p in public_corpus.unpack_data(w, str(tmp_path / "iris"))]
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(next(p for p in iris if p.endswith("A1B_north_america.nc")), data / "a1b.nc")
    with h5py.File(data / "counts.h5", "w") as f:
        f["counts"] = np.arange(12, dtype="i4").reshape(3, 4)  # its 0 is HDF5's fill value
        f["masked"] = np.arange(12, dtype="i4").reshape(3, 4)
        f["masked"].attrs["_FillValue"] = np.int32(5)  # a fill value the file names: masked, as netCDF4 does
    cat = str(tmp_path / "cat")
    me.scan(str(data), cat, references=True, metadata_only=True, progress=False)
    me.export(cat, "icechunk")
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(cat + ".icechunk"))
    datasets = zarr.open_group(repo.readonly_session("main").store, mode="r").attrs["metaextract:datasets"]
    assert len(datasets) == 2
    for name, found in datasets.items():
        (path,) = found["files"]
        _repo, ours = open_group(cat + ".icechunk", data, name)
        with ours, xr.open_dataset(path) as theirs:
            xr.testing.assert_equal(ours.load(), theirs.load())
            assert {k: v.dtype for k, v in ours.variables.items()} == {k: v.dtype for k, v in theirs.variables.items()}
            if "masked" in ours:
                assert int(ours["counts"].isnull().sum()) == 0 and int(ours["masked"].isnull().sum()) == 1


def test_an_hdf5_file_of_arrays_of_other_lengths_opens_from_icechunk(tmp_path):
    """Arrays without dimension scales get kerchunk's names, ``phony_dim_0`` for every first axis: a 4-row and a 10-row
    array of one file claimed one dimension and xarray refused the exported group ("conflicting sizes for dimension").
    Their dimensions are named as ``open`` names them (``h5refs.distinct_phony_dims``): the group opens, each array
    equal to the file's."""
    import h5py

    data = tmp_path / "data"
    data.mkdir()
    with h5py.File(data / "table.h5", "w") as f:
        f["short"] = np.arange(4.0)
        f["long"] = np.arange(10.0)
        f["grid"] = np.arange(40.0).reshape(4, 10)
    cat = str(tmp_path / "cat")
    me.scan(str(data), cat, references=True, metadata_only=True, progress=False)
    me.export(cat, "icechunk")
    _repo, ours = open_group(cat + ".icechunk", data, "dataset")  # a file without global attributes: its group is "dataset"
    with ours, h5py.File(data / "table.h5", "r") as f:
        assert sorted(ours.sizes.values()) == [4, 10]
        for name in ("short", "long", "grid"):
            np.testing.assert_array_equal(ours[name].values, f[name][()])
        assert ours["grid"].dims == (ours["short"].dims[0], ours["long"].dims[0])


def test_an_attribute_of_infinity_leaves_the_repository_readable(tmp_path):
    """An attribute holding an infinity or NaN (``valid_max = Infinity``: netcdf-c's own test files) was written into
    the Icechunk metadata as Python writes it; Icechunk reads metadata as strict JSON and the whole repository became
    unreadable ("bad metadata"), every other dataset with it. Such a number is now its text, as Zarr v3 writes a fill
    value."""
    import netCDF4
    import xarray as xr

    data = tmp_path / "data"
    data.mkdir()
    for name, extreme in (("odd", np.inf), ("plain", 1.0)):
        with netCDF4.Dataset(data / f"{name}.nc", "w") as ds:
            ds.createDimension("x", 3)
            v = ds.createVariable("v", "f4", ("x",))
            v[:] = [1.0, 2.0, 3.0]
            v.valid_max, v.limits = np.float32(extreme), np.array([-np.inf, np.nan, 2.0])
            ds.source = name
    cat = str(tmp_path / "cat")
    me.scan(str(data), cat, references=True, metadata_only=True, progress=False)
    me.export(cat, "icechunk")
    for name in ("odd", "plain"):
        _repo, ours = open_group(cat + ".icechunk", data, name)
        with ours, xr.open_dataset(data / f"{name}.nc") as theirs:
            np.testing.assert_array_equal(ours["v"].values, theirs["v"].values)
            assert ours["v"].attrs["limits"] == ["-Infinity", "NaN", 2.0]
            assert ours["v"].attrs["valid_max"] == ("Infinity" if name == "odd" else 1.0)


def exported_copy(run, tmp_path):
    """A copy of the run's files, scanned and exported to Icechunk: (its folder, the dataset opened from the store)."""
    root, _files, _cat = run
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    done = scan_and_export(data, tmp_path / "cat")
    assert done.returncode == 0, done.stderr
    return data, open_group(str(tmp_path / "cat") + ".icechunk", data, "historical.toy-model")[1]


def test_a_touched_source_file_is_refused_by_icechunk(run, tmp_path):
    data, ours = exported_copy(run, tmp_path)
    ours["tas"].isel(time=slice(0, 8)).load()  # reads before the touch
    touched = data / "tas_0001.nc"
    later = os.stat(touched).st_mtime + 10
    os.utime(touched, (later, later))
    with pytest.raises(Exception, match="has changed"):
        ours["tas"].isel(time=slice(STEPS, 2 * STEPS)).load()


def test_a_source_rewritten_within_the_second_at_the_same_size_is_refused(run, tmp_path):
    """A modification time was the checksum, and Icechunk compares it in whole seconds: a file rewritten in the second
    of the export with bytes of the same size was read as if unchanged, its new bytes decoded as the old chunks. The
    local file's ETag (inode, microseconds, size) is compared now."""
    import math

    data, ours = exported_copy(run, tmp_path)
    ours["tas"].isel(time=slice(0, STEPS)).load()
    touched = data / "tas_0001.nc"
    st = os.stat(touched)
    blob = bytearray(touched.read_bytes())
    blob[-4096:] = bytes(4096)  # same size, other bytes (within the file's last chunk)
    touched.write_bytes(bytes(blob))
    second = math.floor(st.st_mtime)
    same = second + (0.9 if st.st_mtime - second < 0.5 else 0.1)  # another time within the same whole second
    os.utime(touched, (same, same))
    assert os.stat(touched).st_size == st.st_size and math.ceil(os.stat(touched).st_mtime) == math.ceil(st.st_mtime)
    with pytest.raises(Exception, match="has changed"):
        ours["tas"].isel(time=slice(STEPS, 2 * STEPS)).load()


def test_a_re_export_commits_only_what_changed(run, tmp_path):
    """10 files added at the end, 2 rewritten in place: one commit, whose diff holds those files' chunks (and the time
    coordinate's), and the previous snapshot reads as before."""
    import xarray as xr

    root, files, cat = run
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    first = scan_and_export(data, tmp_path / "cat")
    assert first.returncode == 0, first.stderr
    repo_path = str(tmp_path / "cat") + ".icechunk"
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(repo_path))
    before = repo.lookup_branch("main")
    write_run(data, 100, 10)
    changed = write_run(data, 20, 2, shift=5.0)  # tas_0020.nc, tas_0021.nc rewritten with other values
    for path in changed:
        later = os.stat(path).st_mtime + 5
        os.utime(path, (later, later))
    again = scan_and_export(data, tmp_path / "cat")
    assert again.returncode == 0, again.stderr
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(repo_path))
    history = list(repo.ancestry(branch="main"))
    assert history[1].id == before
    assert "10 files appended" in history[0].message and "2 files changed (tas_0020.nc, tas_0021.nc)" in history[0].message
    diff = repo.diff(from_snapshot_id=before, to_snapshot_id=history[0].id)
    chunks = sorted(tuple(c) for c in diff.updated_chunks["/historical.toy-model/tas"])
    per_file = STEPS // 2
    expected = sorted((t, 0, 0) for day in (20, 21, *range(100, 110)) for t in range(day * per_file, (day + 1) * per_file))
    assert chunks == expected
    assert set(diff.updated_chunks) == {"/historical.toy-model/tas", "/historical.toy-model/time"}
    _repo, now = open_group(repo_path, data, "historical.toy-model")
    with now, mfdataset(data.iterdir()) as theirs:
        xr.testing.assert_identical(now.load(), theirs.load())
    _repo, old = open_group(repo_path, data, "historical.toy-model", snapshot=before)
    with old:
        assert old.sizes["time"] == 100 * STEPS
        unchanged = old["tas"].isel(time=slice(0, 20 * STEPS)).load()  # the files not rewritten read as before
        with mfdataset(files[:20]) as theirs:
            xr.testing.assert_identical(unchanged, theirs["tas"].load())


def test_the_stac_collection_points_at_the_virtual_store(run):
    """The STAC export beside an Icechunk export: a collection asset per virtual dataset at the latest snapshot, typed
    and with the roles stac-utils' virtual Icechunk collections use, pointing at the folder its chunks are read from."""
    import json

    root, _files, cat = run
    out = me.export(str(cat), "stac")
    collection = json.load(open(out))
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(cat) + ".icechunk"))
    snapshot = repo.lookup_branch("main")
    asset = collection["assets"][f"historical.toy-model@{snapshot}"]
    assert asset["type"] == "application/vnd.zarr+icechunk" and asset["version"] == snapshot
    assert set(asset["roles"]) == {"data", "references", "virtual", "latest-version"}
    (source,) = asset["vrt:hrefs"]
    assert collection["assets"][source["key"]]["href"].rstrip("/") == (root / "data").as_uri()
    assert "https://stac-extensions.github.io/virtual-assets/v1.0.0/schema.json" in collection["stac_extensions"]


def test_the_stac_export_of_a_catalog_scanned_by_a_relative_path_points_at_its_virtual_store(run, tmp_path, monkeypatch):
    """A scan given a relative path keeps its rows' paths relative; the STAC export beside an Icechunk export turned
    each into a file URL and failed ("relative path can't be expressed as a file URI", exit 2), from any folder. The
    paths are found as ``open`` finds them (the scan's working folder, from the manifest)."""
    import json

    _root, files, _cat = run
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    for path in files[:3]:
        shutil.copy(path, work / "data")
    monkeypatch.chdir(work)
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", "data", "-o", "cat", "-q", "--export",
                           "icechunk"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    monkeypatch.chdir(tmp_path)  # exported from elsewhere
    out = me.export(str(work / "cat"), "stac")
    collection = json.load(open(out))
    (asset,) = [a for a in collection["assets"].values() if a.get("type") == "application/vnd.zarr+icechunk"]
    (source,) = asset["vrt:hrefs"]
    assert collection["assets"][source["key"]]["href"].rstrip("/") == (work / "data").as_uri()


def test_stac_geoparquet_holds_the_items_the_json_export_writes(run, tmp_path):
    """The stac-geoparquet export (one Parquet file, read back with the stac-geoparquet library) holds the same Items as
    the JSON export, file:checksum aside (nothing is read again)."""
    import datetime
    import glob
    import json

    from stac_geoparquet.arrow import stac_table_to_items

    _root, files, cat = run
    path = me.export(str(cat), "stac-geoparquet", str(tmp_path / "geo"))
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    assert b"geo" in pq.read_schema(path).metadata and table.num_rows == len(files)
    ours = {i["id"]: i for i in stac_table_to_items(table)}
    collection = me.export(str(cat), "stac", str(tmp_path / "json"))
    theirs = {}
    for p in glob.glob(os.path.join(os.path.dirname(collection), "**", "*.json"), recursive=True):
        if p != collection:
            item = json.load(open(p))
            theirs[item["id"]] = item
    assert sorted(ours) == sorted(theirs)
    for key, item in theirs.items():
        mine = ours[key]
        when = lambda text: datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731 - it writes microseconds
        assert mine["bbox"] == pytest.approx(item["bbox"])
        assert when(mine["properties"]["start_datetime"]) == when(item["properties"]["start_datetime"])
        assert mine["assets"]["data"]["href"] == item["assets"]["data"]["href"] and mine["properties"]["cube:variables"] == item["properties"]["cube:variables"]


def test_files_that_overlap_in_time_or_have_no_time_are_never_joined(tmp_path):
    """Two files covering the same days, and two files with no time dimension: four datasets, each split said."""
    import xarray as xr

    data = tmp_path / "data"
    write_run(data, 0, 1)
    shutil.copy(data / "tas_0000.nc", data / "tas_again.nc")
    for i in range(2):
        xr.Dataset({"orog": (("lat", "lon"), np.zeros((20, 30), dtype="f4"))},  # equal: only their lack of time splits them
                   attrs={"source": "toy-model", "experiment_id": "historical"}).to_netcdf(data / f"static_{i}.nc")
    cat = tmp_path / "cat"
    me.scan(str(data), str(cat), references=True)
    check = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "export", str(cat), "--check"], capture_output=True, text=True)
    assert check.returncode == 1
    assert "overlap in time" in check.stderr and "no time dimension" in check.stderr, check.stderr
    assert len(check.stdout.strip().splitlines()) == 4, check.stdout


def test_two_runs_that_share_every_attribute_are_two_datasets_in_icechunk_and_in_the_esm_export(tmp_path):
    """Two runs of one model, told apart by their file names only (as archives name experiments and members), with the
    same global attributes, on one grid, one after the other in time: each its own dataset in the Icechunk repository
    and in the ESM export, the split said with the files' names. Before, both exports joined them along time into one
    dataset (the CMIP files of ecgtools' sample data: two experiments glued in time)."""
    import xarray as xr

    data = tmp_path / "data"
    runs = {"hist": write_run(data / "hist", 0, 2), "scen": write_run(data / "scen", 10, 2)}
    for name, files in runs.items():
        for path in files:  # tas_0000.nc -> tas_hist_0000.nc: the experiment in the name only
            os.rename(path, path.replace("tas_", f"tas_{name}_"))
        runs[name] = [p.replace("tas_", f"tas_{name}_") for p in files]
    cat = tmp_path / "cat"
    done = scan_and_export(data, cat)
    assert done.returncode == 0, done.stderr
    assert "split into 2 datasets" in done.stderr and "named apart" in done.stderr, done.stderr
    for name, files in runs.items():
        group = f"historical.toy-model.tas_{name}_{os.path.basename(files[0]).split('_')[-1][:-3]}"
        _repo, ours = open_group(str(cat) + ".icechunk", data, group)
        with ours, mfdataset(files) as theirs:
            xr.testing.assert_identical(ours.load(), theirs.load())
    datastore = me.open_catalog(str(cat))
    assert sorted(datastore.df.groupby("dataset")["path"].count()) == [2, 2]
    # one at a time: to_dataset_dict opens them from threads, where netCDF4 crashes the process (xarray #9779)
    assert {len(datastore[key].to_dask().time) for key in datastore.keys()} == {2 * STEPS}


def test_a_run_in_s3_becomes_a_virtual_dataset_read_with_the_users_credentials(tmp_path):
    """A run uploaded to moto's S3, scanned and exported with the scan's storage options: the repository names the
    bucket's endpoint (never the credentials), its chunks are read from the bucket with the credentials the reader
    gives, and it equals open_mfdataset of the same files; an object replaced since the export is refused."""
    import json

    import xarray as xr
    from servers import s3_server, upload

    files = write_run(tmp_path / "data", 0, 6)
    with s3_server() as options:
        upload(options, "virtual-run", {f"run/{os.path.basename(p)}": p for p in files})
        creds = tmp_path / "storage.json"
        creds.write_text(json.dumps(options))
        cat = tmp_path / "cat"
        for cmd in (["scan", "s3://virtual-run/run", "-o", str(cat), "--references", "-q"],
                    ["export", str(cat), "--to", "icechunk"]):
            done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", *cmd, "--storage-options", f"@{creds}"],
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr
        repo_files = [p for p in (tmp_path / "cat.icechunk").rglob("*") if p.is_file()]
        assert repo_files and not any(options["secret"].encode() in p.read_bytes() for p in repo_files)
        secret = icechunk.s3_static_credentials(access_key_id=options["key"], secret_access_key=options["secret"])
        repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(tmp_path / "cat.icechunk")),
                                        authorize_virtual_chunk_access=icechunk.containers_credentials({"s3://virtual-run/": secret}))
        ours = xr.open_zarr(repo.readonly_session("main").store, group="historical.toy-model", consolidated=False)
        with ours, mfdataset(files) as theirs:
            xr.testing.assert_identical(ours.load(), theirs.load())
        write_run(tmp_path / "other", 3, 1, shift=9.0)
        upload(options, "virtual-run", {"run/tas_0003.nc": tmp_path / "other" / "tas_0003.nc"})  # a new ETag
        ours = xr.open_zarr(repo.readonly_session("main").store, group="historical.toy-model", consolidated=False)
        with pytest.raises(Exception, match="has changed"):
            ours["tas"].isel(time=slice(3 * STEPS, 4 * STEPS)).load()


def test_a_file_of_many_variables_and_a_catalog_of_many_datasets_export_in_reads_proportional_to_them(tmp_path, monkeypatch):
    """netcdf-c's ref_hdf5_compat1.nc holds 2,000 variables; a catalog of real files of every kind makes hundreds of
    datasets of one file each. The export listed the group's arrays once per variable and the repository's groups once
    per dataset, each listing a read of every node's metadata: such a file did not export in 5 minutes. Counted in the
    Icechunk store's own reads: a few per variable and per dataset now."""
    import netCDF4

    data = tmp_path / "data"
    data.mkdir()
    for i in range(30):  # 30 datasets of one file each (no time to join along), the first of 300 variables
        with netCDF4.Dataset(data / f"f{i:02d}.nc", "w") as ds:
            ds.createDimension("x", 4)
            for v in range(300 if i == 0 else 2):
                ds.createVariable(f"v{v:03d}", "f4", ("x",))[:] = np.arange(4) + v
    cat = tmp_path / "cat"
    me.scan(str(data), str(cat), references=True, progress=False)
    reads = []
    get = icechunk.IcechunkStore.get

    async def counted(self, *args, **kwargs):
        reads.append(args[0] if args else None)
        return await get(self, *args, **kwargs)

    monkeypatch.setattr(icechunk.IcechunkStore, "get", counted)
    me.export(str(cat), "icechunk", str(tmp_path / "repo"))
    variables = 300 + 29 * 2
    assert len(reads) <= 10 * (variables + 30), len(reads)
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(tmp_path / "repo")))
    import zarr

    root = zarr.open_group(repo.readonly_session("main").store, mode="r")
    assert len(list(root.group_keys())) == 30
    assert max(len(list(root[g].array_keys())) for g in root.group_keys()) == 300
