"""The checksum does not depend on strategy, chunk size or where tasks ran."""

from __future__ import annotations

import subprocess

import pytest
from conftest import MiB

from metaextract_dask import StreamingConfig, StreamingStrategy, extract_file, reference_checksum

FULL_SCANS = [
    dict(strategy=StreamingStrategy.SEQUENTIAL, chunk_size=MiB),
    dict(strategy=StreamingStrategy.WINDOWED, chunk_size=MiB, window_size=3),
    dict(strategy=StreamingStrategy.WINDOWED, chunk_size=3 * MiB),
    dict(strategy=StreamingStrategy.WINDOWED, chunk_size=MiB, max_tasks_per_file=8),  # chunk size grows
    dict(strategy=StreamingStrategy.ADAPTIVE),  # one task (below the streaming threshold)
    dict(strategy=StreamingStrategy.ADAPTIVE, streaming_threshold=MiB),  # windowed
]


@pytest.fixture(scope="module")
def odd_file(tmp_path_factory):
    from conftest import write_random

    # not a multiple of the 1 MiB block, so the last block is short
    return write_random(tmp_path_factory.mktemp("ck") / "odd.bin", 9 * MiB + 4321, seed=7)


@pytest.mark.unit
@pytest.mark.parametrize("algorithm", ["xxh3_128", "sha256"])
def test_same_under_every_full_scan_and_equal_to_reference(odd_file, algorithm):
    expected = reference_checksum(odd_file, algorithm)
    values = set()
    for cfg in FULL_SCANS:
        record, _ = extract_file(odd_file, StreamingConfig(checksum=algorithm, **cfg))
        assert record["streaming"]["exact"]
        values.add(record["checksum"]["value"])
    assert values == {expected}


@pytest.mark.integration
def test_same_on_thread_and_process_clusters(odd_file, thread_client, process_client):
    expected = reference_checksum(odd_file)
    for client in (thread_client, process_client):
        for cfg in FULL_SCANS[:4]:
            record, _ = extract_file(odd_file, StreamingConfig(**cfg), client=client)
            assert record["checksum"]["value"] == expected


@pytest.mark.integration
def test_sha256_matches_the_documented_coreutils_recipe(odd_file):
    recipe = f"split -b 1048576 --filter='sha256sum' {odd_file} | cut -d' ' -f1 | xxd -r -p | sha256sum"
    shell = subprocess.run(["bash", "-c", recipe], capture_output=True, text=True, check=True).stdout.split()[0]
    record, _ = extract_file(odd_file, StreamingConfig(checksum="sha256", strategy="windowed"))
    assert record["checksum"]["value"] == shell


@pytest.mark.unit
def test_checksum_changes_with_one_byte(tmp_path, random_file):
    path = random_file(3 * MiB)
    before = extract_file(path)[0]["checksum"]["value"]
    with open(path, "r+b") as f:
        f.seek(2 * MiB + 17)
        byte = f.read(1)
        f.seek(2 * MiB + 17)
        f.write(bytes([byte[0] ^ 1]))
    assert extract_file(path)[0]["checksum"]["value"] != before


@pytest.mark.unit
def test_sampled_scan_says_checksum_is_partial(random_file):
    path = random_file(40 * MiB)
    record, _ = extract_file(path, StreamingConfig(strategy="sample_based", sample_count=4, chunk_size=MiB))
    assert record["checksum"]["value"] is None
    assert "partial" in record["checksum"]["note"]
    assert record["streaming"]["exact"] is False


@pytest.fixture(scope="module")
def format_files(tmp_path_factory):
    """An HDF5, a NetCDF-4 and a video file of several MiB: several chunks each under a 1 MiB chunk size."""
    import numpy as np

    h5py = pytest.importorskip("h5py")
    netCDF4 = pytest.importorskip("netCDF4")
    folder = tmp_path_factory.mktemp("fixity")
    rng = np.random.default_rng(3)
    h5 = str(folder / "field.h5")
    with h5py.File(h5, "w") as f:
        f.create_dataset("a", data=rng.random((600, 700)), chunks=(100, 700))
        f.create_dataset("b", data=rng.integers(0, 9, 300_001, dtype="i4"))
    nc = str(folder / "field.nc")
    with netCDF4.Dataset(nc, "w") as ds:
        ds.createDimension("t", None)
        ds.createDimension("x", 5000)
        ds.createVariable("v", "f8", ("t", "x"))[:] = rng.random((90, 5000))
    video = str(folder / "clip.mkv")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=640x480:rate=25:duration=6,noise=alls=60:allf=t+u", "-c:v", "libx264",
                    "-b:v", "6M", "-g", "25", video], check=True, timeout=120)
    return {"hdf5": h5, "netcdf": nc, "video": video}


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["hdf5", "netcdf", "video"])
@pytest.mark.parametrize("where", ["threaded", "threads", "processes"])
def test_every_format_gets_the_binary_readers_checksum(format_files, kind, where, thread_client, process_client):
    path = format_files[kind]
    client = {"threaded": None, "threads": thread_client, "processes": process_client}[where]
    expected = {algo: reference_checksum(path, algo) for algo in ("xxh3_128", "sha256")}
    for options in FULL_SCANS:
        for algo in ("xxh3_128", "sha256") if options is FULL_SCANS[1] else ("xxh3_128",):
            record, _ = extract_file(path, StreamingConfig(checksum=algo, **options), client=client)
            assert record["checksum"]["value"] == expected[algo], (kind, where, options, algo)
            assert record["reader"] == {"hdf5": "hdf5", "netcdf": "netcdf", "video": "video"}[kind]
    sampled, _ = extract_file(path, StreamingConfig(strategy=StreamingStrategy.SAMPLE_BASED, chunk_size=MiB, sample_count=2), client=client)
    assert sampled["checksum"]["value"] is None and sampled["checksum"]["note"].startswith("partial")
