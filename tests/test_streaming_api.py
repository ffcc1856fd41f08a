"""The seed's streaming API: its usage example, callbacks, metrics, async."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest
from conftest import MiB, write_random

from metaextract_dask import StreamChunk, StreamingConfig, StreamingExtractor, StreamingStrategy, extract_file

# The seed's example, unchanged but for the import path (the seed also uses
# StreamingStrategy without importing it, so the import names it too).
SEED_EXAMPLE = '''
from metaextract_dask import (
    StreamingExtractor,
    StreamingConfig,
    StreamingStrategy,
    extract_with_streaming
)

# Configuration
config = StreamingConfig(
    chunk_size=2*1024*1024,  # 2MB chunks
    strategy=StreamingStrategy.SEQUENTIAL
)

# Create extractor
extractor = StreamingExtractor(config)

# Extract with streaming
metadata, metrics = await extractor.extract_streaming(
    'large_file.h5',
    callback=lambda chunk, metrics: process_chunk(chunk)
)

# Or use convenience function
metadata, metrics = await extract_with_streaming('large_file.dat')
print(f"Processed {metrics.chunks_processed} chunks in {metrics.elapsed_time}s")
'''


def run_seed_example(workdir, with_cluster: bool) -> str:
    """Run the example as a user would: a script with top-level awaits wrapped in main()."""
    seen = "seen = []\ndef process_chunk(chunk):\n    seen.append(chunk)\n"
    body = textwrap.indent(SEED_EXAMPLE + "\nprint('CHUNKS', len(seen), all(c.data is None for c in seen))\n", "    ")
    setup = ""
    if with_cluster:
        setup = (
            "    from distributed import LocalCluster, Client\n"
            "    cluster = LocalCluster(n_workers=2, threads_per_worker=1, host='127.0.0.1', dashboard_address='127.0.0.1:0')\n"
            "    client = Client(cluster)\n"
        )
    # pasted as a user would, without an `if __name__ == '__main__':` guard; a script that starts its
    # own process cluster needs one (that is multiprocessing's rule for the user's own LocalCluster)
    run = "if __name__ == '__main__':\n    asyncio.run(main())\n" if with_cluster else "asyncio.run(main())\n"
    script = f"import asyncio\n{seen}\nasync def main():\n{setup}{body}\n{run}"
    (workdir / "example.py").write_text(script)
    out = subprocess.run([sys.executable, "example.py"], cwd=workdir, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.integration
@pytest.mark.parametrize("with_cluster", [False, True], ids=["threaded", "localcluster"])
def test_seed_streaming_example_runs(tmp_path, with_cluster):
    write_random(tmp_path / "large_file.h5", 9 * MiB)
    write_random(tmp_path / "large_file.dat", 12 * MiB, seed=1)
    out = run_seed_example(tmp_path, with_cluster)
    assert "CHUNKS 5 True" in out  # 9 MiB in 2 MiB chunks, summaries only
    assert "Processed " in out and " chunks in " in out


@pytest.mark.integration
def test_callback_sees_every_chunk_summary_not_bytes(random_file, process_client):
    path = random_file(6 * MiB)
    for client in (None, process_client):
        chunks: list[StreamChunk] = []
        progress = []
        cfg = StreamingConfig(strategy=StreamingStrategy.WINDOWED, chunk_size=MiB)
        record, metrics = StreamingExtractor(cfg, client).extract(
            path, callback=lambda c, m: (chunks.append(c), progress.append(m.chunks_processed))
        )
        assert sorted(c.chunk_id for c in chunks) == list(range(6))
        assert all(c.data is None and 0 <= c.metadata["entropy"] <= 8 for c in chunks)
        assert sorted(progress) == list(range(1, 7))
        assert metrics.chunks_processed == 6 and metrics.bytes_processed == 6 * MiB
        assert metrics.throughput > 0 and metrics.elapsed_time > 0


@pytest.mark.integration
def test_one_file_on_a_users_client_leaves_its_scheduler_as_it_was(random_file):
    """extract_file on a Client registers no scheduler plugin (a process serves Prometheus for its first scheduler's
    plugin only: one file's extraction must not take that from a later scan's cluster)."""
    from distributed import Client, LocalCluster

    path = random_file(3 * MiB)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        record, _ = extract_file(path, StreamingConfig(chunk_size=MiB), client=client)
        plugins = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.plugins))
    assert record["size"] == 3 * MiB
    assert not [p for p in plugins if "metaextract" in p], plugins


@pytest.mark.unit
def test_single_task_file_still_reports_each_chunk(random_file):
    path = random_file(3 * MiB + 1)
    seen = []
    record, metrics = StreamingExtractor(StreamingConfig(chunk_size=MiB)).extract(path, lambda c, m: seen.append(c.chunk_id))
    assert record["streaming"]["shape"] == "single" and record["streaming"]["tasks"] == 1
    assert seen == [0, 1, 2, 3]


@pytest.mark.integration
def test_async_client(random_file):
    from distributed import Client, LocalCluster

    path = random_file(5 * MiB)

    async def go():
        async with LocalCluster(n_workers=1, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address="127.0.0.1:0", asynchronous=True) as cluster:
            async with Client(cluster, asynchronous=True) as client:
                seen = []
                ex = StreamingExtractor(StreamingConfig(strategy="windowed", chunk_size=MiB), client)
                return await ex.extract_streaming(path, lambda c, m: seen.append(c.chunk_id)), seen

    (record, metrics), seen = asyncio.run(go())
    assert sorted(seen) == list(range(5))
    assert record["checksum"]["value"] == extract_file(path)[0]["checksum"]["value"]


@pytest.mark.unit
def test_entropy_and_signatures(tmp_path):
    import gzip
    import zipfile

    zeros = tmp_path / "zeros.bin"
    zeros.write_bytes(bytes(2 * MiB))
    rec = extract_file(zeros)[0]
    assert rec["binary"]["entropy"]["bits_per_byte"] == 0.0
    noise = write_random(tmp_path / "noise.bin", 2 * MiB)
    assert extract_file(noise)[0]["binary"]["entropy"]["bits_per_byte"] > 7.99
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("x.txt", "hello" * 1000)
    rec = extract_file(z)[0]
    assert rec["format"] == "zip" and "zip-end-of-central-directory" in rec["archive"]["trailing_signatures"]
    g = tmp_path / "a.gz"
    g.write_bytes(gzip.compress(b"abc" * 1000))
    assert extract_file(g)[0]["format"] == "gzip"


@pytest.mark.integration
def test_import_pulls_in_no_format_library():
    code = (
        "import sys, metaextract_dask\n"
        "heavy = [m for m in ('h5py', 'netCDF4', 'ffmpeg', 'bokeh', 'distributed', 'xarray', 'pandas') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.integration
def test_config_defaults_and_dask_config_override(monkeypatch):
    cfg = StreamingConfig()
    assert cfg.chunk_size == 8 * MiB and cfg.streaming_threshold == 10 * MiB and cfg.large_file_threshold == 1024 * MiB
    assert cfg.strategy is StreamingStrategy.ADAPTIVE and cfg.timeout == 300
    import dask

    with dask.config.set({"metaextract.streaming.chunk-size": "4 MiB", "metaextract.streaming.strategy": "windowed"}):
        cfg = StreamingConfig()
    assert cfg.chunk_size == 4 * MiB and cfg.strategy is StreamingStrategy.WINDOWED
    with pytest.raises(ValueError, match="unknown strategy"):
        StreamingConfig(strategy="fastest")
