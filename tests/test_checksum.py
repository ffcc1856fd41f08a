"""The checksum does not depend on strategy, chunk size or where tasks ran."""

from __future__ import annotations

import subprocess

import pytest

from metaextract_dask import StreamingConfig, StreamingStrategy, extract_file, reference_checksum

from conftest import MiB

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


@pytest.mark.parametrize("algorithm", ["xxh3_128", "sha256"])
def test_same_under_every_full_scan_and_equal_to_reference(odd_file, algorithm):
    expected = reference_checksum(odd_file, algorithm)
    values = set()
    for cfg in FULL_SCANS:
        record, _ = extract_file(odd_file, StreamingConfig(checksum=algorithm, **cfg))
        assert record["streaming"]["exact"]
        values.add(record["checksum"]["value"])
    assert values == {expected}


def test_same_on_thread_and_process_clusters(odd_file, thread_client, process_client):
    expected = reference_checksum(odd_file)
    for client in (thread_client, process_client):
        for cfg in FULL_SCANS[:4]:
            record, _ = extract_file(odd_file, StreamingConfig(**cfg), client=client)
            assert record["checksum"]["value"] == expected


def test_sha256_matches_the_documented_coreutils_recipe(odd_file):
    recipe = f"split -b 1048576 --filter='sha256sum' {odd_file} | cut -d' ' -f1 | xxd -r -p | sha256sum"
    shell = subprocess.run(["bash", "-c", recipe], capture_output=True, text=True, check=True).stdout.split()[0]
    record, _ = extract_file(odd_file, StreamingConfig(checksum="sha256", strategy="windowed"))
    assert record["checksum"]["value"] == shell


def test_checksum_changes_with_one_byte(tmp_path, random_file):
    path = random_file(3 * MiB)
    before = extract_file(path)[0]["checksum"]["value"]
    with open(path, "r+b") as f:
        f.seek(2 * MiB + 17)
        byte = f.read(1)
        f.seek(2 * MiB + 17)
        f.write(bytes([byte[0] ^ 1]))
    assert extract_file(path)[0]["checksum"]["value"] != before


def test_sampled_scan_says_checksum_is_partial(random_file):
    path = random_file(40 * MiB)
    record, _ = extract_file(path, StreamingConfig(strategy="sample_based", sample_count=4, chunk_size=MiB))
    assert record["checksum"]["value"] is None
    assert "partial" in record["checksum"]["note"]
    assert record["streaming"]["exact"] is False
