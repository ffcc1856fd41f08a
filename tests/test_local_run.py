"""Scans with no dashboard to serve run on Dask's local scheduler: no cluster, no distributed import, the same rows."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import dask
import pytest

from metaextract_dask import ParallelExtractionConfig, ParallelExtractor, StreamingConfig, scan
from metaextract_dask.demo import make_bin, make_h5, make_nc

MiB = 2**20

COLD_SCAN = """
import json, sys
from metaextract_dask.cli import main
try:
    code = main(["scan", sys.argv[1], "-o", sys.argv[2], "-q"])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "distributed": "distributed" in sys.modules, "pandas": "pandas" in sys.modules}))
"""


def mixed_folder(root):
    data = root / "data"
    data.mkdir()
    make_h5(data / "a.h5", 2000)
    make_nc(data / "b.nc", 3000)
    make_bin(data / "c.bin", 4096, 1)
    make_bin(data / "big.bin", 3 * MiB, 2)  # above the threshold set below: its own chunk graph
    make_h5(data / "big.h5", 400_000)
    (data / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 600)
    return data


@pytest.mark.integration
def test_a_small_cli_scan_imports_neither_distributed_nor_pandas(tmp_path):
    """A scan over in seconds starts no cluster (distributed is 0.4 s of import) and
    writes Parquet without pandas (another 0.25 s): both were loaded before."""
    data = mixed_folder(tmp_path)
    run = subprocess.run([sys.executable, "-c", COLD_SCAN, str(data), str(tmp_path / "cat")], capture_output=True, text=True,
                         timeout=300)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"code": 1, "distributed": False, "pandas": False}, run.stderr[-2000:]  # 1: the broken file failed
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "cat")
    assert sorted(frame["path"].str.rsplit("/", n=1).str[-1]) == ["a.h5", "b.nc", "big.bin", "big.h5", "broken.h5", "c.bin"]
    assert frame.set_index(frame["path"].str.rsplit("/", n=1).str[-1])["success"].to_dict() == {
        "a.h5": True, "b.nc": True, "big.bin": True, "big.h5": True, "broken.h5": False, "c.bin": True}


VOLATILE = {"duration", "extracted_at", "started_at", "finished_at", "worker", "metadata"}


def comparable(frame) -> list[dict]:
    rows = []
    for row in frame.sort_values("path").to_dict("records"):
        record = json.loads(row["metadata"]) if isinstance(row["metadata"], str) else None
        keep = {k: v.tolist() if hasattr(v, "tolist") and not isinstance(v, (float, int)) else v  # list columns read as arrays
                for k, v in row.items() if k not in VOLATILE and not (isinstance(v, float) and math.isnan(v))}
        rows.append((keep, record))
    return rows


@pytest.mark.integration
def test_local_rows_equal_the_threaded_clients(tmp_path):
    """The same files on Dask's local scheduler and on the in-memory distributed
    cluster: identical rows and records, chunk graphs of large files included."""
    data = mixed_folder(tmp_path)
    with dask.config.set({"metaextract.streaming.streaming-threshold": MiB, "metaextract.streaming.chunk-size": 256 * 1024}):
        local = scan(str(data), str(tmp_path / "local"), execution="local", progress=False)
        threaded = scan(str(data), str(tmp_path / "threaded"), execution="thread_pool", dashboard_address="127.0.0.1:0", progress=False)
    assert len(local) == 6 and local["success"].sum() == 5
    big = local[local["path"].str.endswith("big.bin")].iloc[0]
    assert big["shape"] != "single" and big["chunks_read"] >= 3  # a chunk graph ran on dask.threaded (1 MiB checksum blocks)
    batched = threaded["shape"] == "single"
    assert threaded[batched]["worker"].notna().all() and local["worker"].isna().all()  # which path ran: the check can fail
    assert comparable(local) == comparable(threaded)


@pytest.mark.integration
def test_local_run_orders_large_files_and_counts_metrics(tmp_path):
    """On the local scheduler too, SIZE_AWARE starts the biggest file first, FIFO keeps
    the order given, and the metrics count what ran."""
    files = [make_bin(tmp_path / f"f{i}.bin", size * MiB, i) for i, size in enumerate((3, 5, 9, 7))]
    small = [make_bin(tmp_path / f"s{i}.bin", 1000 + i, 10 + i) for i in range(5)]
    streaming = StreamingConfig(streaming_threshold=2 * MiB, chunk_size=MiB)
    for balancing, expected in (("size_aware", [files[2], files[3], files[1], files[0]]), ("fifo", files)):
        # one worker thread: one large file at a time, so the start times are the order the driver chose
        config = ParallelExtractionConfig(execution_model="local", max_workers=1, load_balancing=balancing, isolate=False,
                                          streaming=streaming)
        results, metrics = ParallelExtractor(config).extract(files + small)
        assert all(r.success for r in results), [r.error for r in results]
        assert [r.file_path for r in results] == files + small  # results in task order
        large = [r for r in results if r.file_path in files]
        assert [r.file_path for r in sorted(large, key=lambda r: r.start_time)] == expected, balancing
        assert metrics.total_files == 9 and metrics.successful == 9
        assert metrics.bytes_processed == 24 * MiB + sum(1000 + i for i in range(5))


def crash_on_c(path):
    if path.endswith("c.bin"):
        os.kill(os.getpid(), signal.SIGSEGV)
    return {"path": path, "pid": os.getpid()}


@pytest.mark.integration
def test_a_parser_crash_on_the_local_scheduler_costs_only_its_file(tmp_path):
    """A parser killed mid-batch (its sandbox dies) fails that file alone; the rest of its batch is read, none misattributed."""
    files = [make_bin(tmp_path / f"{name}.bin", 100, i) for i, name in enumerate("abcdef")]
    config = ParallelExtractionConfig(execution_model="local", max_workers=1, batch_size=6)
    results, metrics = ParallelExtractor(config, crash_on_c).extract(files)
    assert [r.success for r in results] == [True, True, False, True, True, True]
    assert results[2].error_type == "ParserCrashError" and "SIGSEGV" in results[2].error
    assert [r.metadata["path"] for r in results if r.success] == [f for f in files if not f.endswith("c.bin")]
    assert results[0].metadata["pid"] != os.getpid()  # parsed in a sandbox child, not here
    assert metrics.failed == 1 and metrics.successful == 5


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(5))
def test_arrow_columns_built_from_buffers_equal_pyarrows_own(seed):
    """The pandas-free table builder gives exactly what pa.Table.from_pylist gives, nulls, empty text and odd bytes included."""
    import random

    import pyarrow as pa

    from metaextract_dask.catalog.arrow import table_from_rows

    rng = random.Random(seed)
    columns = [("s", "string"), ("b", "binary"), ("i", "int64"), ("j", "int32"), ("f", "float64"), ("t", "bool")]

    def value(kind):
        if rng.random() < 0.3:
            return None
        return {"string": lambda: rng.choice(["", "é", "a\nb", "x" * rng.randint(0, 40), "日本"]),
                "binary": lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 9))),
                "int64": lambda: rng.randint(-2**62, 2**62), "int32": lambda: rng.randint(-2**31, 2**31 - 1),
                "float64": lambda: rng.choice([rng.uniform(-1e300, 1e300), 0.0, float("inf")]),
                "bool": lambda: rng.random() < 0.5}[kind]()

    rows = [{name: value(kind) for name, kind in columns} for _ in range(rng.randint(0, 70))]
    rows += [{}]  # a row missing every key: all null
    schema = pa.schema([(n, getattr(pa, {"bool": "bool_"}.get(k, k))()) for n, k in columns])
    mine = table_from_rows(rows, columns)
    theirs = pa.Table.from_pylist(rows, schema=schema)
    assert mine.schema == theirs.schema
    assert mine.equals(theirs)
    assert mine.to_pylist() == theirs.to_pylist()


@pytest.mark.integration
def test_the_cluster_and_dashboard_start_only_for_scans_expected_to_be_long(tmp_path):
    """A scan expected to be over in seconds starts no cluster; one expected to take
    longer than ``dashboard-min-seconds`` gets the in-memory cluster and its dashboard."""
    from metaextract_dask.scanning import ScanSummary, expected_seconds

    bins = lambda n: [f"f{i}.bin" for i in range(n)]  # noqa: E731
    assert expected_seconds(bins(2000), 0, 2) < 10 <= expected_seconds(bins(150_000), 0, 2)  # 2,000 small files: seconds
    # 10,000 tiny files walked at the page cache's pace are seconds (benchmarks/RESULTS-scale.md: 2 to 3 s; a cluster
    # and its dashboard cost 1.6 s more), and a minute on a disk whose walk took 3 ms a file
    assert expected_seconds(bins(10_000), 0, 2, walk_seconds=0.15, walked=10_000) < 10
    assert expected_seconds(bins(10_000), 0, 2, walk_seconds=30.0, walked=10_000) >= 10
    assert expected_seconds(bins(4), 4 * 2**30, 2) < 10 <= expected_seconds(bins(10), 100 * 2**30, 2)  # 100 GiB: minutes
    # 393 netCDF files of 15 MB (issue 31: 23 to 55 s, once predicted under 30): a dashboard; 393 small binaries: none
    netcdf = [f"f{i}.nc" for i in range(393)]
    assert expected_seconds(netcdf, 393 * 15 * 2**20, 2) >= 10 > expected_seconds(bins(393), 0, 2)
    assert expected_seconds(netcdf * 10, 393 * 15 * 2**20, 2, metadata_only=True) < 10  # headers only: seconds
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        make_bin(data / f"f{i}.bin", 1000, i)
    short = ScanSummary()
    frame = scan(str(data), summary=short, progress=False)
    assert short.dashboard is None and frame["worker"].isna().all()
    with dask.config.set({"metaextract.cluster.dashboard-min-seconds": 0}):
        long = ScanSummary()
        frame = scan(str(data), summary=long, progress=False)
    assert long.dashboard is not None and long.dashboard.startswith("http://127.0.0.1:")
    assert frame["worker"].notna().all()


@pytest.mark.integration
def test_keep_cluster_leaves_the_dashboard_up_and_the_next_scan_runs_on_it(tmp_path):
    """``keep_cluster=True`` (a notebook's scan): the dashboard still answers after ``scan`` returns, the next such
    scan runs on the same cluster (same link, no new start), and ``close_kept`` ends it."""
    import urllib.error
    import urllib.request

    from metaextract_dask.execution.cluster import close_kept
    from metaextract_dask.scanning import ScanSummary

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        make_bin(data / f"f{i}.bin", 1000, i)
    first, second = ScanSummary(), ScanSummary()
    try:
        scan(str(data), keep_cluster=True, summary=first, progress=False, dashboard_address="127.0.0.1:0")
        assert first.dashboard and urllib.request.urlopen(first.dashboard, timeout=30).status == 200  # after the scan
        frame = scan(str(data), keep_cluster=True, summary=second, progress=False, dashboard_address="127.0.0.1:0")
        assert second.dashboard == first.dashboard and frame["worker"].notna().all()
    finally:
        close_kept()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(first.dashboard, timeout=10)


@pytest.mark.integration
def test_clusters_started_here_keep_few_messages_of_a_run(tmp_path):
    """distributed keeps the last ``distributed.admin.low-level-log-length`` (1,000) messages of each batched stream;
    a run's messages are its batches' outcomes (up to 256 files each), so the in-memory cluster of a scan of 100,000
    tiny files held 117 MB more than one of 10,000 (benchmarks/RESULTS-scale.md). The clusters and clients started
    here keep 50: in memory and in worker processes alike; a run's outcomes still all reach the plugin."""
    from metaextract_dask.execution.cluster import OWN_LOG_LENGTH, ClientScope

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        make_bin(data / f"f{i}.bin", 1000, i)
    for model in ("thread_pool", "process_pool"):
        with ClientScope(model=model, max_workers=1, dashboard=False) as client:
            kept = client.run(lambda dask_worker: dask_worker.batched_stream.recent_message_log.maxlen)
            assert list(kept.values()) == [OWN_LOG_LENGTH], (model, kept)
            assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_log.maxlen) == OWN_LOG_LENGTH
            assert client.scheduler_comm.recent_message_log.maxlen == OWN_LOG_LENGTH
            frame = scan(str(data), client=client, progress=False)
            assert frame["success"].all() and len(frame) == 3
    assert dask.config.get("distributed.admin.low-level-log-length") == 1000  # the user's own setting is left as it was
