"""Zarr stores as one row each, against zarr-python's own reading of them.

The stores: the compatibility fixtures zarr-python 2 ships in its source (zarr 2.18.7's ``fixture/``: 24 groups of
seven arrays each in every compressor, data type and memory order zarr 2 wrote over its releases, flat and nested
chunk keys, arrays as the store's root, UTF-8 attributes), v3 stores that zarr-python 3 writes from them (sharded,
and consolidated), and CF stores xarray writes from Iris' sample netCDF files (v2 and v3), whose rows must say what
the netCDF rows of the same data say. Every array agrees with zarr-python on shape, chunks, data type, fill value,
codecs, dimension names and attributes, and its statistics with the values zarr-python (or xarray, for CF stores)
reads.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tarfile

import numpy as np
import pytest
from public_corpus import cache_dir, fetch_sdist, fetch_wheels, unpack_data

import metaextract_dask as me

pytestmark = pytest.mark.integration

zarr = pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """zarr 2.18.7's fixture stores, each a store of its own."""
    archive = fetch_sdist("zarr", "2.18.7", os.path.join(cache_dir(), "sdists"))
    folder = tmp_path_factory.mktemp("zarr-fixtures")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/fixture/" in m.name and (m.isfile() or m.isdir())]
        tar.extractall(folder, members=members, filter="data")
    root = glob.glob(str(folder / "*" / "fixture"))[0]
    stores = folder / "stores"
    stores.mkdir()
    for sub in sorted(os.listdir(root)):
        if os.path.isdir(os.path.join(root, sub)):
            shutil.copytree(os.path.join(root, sub), stores / f"v2_{sub}")
    return stores


def write_v3(src: str, dst: str, shards: bool = False, consolidated: bool = False) -> None:
    """A v3 copy of a v2 store, written by zarr-python 3 (every array it can open, its chunks, attributes and values)."""
    source = zarr.open_group(src, mode="r")
    out = zarr.open_group(dst, mode="w", zarr_format=3, attributes=dict(source.attrs))
    for name, arr in source.arrays():
        if not np.issubdtype(arr.dtype, np.number):
            continue
        chunks = arr.chunks
        kwargs = {"shards": tuple(c * 2 for c in chunks)} if shards else {}
        out.create_array(name, data=arr[...], chunks=chunks, attributes=dict(arr.attrs), **kwargs)
    if consolidated:
        zarr.consolidate_metadata(dst)


@pytest.fixture(scope="module")
def stores(fixtures, tmp_path_factory):
    """Every store of the corpus (folders), v2 fixtures, v3 copies and xarray's CF stores."""
    import xarray as xr

    out = sorted(str(p) for p in fixtures.iterdir())
    for sub, shards, consolidated in (("v2_1", False, False), ("v2_5", True, False), ("v2_20", False, True)):
        dst = str(fixtures / f"v3_{sub[3:]}{'_sharded' if shards else ''}{'_consolidated' if consolidated else ''}")
        write_v3(str(fixtures / sub), dst, shards, consolidated)
        out.append(dst)
    iris = [p for w in fetch_wheels(os.path.join(cache_dir(), "wheels")) if "iris_sample_data" in w
            for p in unpack_data(w, str(tmp_path_factory.mktemp("iris")))]
    picked = [p for p in iris if os.path.basename(p).endswith(("E1_north_america.nc", "A1B_north_america.nc"))]
    assert len(picked) == 2, iris
    cf_folder = tmp_path_factory.mktemp("cf")
    for path in picked:
        for fmt in (2, 3):
            dst = str(fixtures / f"cf_v{fmt}_{os.path.basename(path).split('__')[-1][:-3]}.zarr")
            with xr.open_dataset(path) as ds:
                ds.to_zarr(dst, zarr_format=fmt, consolidated=fmt == 2, mode="w")
            out.append(dst)
        shutil.copy(path, cf_folder / os.path.basename(path).split("__")[-1])
    return {"stores": out, "netcdf": sorted(str(p) for p in cf_folder.iterdir())}


def zarr_python(path: str) -> dict[str, dict]:
    """Every array of a store as zarr-python 3 reads it: its metadata and the statistics of its values."""
    import xarray as xr

    root = zarr.open(path, mode="r")
    if isinstance(root, zarr.Array):
        found = {"/": root}
    else:
        try:
            found = {k: v for k, v in root.members(max_depth=None) if isinstance(v, zarr.Array)}
        except TypeError:  # a member zarr-python 3 cannot open (zarr 2's string arrays): the others one by one
            found = {}
            for name in sorted(os.listdir(path)):
                try:
                    found[name] = root[name]
                except (KeyError, TypeError):
                    continue
    cf = None
    if path.endswith(".zarr"):
        cf = xr.open_zarr(path, consolidated=None)
    out = {}
    for name, arr in found.items():
        meta = arr.metadata.to_dict()
        attrs = dict(arr.attrs)
        dims = meta.get("dimension_names")
        dims = attrs.pop("_ARRAY_DIMENSIONS", None) if dims is None else dims
        attrs.pop("_ARRAY_DIMENSIONS", None)
        codecs = ([c["name"] for c in meta.get("codecs", []) if c["name"] not in ("bytes", "sharding_indexed")] +
                  [i["name"] for c in meta.get("codecs", []) if c["name"] == "sharding_indexed" for i in c["configuration"]["codecs"]
                   if i["name"] != "bytes"]
                  if meta["zarr_format"] == 3 else
                  [f["id"] for f in meta.get("filters") or []] + ([meta["compressor"]["id"]] if meta.get("compressor") else []))
        entry = {"shape": list(arr.shape), "chunks": list(arr.chunks), "dtype": str(arr.dtype), "attrs": json.loads(json.dumps(attrs, default=str)),
                 "dims": list(dims) if dims is not None else None, "codecs": sorted(codecs)}
        if np.issubdtype(arr.dtype, np.number) and arr.shape:
            values = cf[name].values if cf is not None and name in cf.variables and cf[name].dtype.kind in "fiu" else arr[...]
            if cf is not None and name in cf.variables and cf[name].dtype.kind not in "fiu":
                values = None  # decoded times: statistics of the numbers stored, as the netCDF reader's
                values = arr[...]
            values = np.asarray(values, dtype="float64").ravel()
            values = values[~np.isnan(values)]
            entry["stats"] = (values.min(), values.max(), values.mean()) if values.size else None
        out[name] = entry
    return out


def test_every_array_agrees_with_zarr_python(stores):
    assert len(stores["stores"]) >= 15
    problems = {}
    for path in stores["stores"]:
        record, _ = me.extract_file(path)
        assert "error" not in record and record["format"] == "zarr", (path, record.get("error"))
        ours, theirs = record["zarr"]["arrays"], zarr_python(path)
        readable = {k: v for k, v in ours.items() if "described from its metadata document" not in " ".join(v.get("warnings", []))}
        found = [] if sorted(readable) == sorted(theirs) else [f"arrays {sorted(readable)} vs {sorted(theirs)}"]
        for name in sorted(set(readable) & set(theirs)):
            a, b = readable[name], theirs[name]
            mine = {"shape": a["shape"], "chunks": a["chunks"], "dtype": a["dtype"], "attrs": a["attrs"], "dims": a["dims"],
                    "codecs": sorted(a["codec_names"])}
            found += [f"{name} {k}: {mine[k]!r} vs {b[k]!r}" for k in mine if mine[k] != b[k]]
            if b.get("stats") is not None:
                s = a.get("stats") or {}
                got = (s.get("min"), s.get("max"), s.get("mean"))
                if None in got or not np.allclose(got, b["stats"], rtol=1e-6):
                    found.append(f"{name} stats: {got} vs {b['stats']}")
        if found:
            problems[os.path.basename(path)] = found
    assert not problems, json.dumps(problems, indent=1, default=str)


def test_stores_zarr_python_cannot_open_are_described_from_their_documents(stores, fixtures):
    """zarr 2 wrote string arrays with a numeric fill value, which zarr-python 3 refuses: the row keeps each array's
    shape, chunks and type from its own ``.zarray``, with a warning naming why."""
    record, _ = me.extract_file(str(fixtures / "v2_14"))
    arrays = record["zarr"]["arrays"]
    assert len(arrays) == 7
    with open(fixtures / "v2_14" / "0" / ".zarray") as f:
        doc = json.load(f)
    assert (arrays["0"]["shape"], arrays["0"]["chunks"], arrays["0"]["dtype"]) == (doc["shape"], doc["chunks"], doc["dtype"])
    assert "zarr-python cannot open it" in arrays["0"]["warnings"][0]


def test_cf_stores_cover_what_their_netcdf_files_cover(stores, tmp_path):
    """A scan of xarray's Zarr copies and of the netCDF files they came from: one row per store, and the same time
    range, box and variables (with units) as the netCDF rows."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for path in stores["stores"]:
        if os.path.basename(path).startswith("cf_"):
            shutil.copytree(path, tree / os.path.basename(path))
    for path in stores["netcdf"]:
        shutil.copy(path, tree)
    me.scan(str(tree), str(tmp_path / "cat"))
    table = me.read_catalog(str(tmp_path / "cat"))
    assert len(table) == 6 and table["success"].all()  # 4 stores and 2 files, not hundreds of chunk files
    columns = ["time_start", "time_end", "calendar", "lat_min", "lat_max", "lon_min", "lon_max"]
    for nc in stores["netcdf"]:
        stem = os.path.basename(nc)[:-3]
        nc_row = table[table["path"].str.endswith(os.path.basename(nc))].iloc[0]
        for fmt in (2, 3):
            row = table[table["path"].str.endswith(f"cf_v{fmt}_{stem}.zarr")].iloc[0]
            assert row["format"] == "zarr" and row["zarr_format"] == fmt and row["consolidated"] == (fmt == 2)
            assert [row[c] for c in columns] == [nc_row[c] for c in columns], (stem, fmt)
            assert sorted(row["variables"]) == sorted(nc_row["variables"])
    variables = me.read_variables(str(tmp_path / "cat"))
    units = lambda rows: {(n, u) for n, u in zip(rows["name"], rows["units"]) if isinstance(u, str) and " since " not in u}  # noqa: E731
    for nc in stores["netcdf"]:
        stem = os.path.basename(nc)[:-3]
        theirs = units(variables[variables["path"].str.endswith(os.path.basename(nc))])
        assert ("air_temperature", "K") in theirs
        for fmt in (2, 3):
            assert units(variables[variables["path"].str.endswith(f"cf_v{fmt}_{stem}.zarr")]) == theirs


def test_a_store_is_one_row_that_resumes_and_notices_a_changed_chunk(fixtures, tmp_path):
    """The walk lists a store as one entry (never its chunks); a re-scan with nothing changed extracts nothing; a chunk
    rewritten makes its store's row extracted again, and only it."""
    tree = tmp_path / "tree"
    shutil.copytree(fixtures / "v2_3", tree / "run" / "store_a")
    shutil.copytree(fixtures / "v2_4", tree / "run" / "store_b")
    (tree / "run" / "notes.txt").write_text("a file beside the stores\n")
    cat = str(tmp_path / "cat")
    me.scan(str(tree), cat)
    first = me.read_catalog(cat).set_index("path")
    assert sorted(os.path.basename(p) for p in first.index) == ["notes.txt", "store_a", "store_b"]
    assert first.loc[str(tree / "run" / "store_a"), "size"] == sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tree / "run" / "store_a") for f in fs)
    me.scan(str(tree), cat)
    extracted = lambda: dict(zip(me.read_catalog(cat)["path"], me.read_catalog(cat)["extracted_at"]))  # noqa: E731 - rows in any order
    before = extracted()
    assert before == dict(first["extracted_at"])
    chunk = tree / "run" / "store_b" / "0" / "0"
    data = chunk.read_bytes()
    chunk.write_bytes(data)
    os.utime(chunk, (first.loc[str(tree / "run" / "store_b"), "mtime"] + 10,) * 2)
    me.scan(str(tree), cat)
    after = extracted()
    assert sorted(os.path.basename(p) for p in after if after[p] != before[p]) == ["store_b"]


def test_a_chunk_linked_outside_the_store_is_never_read(fixtures, tmp_path):
    """A chunk that is a symbolic link to a file outside the store (here a copy of a real chunk of other values, which
    would decode) is refused: the record names it, and the statistics read fill values in its place."""
    store = tmp_path / "store"
    shutil.copytree(fixtures / "v2_1", store)
    outside = tmp_path / "outside_chunk"
    chunk = store / "0" / "0"
    shutil.copy(store / "0" / "5", outside)  # other values, the same encoding
    chunk.unlink()
    chunk.symlink_to(outside)
    record, _ = me.extract_file(str(store))
    assert "error" not in record
    assert any("0/0:" in w and "not followed" in w for w in record["zarr"]["warnings"]), record["zarr"]["warnings"]
    expected = zarr.open_array(str(fixtures / "v2_1" / "0"), mode="r")[...]
    expected[:100] = 0  # the refused chunk reads as the fill value
    assert record["zarr"]["arrays"]["0"]["stats"]["mean"] == pytest.approx(expected.mean())


def test_a_pickle_codec_is_never_run(tmp_path):
    """An object array whose filter is numcodecs' pickle, and a chunk that would run code when unpickled: the store is
    described, that array is not read, nothing runs, and ``me.open`` refuses it."""
    import pickle

    store = tmp_path / "store"
    (store / "objects").mkdir(parents=True)
    (store / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    (store / "objects" / ".zarray").write_text(json.dumps({"zarr_format": 2, "shape": [2], "chunks": [2], "dtype": "|O",
                                                           "compressor": None, "fill_value": None, "order": "C",
                                                           "filters": [{"id": "pickle", "protocol": 4}]}))
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (store / "objects" / "0").write_bytes(pickle.dumps(Payload()))
    record, _ = me.extract_file(str(store))
    entry = record["zarr"]["arrays"]["objects"]
    assert "would run code from the store" in " ".join(entry["warnings"]) and "stats" not in entry
    cat = str(tmp_path / "cat")
    me.scan(str(store), cat)
    with pytest.raises(ValueError, match="would run code"):
        me.open(cat, str(store))
    assert not marker.exists()


def test_open_gives_what_xarray_gives(stores, tmp_path):
    """``me.open`` of a CF store's row equals ``xarray.open_zarr`` of it."""
    import xarray as xr

    path = next(p for p in stores["stores"] if os.path.basename(p).startswith("cf_v3_"))
    cat = str(tmp_path / "cat")
    me.scan(path, cat)
    with me.open(cat, path) as ours, xr.open_zarr(path) as theirs:
        xr.testing.assert_identical(ours.load(), theirs.load())


def test_the_esm_export_joins_a_run_of_stores_and_leaves_out_a_store_with_a_link(tmp_path):
    """A run of three v3 stores split in time, one global attribute: ``open_catalog(...).to_dataset_dict()`` joins them
    along time (before: intake-esm's KeyError for a single group key, and zarr's refusal of storage options for a local
    path); a fourth store holding a symbolic link is left out with a notice (zarr-python's own store would follow it)."""
    import pandas as pd
    import xarray as xr

    data = tmp_path / "data"
    for i in range(4):
        t = pd.date_range(f"200{i}-01-01", periods=4, freq="D")
        ds = xr.Dataset({"tas": (("time", "lat"), np.arange(12, dtype="f4").reshape(4, 3) + 100 * i, {"units": "K"})},
                        coords={"time": t, "lat": [10.0, 20.0, 30.0]}, attrs={"source": "model"})
        ds.to_zarr(data / f"run{i}.zarr", zarr_format=3, consolidated=True)
    chunk = next(p for p in (data / "run3.zarr" / "tas").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.unlink()
    chunk.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").write_bytes(b"not the store's")
    cat = str(tmp_path / "cat")
    me.scan(str(data), cat)
    with pytest.warns(RuntimeWarning, match="run3.zarr: points outside itself"):
        datastore = me.open_catalog(cat)
    assert len(datastore.df) == 3
    (joined,) = datastore.to_dataset_dict(progressbar=False).values()
    assert joined.sizes["time"] == 12
    np.testing.assert_array_equal(joined["tas"].values, np.concatenate([np.arange(12, dtype="f4").reshape(4, 3) + 100 * i for i in range(3)]))


def test_the_stac_export_gives_a_store_its_media_type(stores, tmp_path):
    """A STAC Item per store, its asset typed ``application/vnd.zarr`` (with ``version=3`` for v3) and no
    ``file:checksum`` (a store is many files; before: IsADirectoryError from the export)."""
    tree = tmp_path / "tree"
    for path in stores["stores"]:
        if os.path.basename(path).startswith("cf_"):
            shutil.copytree(path, tree / os.path.basename(path))
    me.scan(str(tree), str(tmp_path / "cat"))
    out = me.export(str(tmp_path / "cat"), "stac")
    items = [json.load(open(p)) for p in glob.glob(os.path.join(os.path.dirname(out), "**", "*.json"), recursive=True) if p != out]
    assert len(items) == 4
    for item in items:
        asset = item["assets"]["data"]
        v3 = "cf_v3_" in asset["href"]
        assert asset["type"] == ("application/vnd.zarr; version=3" if v3 else "application/vnd.zarr") and "file:checksum" not in asset
        assert item["bbox"] and -180 <= item["bbox"][0] < item["bbox"][2] <= 180
