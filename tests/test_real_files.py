"""Real files nobody here wrote, scanned as a user would, checked file by file against the peers' tools.

Every file that h5ls, ncdump or ffprobe reads must give a successful row,
and that row must agree with the peer: names, shapes, datatypes,
dimensions, attributes, containers, codecs, durations, stream counts.
"""

from __future__ import annotations

import json
import os

import peers
import public_corpus
import pytest

from metaextract_dask import reference_checksum, scan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def corpus():
    folder = os.path.join(public_corpus.cache_dir(), "corpus-v1")
    return folder, public_corpus.build(folder)


@pytest.fixture(scope="session")
def real_catalog(tmp_path_factory):
    return str(tmp_path_factory.mktemp("real") / "catalog")


@pytest.fixture(scope="session")
def scanned(corpus, real_catalog):
    """The whole corpus scanned with the default settings (sandbox, checksum) into ``real_catalog``."""
    folder, files = corpus
    catalog = real_catalog
    wanted = {p for paths in files.values() for p in paths}
    frame = scan(folder, catalog, workers=2, progress=False)
    frame = frame[frame["path"].isin(wanted)]
    return files, {row.path: row for row in frame.itertuples()}


def test_the_corpus_is_big_and_varied(corpus):
    _, files = corpus
    assert len(files["hdf5"]) >= 45 and len(files["netcdf"]) >= 15 and len(files["media"]) >= 40
    assert sum(map(len, files.values())) >= 100
    containers = {peers.ffprobe(p)["format"]["format_name"] for p in files["media"]}
    assert len(containers) >= 8, containers


def test_every_file_a_peer_reads_succeeds(scanned):
    files, rows = scanned
    expected = [p for paths in files.values() for p in paths]
    assert sorted(rows) == sorted(expected)
    failed = {p: rows[p].error for p in expected if not rows[p].success}
    assert not failed, f"{len(failed)} of {len(expected)} real files failed: {failed}"
    for path, row in rows.items():
        assert json.loads(row.metadata)["path"] == path
        assert row.attempts == 1


def compare_hdf5(record: dict, path: str) -> list[str]:
    peer = peers.h5ls(path)
    problems = []
    groups = {p for p, o in peer.items() if o["kind"] == "Group"}
    datasets = {p: o for p, o in peer.items() if o["kind"] == "Dataset"}
    if set(record["groups"]) != groups:
        problems.append(f"groups differ: {sorted(set(record['groups']) ^ groups)}")
    ours = {d["name"]: d for d in record["datasets"]}
    if set(ours) != set(datasets):
        problems.append(f"datasets differ: {sorted(set(ours) ^ set(datasets))}")
    for name in set(ours) & set(datasets):
        mine, theirs = ours[name], datasets[name]
        if theirs["alias"]:
            continue
        if theirs["shape"] is not None and mine["shape"] != theirs["shape"]:
            problems.append(f"{name}: shape {mine['shape']} vs {theirs['shape']}")
        kind, size = peers.h5ls_type(theirs["type"])
        if mine["datatype"]["class"] != kind:
            problems.append(f"{name}: datatype class {mine['datatype']['class']} vs h5ls {theirs['type']}")
        if size is not None and mine["datatype"]["size"] != size:
            problems.append(f"{name}: datatype size {mine['datatype']['size']} vs h5ls {theirs['type']}")
        if set(mine["attrs"]) != set(theirs["attrs"]):
            problems.append(f"{name}: attributes {sorted(mine['attrs'])} vs {sorted(theirs['attrs'])}")
    group_attrs = {"/": record["attrs"], **{g: v["attrs"] for g, v in record.get("group_attrs", {}).items()}}
    for g in groups:
        if peer[g]["alias"]:  # h5ls lists a second hard link to a group without its attributes
            continue
        if set(group_attrs.get(g, {})) != set(peer[g]["attrs"]):
            problems.append(f"{g}: group attributes {sorted(group_attrs.get(g, {}))} vs {sorted(peer[g]['attrs'])}")
    return problems


def compare_netcdf(record: dict, path: str) -> list[str]:
    peer = peers.ncdump(path)
    problems = []
    if record["dimensions"] != peer["dimensions"]:
        problems.append(f"dimensions {record['dimensions']} vs {peer['dimensions']}")
    if set(record["variables"]) != set(peer["variables"]):
        problems.append(f"variables differ: {sorted(set(record['variables']) ^ set(peer['variables']))}")
    for name in set(record["variables"]) & set(peer["variables"]):
        mine, theirs = record["variables"][name], peer["variables"][name]
        if mine["dims"] != theirs["dims"]:
            problems.append(f"{name}: dims {mine['dims']} vs {theirs['dims']}")
        expected = peers.NC_TYPES.get(theirs["type"])
        if expected is not None and mine["dtype"] != expected:
            problems.append(f"{name}: dtype {mine['dtype']} vs ncdump {theirs['type']}")
        if set(mine["attrs"]) != theirs["attrs"]:
            problems.append(f"{name}: attributes {sorted(mine['attrs'])} vs {sorted(theirs['attrs'])}")
    if set(record["attrs"]) != peer["attrs"]:
        problems.append(f"global attributes {sorted(record['attrs'])} vs {sorted(peer['attrs'])}")
    if record["groups"] != peer["groups"]:
        problems.append(f"groups {record['groups']} vs {peer['groups']}")
    return problems


def compare_media(record: dict, path: str) -> list[str]:
    peer = peers.ffprobe(path)
    problems = []
    fmt = peer["format"]
    if record["container"] != fmt["format_name"]:
        problems.append(f"container {record['container']} vs {fmt['format_name']}")
    if len(record["streams"]) != len(peer["streams"]):
        problems.append(f"{len(record['streams'])} streams vs {len(peer['streams'])}")
    for mine, theirs in zip(record["streams"], peer["streams"]):
        for key in ("codec_type", "codec_name", "width", "height", "sample_rate", "channels"):
            if key in theirs and str(mine.get(key)) != str(theirs[key]):
                problems.append(f"stream {theirs['index']}: {key} {mine.get(key)} vs {theirs[key]}")
    duration = float(fmt["duration"]) if "duration" in fmt else None
    if duration != record["duration"] and not (duration is not None and abs(duration - (record["duration"] or -1)) < 1e-6):
        problems.append(f"duration {record['duration']} vs {duration}")
    return problems


def test_rows_agree_with_h5ls_ncdump_and_ffprobe(scanned):
    files, rows = scanned
    compare = {"hdf5": compare_hdf5, "netcdf": compare_netcdf, "media": compare_media}
    disagreements = {}
    checked = 0
    for kind, paths in files.items():
        for path in paths:
            record = json.loads(rows[path].metadata)
            problems = compare[kind](record[record["reader"]], path)  # the reader's own section
            checked += 1
            if problems:
                disagreements[os.path.relpath(path, public_corpus.cache_dir())] = problems
    assert checked >= 100
    assert not disagreements, json.dumps(disagreements, indent=1)[:6000]


def test_every_format_has_its_checksum(scanned):
    files, rows = scanned
    for paths in files.values():
        for path in paths[:8]:
            assert rows[path].checksum == reference_checksum(path), path


def test_the_variables_table_agrees_with_h5ls_and_ncdump(scanned, real_catalog):
    """One row per dataset h5ls lists (same shapes) and per variable ncdump lists (same dimensions), for every real file."""
    from metaextract_dask import read_variables

    files, _ = scanned
    table = read_variables(real_catalog)
    by_file = {path: group for path, group in table.groupby("path")}
    problems = []
    for path in files["hdf5"]:
        theirs = {p: o for p, o in peers.h5ls(path).items() if o["kind"] == "Dataset"}
        mine = by_file[path].set_index("name") if path in by_file else None
        names = set(mine.index) if mine is not None else set()
        if names != set(theirs):
            problems.append(f"{path}: datasets differ: {sorted(names ^ set(theirs))}")
            continue
        for name, o in theirs.items():
            if not o["alias"] and o["shape"] is not None and list(mine.loc[name, "shape"]) != o["shape"]:
                problems.append(f"{path}:{name}: shape {list(mine.loc[name, 'shape'])} vs h5ls {o['shape']}")
    for path in files["netcdf"]:
        theirs = peers.ncdump(path)["variables"]
        mine = by_file[path].set_index("name") if path in by_file else None
        names = set(mine.index) if mine is not None else set()
        if names != set(theirs):
            problems.append(f"{path}: variables differ: {sorted(names ^ set(theirs))}")
            continue
        for name, v in theirs.items():
            if list(mine.loc[name, "dims"]) != v["dims"]:
                problems.append(f"{path}:{name}: dims {list(mine.loc[name, 'dims'])} vs ncdump {v['dims']}")
    assert not problems, problems[:20]


def covers_1990s_between_30_and_60_north(path: str) -> bool:
    """The oracle, from xarray's own CF decoding: a time coordinate reaching into 1990..2000, latitudes into 30..60 N."""
    import numpy as np
    import xarray as xr

    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_dataset(path, decode_times=coder, decode_timedelta=False, mask_and_scale=True) as ds:
        lats = [v for v in ds.variables.values() if v.attrs.get("standard_name") == "latitude"
                or str(v.attrs.get("units", "")).lower() in ("degrees_north", "degree_north", "degrees_n", "degree_n")]
        times = [v for n, v in ds.variables.items() if (v.attrs.get("standard_name") == "time" or v.attrs.get("axis") == "T" or n == "time")
                 and v.dtype == object and v.size]
        if not lats or not times:
            return False
        lo = min(float(np.nanmin(v.values)) for v in lats)
        hi = max(float(np.nanmax(v.values)) for v in lats)
        t = times[0].values.ravel()
        first, last = min(t), max(t)
        return ((first.year, first.month, first.day) <= (2000, 12, 31) and (last.year, last.month, last.day) >= (1990, 1, 1)
                and lo <= 60 and hi >= 30)


def test_the_questions_of_a_climate_user_are_one_expression_each(scanned, real_catalog):
    """Issue 18's questions, asked of the catalog of real files, each answered right (the oracles read the files directly)."""
    import h5py

    from metaextract_dask import read_catalog, read_variables

    files, rows = scanned
    df, v = read_catalog(real_catalog), read_variables(real_catalog)
    df, v = df[df.path.isin(rows)], v[v.path.isin(rows)]
    assert str(df.time_start.dtype).startswith("datetime64") and str(df.time_end.dtype).startswith("datetime64")

    # which NetCDF files cover 1990 to 2000 between 30 and 60 N
    q1 = df[df.format.str.startswith("netcdf") & (df.time_start <= "2000-12-31") & (df.time_end >= "1990-01-01")
            & (df.lat_min <= 60) & (df.lat_max >= 30)]
    expected = {p for p in files["netcdf"] if covers_1990s_between_30_and_60_north(p)}
    assert len(expected) >= 2 and set(q1.path) == expected

    # every HDF5 dataset compressed with gzip
    q2 = v[(v.reader == "hdf5") & v.filters.map(lambda f: "gzip" in list(f))]
    gzipped = set()
    for path in df.loc[df.reader == "hdf5", "path"]:
        with h5py.File(path, "r") as f:
            f.visititems(lambda n, o, path=path: gzipped.add((path, "/" + n))
                         if isinstance(o, h5py.Dataset) and o.compression == "gzip" else None)
    assert len(gzipped) >= 5 and set(zip(q2.path, q2.name)) == gzipped

    # every file with variable tos (CMIP's sea surface temperature)
    q3 = df[df.variables.map(lambda names: names is not None and "tos" in list(names))]
    import netCDF4

    with_tos = set()
    for p in files["netcdf"]:
        with netCDF4.Dataset(p) as ds:
            if "tos" in ds.variables:
                with_tos.add(p)
    assert len(with_tos) == 3 and set(q3.path) == with_tos

    # videos longer than 5 s (no real file here runs past 10 s)
    q4 = df[df.width.notna() & (df.media_duration > 5)]
    long_videos = {p for p in files["media"] if any(s["codec_type"] == "video" for s in peers.ffprobe(p)["streams"])
                   and float(peers.ffprobe(p)["format"].get("duration", 0)) > 5}
    assert len(long_videos) >= 2 and set(q4.path) == long_videos

    # and total size by format, as before
    assert df.groupby("format")["size"].sum().sum() == sum(os.path.getsize(p) for p in df.path)
