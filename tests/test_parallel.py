"""Many files on real distributed clusters: the seed's API, faults, metrics, load balancing."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest

from metaextract_dask import (
    ExtractionResult,
    LoadBalancingStrategy,
    ParallelExtractionConfig,
    ParallelExtractor,
    StreamingConfig,
    extract_metadata,
)
from metaextract_dask.demo import make_bin, make_h5, mixed_corpus

pytestmark = pytest.mark.integration

SEED_PARALLEL = '''
from metaextract_dask import (
    ParallelExtractor,
    ParallelExtractionConfig,
    ExecutionModel,
    extract_files_parallel
)

# Configuration
config = ParallelExtractionConfig(
    max_workers=4,
    execution_model=ExecutionModel.THREAD_POOL,
    retry_failed=True,
    retry_limit=3
)

# Define extraction function
def extract_metadata(file_path):
    # Your extraction logic here
    metadata_dict = {"bytes": len(open(file_path, "rb").read())}
    return metadata_dict

# Method 1: Using convenience function
results, metrics = await extract_files_parallel(
    ['file1.h5', 'file2.h5', 'file3.h5'],
    extract_metadata,
    max_workers=4
)

# Method 2: Using ParallelExtractor directly
extractor = ParallelExtractor(config, extract_metadata)
task_ids = extractor.add_tasks_batch(['file1.h5', 'file2.h5'])
results, metrics = await extractor.extract_parallel(['file1.h5', 'file2.h5'])

# Metrics
print(f"Success Rate: {metrics.success_rate:.1f}%")
print(f"Throughput: {metrics.throughput_files_per_sec:.2f} files/sec")
for file_type, stats in metrics.file_type_stats.items():
    print(f"{file_type}: {stats['success']}/{stats['count']} successful")
'''


@pytest.mark.parametrize("model", ["THREAD_POOL", "PROCESS_POOL"])
def test_seed_parallel_example_runs(tmp_path, model):
    for name in ("file1.h5", "file2.h5", "file3.h5"):
        make_h5(tmp_path / name, 3)
    body = SEED_PARALLEL.replace("ExecutionModel.THREAD_POOL", f"ExecutionModel.{model}")
    # pasted as a user would: no `if __name__ == '__main__':` guard, on every execution model
    script = "import asyncio\nasync def main():\n" + textwrap.indent(body, "    ") + "\nasyncio.run(main())\n"
    (tmp_path / "example.py").write_text(script)
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__DASHBOARD__ADDRESS="127.0.0.1:0")
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Success Rate: 100.0%" in out.stdout
    assert "hdf5: 2/2 successful" in out.stdout


def crashing_extraction(path):
    """Our own extraction, except for two files: one segfaults its parser, one hangs."""
    import ctypes
    import time

    if path.endswith("crash.h5"):
        ctypes.string_at(0)  # a real SIGSEGV in the parsing process
    if path.endswith("hang.nc"):
        time.sleep(3600)
    return extract_metadata(path)


def test_200_files_with_corrupt_crashing_and_hanging_ones(tmp_path, process_client):
    corpus = mixed_corpus(tmp_path / "data", n_h5=60, n_nc=60, n_video=20, n_bin=48, n_corrupt=10)
    crash, hang = make_h5(tmp_path / "data" / "crash.h5", 5), str(tmp_path / "data" / "hang.nc")
    make_bin(hang, 100, 1)
    files = sorted(p for paths in corpus.values() for p in paths) + [crash, hang]
    assert len(files) == 200
    config = ParallelExtractionConfig(timeout_per_file=8, retry_delay=0.01)
    results, metrics = ParallelExtractor(config, crashing_extraction, client=process_client).extract(files)

    assert [r.file_path for r in results] == files  # one record per file, in order
    assert len({r.task_id for r in results}) == 200
    by_path = {r.file_path: r for r in results}
    assert "crashed" in by_path[crash].error and "SIGSEGV" in by_path[crash].error and by_path[crash].error_type == "ParserCrashError"
    assert "timed out" in by_path[hang].error and by_path[hang].error_type == "ExtractionTimeout"
    for path in corpus["corrupt"]:
        r = by_path[path]
        assert not r.success and path in r.error and r.attempts == 1  # permanent: not retried
    good = [p for k in ("hdf5", "netcdf", "video", "binary") for p in corpus[k]]
    assert all(by_path[p].success for p in good)
    assert metrics.total_files == 200 and metrics.successful == len(good) and metrics.failed == 12


def ground_truth(results: list[ExtractionResult]) -> dict[str, dict[str, int]]:
    from metaextract_dask.execution.batch import outcome

    truth: dict[str, dict[str, int]] = {}
    for r in results:
        o = outcome(r)
        t = truth.setdefault(o["type"], {"count": 0, "success": 0, "failed": 0, "bytes": 0, "chunks": 0, "io_requests": 0, "io_bytes": 0})
        t["count"] += 1
        t["success" if r.success else "failed"] += 1
        t["bytes"] += r.metadata["streaming"]["bytes_read"] if r.success else 0
        t["chunks"] += r.metadata["streaming"]["chunks_read"] if r.success else 0
    return truth


def test_metrics_from_the_plugin_match_the_run(tmp_path, process_client):
    corpus = mixed_corpus(tmp_path / "m", n_h5=12, n_nc=12, n_video=6, n_bin=10, n_corrupt=4)
    big = [make_bin(tmp_path / "m" / f"big{i}.bin", (3 << 20) + i * 70_001, 100 + i) for i in range(2)]
    files = sorted(p for v in corpus.values() for p in v) + big
    config = ParallelExtractionConfig(streaming=StreamingConfig(streaming_threshold=2 << 20, chunk_size=256 * 1024))
    results, metrics = ParallelExtractor(config, client=process_client).extract(files)

    truth = ground_truth(results)
    assert metrics.file_type_stats == truth
    assert metrics.total_files == len(files) and metrics.successful == sum(r.success for r in results)
    assert metrics.bytes_processed == sum(t["bytes"] for t in truth.values())
    assert metrics.chunks_processed == sum(t["chunks"] for t in truth.values())
    big_chunks = sum(r.metadata["streaming"]["chunks_read"] for r in results if r.file_path in big)
    assert metrics.chunk_tasks_by_shape == {"window": big_chunks}  # counted from the chunk tasks themselves
    workers = {w for w in metrics.worker_stats if w != "client"}
    assert workers <= set(process_client.scheduler_info()["workers"]) and workers
    assert metrics.success_rate == pytest.approx(100.0 * metrics.successful / len(files))


@pytest.fixture(scope="module")
def one_thread_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        with Client(cluster, set_as_default=False) as client:
            yield client


def run_strategy(client, files, strategy, priorities=None, batch_size=2):
    """Run, and return the batch keys in the order the scheduler saw them start."""
    config = ParallelExtractionConfig(load_balancing=strategy, batch_size=batch_size, isolate=False)
    ex = ParallelExtractor(config, client=client)
    for path in files:
        ex.add_task(path, priority=(priorities or {}).get(path, 0))
    results, metrics = ex.extract()
    return ex, results, [key for _, _, key, _ in metrics.task_log]


def test_priority_runs_high_priority_first(tmp_path, one_thread_client):
    files = [make_bin(tmp_path / f"p{i}.bin", 500, i) for i in range(6)]
    priorities = {files[0]: 1, files[1]: 1, files[2]: 5, files[3]: 5, files[4]: 9, files[5]: 9}
    ex, results, order = run_strategy(one_thread_client, files, LoadBalancingStrategy.PRIORITY, priorities)
    ran = [ex.last_batches[int(key.rsplit("-", 1)[1])] for key in order]
    assert [max(priorities[t.file_path] for t in b.tasks) for b in ran] == [9, 5, 1]
    start = {r.file_path: r.start_time for r in results}
    assert max(start[f] for f in files[4:]) < min(start[f] for f in files[:2])


def test_size_aware_runs_largest_first_and_batches_small_files(tmp_path, one_thread_client):
    files = [make_bin(tmp_path / f"s{i}.bin", 1000 * (i + 1), i) for i in range(8)]
    ex, results, order = run_strategy(one_thread_client, files, LoadBalancingStrategy.SIZE_AWARE)
    assert len(ex.last_batches) == len(order) == 4  # 8 files, 4 tasks
    start = {r.file_path: r.start_time for r in results}
    by_start = sorted(files, key=lambda f: start[f])
    assert by_start == sorted(files, key=os.path.getsize, reverse=True)


def test_fifo_keeps_submission_order(tmp_path, one_thread_client):
    files = [make_bin(tmp_path / f"f{i}.bin", 5000 - 100 * i, i) for i in range(6)]
    ex, results, order = run_strategy(one_thread_client, files, LoadBalancingStrategy.FIFO)
    assert [int(k.rsplit("-", 1)[1]) for k in order] == [0, 1, 2]
    start = {r.file_path: r.start_time for r in results}
    assert sorted(files, key=lambda f: start[f]) == files


def test_file_type_aware_groups_batches_by_type(tmp_path, one_thread_client):
    files = []
    for i in range(4):
        files += [make_h5(tmp_path / f"t{i}.h5", i), make_bin(tmp_path / f"t{i}.bin", 300, i)]
    ex, results, order = run_strategy(one_thread_client, files, LoadBalancingStrategy.FILE_TYPE_AWARE)
    for batch in ex.last_batches:
        assert len({os.path.splitext(t.file_path)[1] for t in batch.tasks}) == 1
    assert [k.split("-")[2] for k in order] == ["hdf5", "hdf5", "unknown", "unknown"]


def test_least_loaded_spreads_work_over_workers(tmp_path, process_client):
    files = [make_bin(tmp_path / f"l{i}.bin", 2000, i) for i in range(40)]
    config = ParallelExtractionConfig(load_balancing="least_loaded", isolate=False)
    ex = ParallelExtractor(config, client=process_client)
    results, metrics = ex.extract(files)
    assert all(r.success for r in results)
    assert len(ex.last_batches) >= 4 and all(b.priority == 0 for b in ex.last_batches)
    used = {r.worker for r in results}
    assert len(used) == 2  # Dask placed and stole work onto both workers


def flaky_extraction(path):
    """Fails twice with an I/O error, then succeeds (state kept on disk)."""
    counter = path + ".attempts"
    n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    with open(counter, "w") as f:
        f.write(str(n))
    if n <= 2:
        raise OSError(errno.EIO, f"transient read error (attempt {n})")
    return {"attempts_seen": n}


def test_transient_errors_are_retried_with_backoff(tmp_path, process_client):
    path = make_bin(tmp_path / "flaky.bin", 100, 0)
    config = ParallelExtractionConfig(retry_limit=3, retry_delay=0.2)
    [result], _ = ParallelExtractor(config, flaky_extraction, client=process_client).extract([path])
    assert result.success and result.attempts == 3 and result.metadata == {"attempts_seen": 3}, result.error
    assert result.duration >= 0.2 + 0.4  # exponential backoff: 0.2 s, then 0.4 s
    os.unlink(path + ".attempts")
    config = ParallelExtractionConfig(retry_limit=1, retry_delay=0.01)
    [result], _ = ParallelExtractor(config, flaky_extraction, client=process_client).extract([path])
    assert not result.success and result.attempts == 2 and "transient read error" in result.error


def test_async_io_with_an_asynchronous_client(tmp_path):
    import asyncio

    from distributed import Client, LocalCluster

    files = [make_bin(tmp_path / f"a{i}.bin", 700, i) for i in range(12)]

    async def go():
        async with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                                asynchronous=True) as cluster:
            async with Client(cluster, asynchronous=True) as client:
                ticks = 0

                async def heartbeat():  # the event loop keeps running while files are extracted
                    nonlocal ticks
                    while True:
                        ticks += 1
                        await asyncio.sleep(0.01)

                beat = asyncio.create_task(heartbeat())
                config = ParallelExtractionConfig(execution_model="async_io")
                results, metrics = await ParallelExtractor(config, client=client).extract_parallel(files)
                beat.cancel()
                workers = set(cluster.scheduler_info["workers"])
                return results, metrics, ticks, workers

    results, metrics, ticks, workers = asyncio.run(go())
    assert [r.file_path for r in results] == files and all(r.success for r in results)
    assert metrics.total_files == 12 and ticks > 5
    assert {r.worker for r in results} <= workers  # the asynchronous client's own cluster did the work


ISOLATION_SCRIPT = """
import json, sys
from distributed import Client, LocalCluster
from metaextract_dask import ParallelExtractionConfig, ParallelExtractor, StreamingConfig


def loaded():
    return sorted(m for m in ("h5py", "netCDF4") if m in sys.modules)


if __name__ == "__main__":
    files = sys.argv[1:]
    streaming = StreamingConfig(streaming_threshold=1 << 20, chunk_size=1 << 20)
    out = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \\
            Client(cluster) as client:
        for isolate in (True, False):
            config = ParallelExtractionConfig(streaming=streaming, isolate=isolate)
            results, _ = ParallelExtractor(config, client=client).extract(files)
            out[str(isolate)] = {"errors": [r.error for r in results], "records": [r.metadata for r in results],
                                 "client": loaded(), "workers": sorted({m for ms in client.run(loaded).values() for m in ms})}
    print(json.dumps(out, default=str))
"""


def test_large_native_files_are_parsed_only_in_sandboxes(tmp_path):
    """A large HDF5 or NetCDF file is planned and read through chunk tasks; with
    isolation on, libhdf5 and libnetcdf are never loaded by the client or the
    workers, only by sandbox children, so a file that crashes them costs itself."""
    from metaextract_dask.demo import make_h5, make_nc

    files = [make_h5(tmp_path / "big.h5", 300_000), make_nc(tmp_path / "big.nc", 600_000)]
    script = tmp_path / "isolation.py"
    script.write_text(ISOLATION_SCRIPT)
    run = subprocess.run([sys.executable, str(script), *files], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    isolated, inline = out["True"], out["False"]
    assert isolated["errors"] == [None, None], isolated["errors"]
    assert all(r["streaming"]["tasks"] > 2 for r in isolated["records"])  # chunk graphs, not one task
    assert isolated["client"] == [] and isolated["workers"] == []
    assert inline["workers"] == ["h5py", "netCDF4"]  # without isolation the workers parse: the check can fail
    assert isolated["records"] == inline["records"]


def test_scan_stats_each_file_once_on_the_client(tmp_path, monkeypatch):
    """On a parallel file system every stat is a round trip: scan hands the
    sizes it stat-ed for resume to the extractor instead of stat-ing again."""
    import metaextract_dask.execution.run as parallel
    from metaextract_dask import scan
    from metaextract_dask.demo import make_bin

    (tmp_path / "data").mkdir()
    for i in range(30):
        make_bin(str(tmp_path / "data" / f"f{i}.bin"), 2048, i)
    calls = []
    real = parallel.file_size
    monkeypatch.setattr(parallel, "file_size", lambda p: calls.append(p) or real(p))
    frame = scan(str(tmp_path / "data"), str(tmp_path / "catalog"), workers=1, execution="thread_pool",
                 dashboard_address="127.0.0.1:0", progress=False)
    assert len(frame) == 30 and frame["success"].all()
    assert calls == []


def test_size_aware_starts_the_largest_file_first(tmp_path):
    """Large files given smallest first: under SIZE_AWARE the biggest starts first (it decides when the run ends)."""
    from distributed import Client, LocalCluster

    MiB = 2**20
    files = [make_bin(tmp_path / f"f{i}.bin", size * MiB, i) for i, size in enumerate((3, 5, 9, 7))]
    streaming = StreamingConfig(streaming_threshold=2 * MiB, chunk_size=MiB)
    # one worker thread: one large file at a time, so the start times are the order the driver chose
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="inproc://", dashboard_address=None) as cluster, \
            Client(cluster, set_as_default=False) as client:
        for balancing, expected in (("size_aware", [files[2], files[3], files[1], files[0]]), ("fifo", files)):
            config = ParallelExtractionConfig(load_balancing=balancing, isolate=False, streaming=streaming)
            results, _ = ParallelExtractor(config, client=client).extract(files)
            assert all(r.success for r in results), [r.error for r in results]
            started = [r.file_path for r in sorted(results, key=lambda r: r.start_time)]
            assert started == expected, balancing
