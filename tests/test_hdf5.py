"""The HDF5 reader agrees with h5ls / h5dump, and its statistics with numpy."""

from __future__ import annotations

import re
import subprocess

import h5py
import numpy as np
import pytest

from metaextract_dask import StreamingConfig, extract_file

FULL = ["sequential", "windowed", "adaptive"]
H5T = {"float64": "H5T_IEEE_F64LE", "float32": "H5T_IEEE_F32LE", "int32": "H5T_STD_I32LE", "int16": "H5T_STD_I16LE",
       "uint8": "H5T_STD_U8LE", "int64": "H5T_STD_I64LE", "uint16": "H5T_STD_U16LE"}


def add_unavailable_filter_dataset(f, name):
    """A dataset compressed with a filter (Blosc, 32001) this machine does not have."""
    from h5py import h5d, h5p, h5s, h5t, h5z

    from metaextract_dask.readers.hdf5 import trust_plugins_only_from_config

    trust_plugins_only_from_config()  # else netCDF4's Blosc plugin, built for another HDF5, gets loaded

    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_chunk((4,))
    dcpl.set_filter(32001, h5z.FLAG_OPTIONAL, ())
    dsid = h5d.create(f.id, name.encode(), h5t.NATIVE_FLOAT, h5s.create_simple((8,)), dcpl=dcpl)
    dsid.write_direct_chunk((0,), b"\x00" * 16, filter_mask=0)


@pytest.fixture(scope="module")
def h5file(tmp_path_factory):
    path = tmp_path_factory.mktemp("h5") / "sample.h5"
    rng = np.random.default_rng(3)
    data = {
        "/grid/temperature": rng.normal(280, 10, (300, 200)).astype("f4"),
        "/grid/pressure": rng.normal(1000, 5, (40, 30, 20)),
        "/counts": rng.integers(-1000, 1000, 250_000).astype("i4"),
        "/grid/deep/mask": rng.integers(0, 2, (64, 64)).astype("u1"),
        "/series": np.arange(5000, dtype="i8"),
    }
    data["/grid/temperature"][5, 7] = np.nan
    data["/grid/temperature"][10, :3] = np.nan
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "metaextract test"
        f.attrs["version"] = 3
        f.create_dataset("/grid/temperature", data=data["/grid/temperature"], chunks=(32, 50), compression="gzip", compression_opts=5)
        f["/grid/temperature"].attrs["units"] = "K"
        f.create_dataset("/grid/pressure", data=data["/grid/pressure"], chunks=(10, 10, 10), shuffle=True, compression="lzf")
        f.create_dataset("/counts", data=data["/counts"])  # contiguous
        f.create_dataset("/grid/deep/mask", data=data["/grid/deep/mask"], chunks=(16, 16), fillvalue=7)
        f.create_dataset("/series", data=data["/series"], maxshape=(None,), chunks=(512,))
        f.create_dataset("/names", data=np.array([b"alpha", b"beta"]))
        f.create_group("/empty_group")
        f["/link_soft"] = h5py.SoftLink("/grid/temperature")
        f["/link_external"] = h5py.ExternalLink("elsewhere.h5", "/data")
        add_unavailable_filter_dataset(f, "blosc_data")
    return str(path), data


def h5ls(path):
    out = subprocess.run(["h5ls", "-r", path], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+(Group|Dataset|Soft Link|External Link)\s*(\{.*\})?", line)
        if m:
            entries[m.group(1)] = (m.group(2), m.group(3))
    return entries


@pytest.mark.integration
def test_structure_agrees_with_h5ls(h5file):
    path, _ = h5file
    record = extract_file(path)[0]
    assert record["reader"] == "hdf5"
    peer = h5ls(path)
    assert set(record["hdf5"]["groups"]) == {n for n, (kind, _) in peer.items() if kind == "Group"}
    ours = {d["name"]: d for d in record["hdf5"]["datasets"]}
    assert set(ours) == {n for n, (kind, _) in peer.items() if kind == "Dataset"}
    for name, (kind, dims) in peer.items():
        if kind == "Dataset":
            shape = [int(x.split("/")[0]) for x in dims.strip("{}").split(",")]
            assert ours[name]["shape"] == shape
    links = {link["name"]: link for link in record["hdf5"]["links"]}
    assert links["/link_soft"] == {"name": "/link_soft", "type": "soft", "target": "/grid/temperature"}
    assert peer["/link_soft"] == ("Soft Link", "{/grid/temperature}")
    assert links["/link_external"]["file"] == "elsewhere.h5" and peer["/link_external"][0] == "External Link"
    assert record["hdf5"]["attrs"] == {"title": "metaextract test", "version": 3}


@pytest.mark.integration
def test_dtypes_and_attributes_agree_with_h5dump(h5file):
    path, data = h5file
    ours = {d["name"]: d for d in extract_file(path)[0]["hdf5"]["datasets"]}
    for name, array in data.items():
        header = subprocess.run(["h5dump", "-H", "-d", name, path], capture_output=True, text=True, check=True).stdout
        assert f"DATATYPE  {H5T[ours[name]['dtype']]}" in header
        assert ours[name]["dtype"] == str(array.dtype)
        assert set(re.findall(r'ATTRIBUTE "([^"]+)"', header)) == set(ours[name]["attrs"])
    temp = ours["/grid/temperature"]
    assert temp["chunks"] == [32, 50] and temp["compression"] == "gzip" and temp["compression_opts"] == 5
    assert ours["/grid/deep/mask"]["fillvalue"] == 7
    assert ours["/counts"]["layout"] == "contiguous" and ours["/counts"]["chunks"] is None


@pytest.mark.integration
@pytest.mark.parametrize("strategy", FULL)
def test_statistics_equal_numpy(h5file, strategy):
    path, data = h5file
    record = extract_file(path, StreamingConfig(strategy=strategy, chunk_size=256 * 1024, streaming_threshold=1024))
    ours = {d["name"]: d for d in record[0]["hdf5"]["datasets"]}
    for name, array in data.items():
        stats = ours[name]["stats"]
        values = array[~np.isnan(array)] if array.dtype.kind == "f" else array
        assert stats["exact"] is True
        assert stats["min"] == values.min() and stats["max"] == values.max()
        assert stats["mean"] == pytest.approx(values.astype("f8").mean(), rel=1e-9)
        assert stats["count"] == values.size
        assert stats["nan_count"] == int(np.isnan(array).sum()) if array.dtype.kind == "f" else stats["nan_count"] == 0
        fill = 7 if name == "/grid/deep/mask" else 0
        assert stats["fill_count"] == int((values == fill).sum())


@pytest.mark.integration
def test_sampled_statistics_are_marked_approximate(h5file):
    path, data = h5file
    record = extract_file(path, StreamingConfig(strategy="sample_based", chunk_size=64 * 1024, sample_count=2))[0]
    assert record["streaming"]["exact"] is False
    stats = [d.get("stats") for d in record["hdf5"]["datasets"] if d.get("stats")]
    assert stats and any(s["exact"] is False for s in stats)
    not_read = [d for d in record["hdf5"]["datasets"] if "stats" not in d]
    assert all("stats_note" in d for d in not_read)


@pytest.mark.integration
def test_unavailable_filter_keeps_structure_with_a_note(h5file):
    path, _ = h5file
    ours = {d["name"]: d for d in extract_file(path)[0]["hdf5"]["datasets"]}
    blosc = ours["/blosc_data"]
    assert blosc["shape"] == [8] and blosc["chunks"] == [4]
    assert blosc["filters"][0]["id"] == 32001 and blosc["filters"][0]["available"] is False
    assert "not available here" in blosc["stats_note"] and "stats" not in blosc
    assert ours["/names"]["stats_note"].startswith("no statistics for dtype")


@pytest.mark.unit
def test_plugins_load_only_from_trusted_folders():
    import os

    import netCDF4  # noqa: F401 - it points HDF5_PLUGIN_PATH at its own plugins
    from h5py import h5pl

    from metaextract_dask.readers.hdf5 import trust_plugins_only_from_config

    assert os.environ.get("HDF5_PLUGIN_PATH")
    assert trust_plugins_only_from_config() == ()
    assert h5pl.size() == 0


@pytest.mark.unit
def test_large_storage_chunk_count_makes_few_tasks(tmp_path):
    path = tmp_path / "many_chunks.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(2_000_000, dtype="f4"), chunks=(100,))  # 20,000 storage chunks
    record = extract_file(path, StreamingConfig(strategy="windowed"))[0]
    assert record["streaming"]["tasks"] <= StreamingConfig().max_tasks_per_file
    stats = record["hdf5"]["datasets"][0]["stats"]
    assert stats["cells_read"] == stats["cells_total"] == 20_000 and stats["max"] == 1_999_999


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["netcdf4", "hdf5"])
def test_a_small_file_is_opened_and_walked_once_by_h5py_within_its_task(tmp_path, kind, monkeypatch):
    """The guard, the reader and the references of a small HDF5-based file share one h5py open and one walk of its
    objects (each opened and walked it again: up to 2 opens and 4 walks, a third of a small file's parsing). Counted
    on the real calls; the record is the same."""
    from dataclasses import replace

    import netCDF4

    from metaextract_dask.execution.batch import extract_metadata
    from metaextract_dask.readers import hdf5

    path = str(tmp_path / ("a.nc" if kind == "netcdf4" else "a.h5"))
    if kind == "netcdf4":
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("t", 4)
            ds.createVariable("t", "f8", ("t",))[:] = np.arange(4.0)
            ds.createVariable("v", "f4", ("t",), zlib=True)[:] = np.arange(4.0)
    else:
        with h5py.File(path, "w") as f:
            f.create_group("g").create_dataset("x", data=np.arange(12.0).reshape(3, 4), chunks=(1, 4))
    opens, walks = [], []
    real_open, real_walk = hdf5.open_file, hdf5._objects
    monkeypatch.setattr(hdf5, "open_file", lambda p: opens.append(p) or real_open(p))
    monkeypatch.setattr(hdf5, "_objects", lambda f, problems=None: walks.append(f) or real_walk(f, problems))
    record = extract_metadata(path, replace(StreamingConfig(), references=True))
    assert record["references"]["virtualizable"] is True, record["references"]
    assert record["reader"] == ("netcdf" if kind == "netcdf4" else "hdf5")
    assert len(opens) == 1 and len(walks) == 1, (opens, walks)


@pytest.mark.integration
def test_a_dataset_of_a_committed_type_agrees_with_h5ls(tmp_path):
    """A compound type committed to the file (netcdf-c's h5_test/ref_tst_h_compounds.h5 holds one): h5ls -v names the
    type's address before it ('shared-1:800 struct {'); the check against h5ls reads past it, and our record says
    compound, of the type's size."""
    import peers
    from test_real_files import compare_hdf5

    path = str(tmp_path / "committed.h5")
    obs = np.dtype([("day", "i1"), ("elev", "<i2"), ("count", "<i4"), ("relhum", "<f4"), ("time", "<f8")])
    with h5py.File(path, "w") as f:
        f["obs_t"] = obs
        f.create_dataset("obs_var", (3,), dtype=f["obs_t"])
    record = extract_file(path)[0]["hdf5"]
    assert peers.h5ls_type(peers.h5ls(path)["/obs_var"]["type"]) == ("compound", obs.itemsize)
    assert compare_hdf5(record, path) == []
