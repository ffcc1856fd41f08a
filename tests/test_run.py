"""The one run loop (execution/run.py), once per executor adapter: Dask's local threads and a distributed Client.

Every way of extracting goes through ``Run``: these tests hold what it
promises (exactly one record per file, retries of transient failures with
backoff, deadlines, cancellation) on both adapters, with the same code.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import threading
import time

import pytest
from test_parallel import flaky_extraction
from test_row_integrity import FAILING, behave, check_rows, make

from metaextract_dask import ParallelExtractionConfig, ParallelExtractor, StreamingConfig
from metaextract_dask.catalog.schema import json_value
from metaextract_dask.demo import make_bin, make_h5
from metaextract_dask.execution import api as api_module
from metaextract_dask.execution import run as run_module
from metaextract_dask.execution.batch import extract_with_columns
from metaextract_dask.planning.tasks import Failed

pytestmark = pytest.mark.integration

MiB = 2**20


@pytest.fixture(params=["threads", "client"])
def extractor(request):
    """``extractor(config, fn) -> ParallelExtractor`` on one adapter: the local threads (LOCAL), or a real distributed Client."""
    def make_extractor(config: ParallelExtractionConfig, fn=None) -> ParallelExtractor:
        if request.param == "threads":
            return ParallelExtractor(dataclasses.replace(config, execution_model="local"), fn)  # the threads adapter: no Client
        return ParallelExtractor(config, fn, client=request.getfixturevalue("thread_client"))

    make_extractor.adapter = request.param  # type: ignore[attr-defined]
    return make_extractor


def test_exactly_one_record_per_file_small_and_large(tmp_path, extractor):
    """Batches with every failure kind, and large files with their own graphs: one record each, none misattributed."""
    kinds = ["good_h5", "crash", "good_nc", "raise", "flaky", "good_bin", "corrupt", "hang", "good_nc", "flaky", "good_bin"]
    paths = [make(str(tmp_path), k, i) for i, k in enumerate(kinds)]
    config = ParallelExtractionConfig(max_workers=2, timeout_per_file=3, retry_delay=0.01, batch_size=4, load_balancing="fifo")
    results, metrics = extractor(config, behave).extract(paths)
    check_rows(results, paths)
    assert [r.file_path for r in results] == paths  # in task order
    assert metrics.total_files == len(paths) and metrics.failed == sum(k in FAILING for k in kinds)

    big = [make_bin(tmp_path / f"big{i}.bin", 3 * MiB, i) for i in range(3)]
    broken = str(tmp_path / "broken.h5")
    with open(make_h5(tmp_path / "src.h5", 200_000), "rb") as f:
        open(broken, "wb").write(f.read()[: 2 * MiB])
    small = [make_bin(tmp_path / f"s{i}.bin", 500, i) for i in range(5)]
    streaming = StreamingConfig(streaming_threshold=MiB, chunk_size=MiB)
    config = ParallelExtractionConfig(max_workers=2, streaming=streaming, isolate=False)
    results, metrics = extractor(config).extract([*big, broken, *small])
    assert [r.file_path for r in results] == [*big, broken, *small]
    assert [r.success for r in results] == [True] * 3 + [False] + [True] * 5, [r.error for r in results]
    assert all(r.metadata["streaming"]["chunks_read"] >= 3 for r in results[:3])  # chunk graphs ran, not one task
    assert results[3].error.startswith(broken)
    assert metrics.total_files == 9 and metrics.failed == 1


REAL_PLAN = run_module.plan_large_file


def plan_fails_once(path, *args):
    """The large-file plan task, failing with EIO on its first attempt for each file (state kept on disk)."""
    marker = path + ".planned"
    if not os.path.exists(marker):
        open(marker, "w").close()
        return Failed(OSError(errno.EIO, "Input/output error (injected once)"))
    return REAL_PLAN(path, *args)


def plan_hangs(path, *args):
    """A plan task that hangs (a stuck worker thread); it says when it ends."""
    time.sleep(20)
    open(path + ".plan-ended", "w").close()


def test_transient_failures_are_retried_with_backoff(tmp_path, extractor, monkeypatch):
    path = make_bin(tmp_path / "flaky.bin", 100, 0)
    config = ParallelExtractionConfig(retry_limit=3, retry_delay=0.2, max_workers=2)
    [result], _ = extractor(config, flaky_extraction).extract([path])
    assert result.success and result.attempts == 3 and result.metadata == {"attempts_seen": 3}, result.error
    assert result.duration >= 0.2 + 0.4  # exponential backoff: 0.2 s, then 0.4 s
    os.unlink(path + ".attempts")
    config = ParallelExtractionConfig(retry_limit=1, retry_delay=0.01, max_workers=2)
    [result], _ = extractor(config, flaky_extraction).extract([path])
    assert not result.success and result.attempts == 2 and "transient read error" in result.error

    # a large file's plan failing once: the run itself submits it again after the backoff
    monkeypatch.setattr(run_module, "plan_large_file", plan_fails_once)
    big = make_bin(tmp_path / "big.bin", 2 * MiB, 1)
    config = ParallelExtractionConfig(retry_limit=2, retry_delay=0.3, max_workers=2, isolate=False,
                                      streaming=StreamingConfig(streaming_threshold=MiB, chunk_size=MiB))
    [result], _ = extractor(config).extract([big])
    assert result.success and result.attempts == 2, result.error
    assert result.metadata["streaming"]["chunks_read"] == 2
    os.unlink(big + ".planned")
    config.retry_failed = False
    [result], _ = extractor(config).extract([big])
    assert not result.success and result.attempts == 1 and "injected once" in result.error


def test_a_large_file_past_its_deadline_is_its_timeout_and_the_run_goes_on(tmp_path, extractor, monkeypatch):
    """A plan task that never returns (a hung worker thread) is cancelled at the run's deadline; other files are unaffected."""
    monkeypatch.setattr(run_module, "plan_large_file", plan_hangs)
    monkeypatch.setattr(run_module, "EXPIRY_GRACE", 0.5)
    big = make_bin(tmp_path / "big.bin", 2 * MiB, 1)
    small = [make_bin(tmp_path / f"s{i}.bin", 500, i) for i in range(4)]
    config = ParallelExtractionConfig(max_workers=2, timeout_per_file=1, isolate=False,
                                      streaming=StreamingConfig(streaming_threshold=MiB, chunk_size=MiB))
    results, metrics = extractor(config).extract([big, *small])
    assert [r.file_path for r in results] == [big, *small]
    assert results[0].error_type == "ExtractionTimeout" and "timed out after 1 s" in results[0].error
    assert all(r.success for r in results[1:])
    assert not os.path.exists(big + ".plan-ended")  # the run did not wait for the hung task: its deadline ended the file
    assert metrics.failed == 1 and metrics.total_files == 5


def slow_extraction(path):
    open(path + ".started", "w").close()
    time.sleep(0.2)
    return {"path": path}


def test_cancel_stops_the_run_and_keeps_what_finished(tmp_path, extractor):
    files = [make_bin(tmp_path / f"f{i:02d}.bin", 100, i) for i in range(40)]
    config = ParallelExtractionConfig(max_workers=2, batch_size=2, isolate=False, load_balancing="fifo")
    ex = extractor(config, slow_extraction)
    seen = []

    def progress(result):
        seen.append(result.file_path)
        if len(seen) == 3:
            threading.Thread(target=ex.cancel).start()  # from another thread, as a signal handler or a UI would

    results, _ = ex.extract(files, progress=progress)
    time.sleep(1.0)  # what was running has ended by now
    started = [f for f in files if os.path.exists(f + ".started")]
    assert 3 <= len(results) < len(files)
    assert [r.file_path for r in results] == [f for f in files if f in set(seen)]  # the finished ones, each once
    assert all(r.success and r.metadata["path"] == r.file_path for r in results)
    assert len(started) <= len(results) + 4 * 2, len(started)  # at most the batches running at the cancel went on


def test_a_long_run_is_split_and_submitted_a_window_at_a_time(tmp_path, extractor, monkeypatch):
    """A run of many files holds about one window of them split into work (the run's own count), answers each file
    once, in task order when results are kept; the next window goes in while the last batches of one still run."""
    monkeypatch.setattr(run_module, "WINDOW", 40)
    files = [make_bin(tmp_path / f"f{i:03d}.bin", 200, i) for i in range(300)]
    config = ParallelExtractionConfig(max_workers=2, isolate=False, load_balancing="fifo")
    ex = extractor(config)
    results, metrics = ex.extract(files)
    assert [r.file_path for r in results] == files and all(r.success for r in results)
    assert metrics.total_files == 300
    assert 40 <= ex.last_held <= 40 + 2 * 2 * 2 + 40 // 2, ex.last_held  # a window, and at most low-water batches left
    keys = [b.label for b in ex.last_batches]
    assert sum(len(b.tasks) for b in ex.last_batches) == 300 and len(keys) >= 300 // 40
    seen = []
    runs = []

    class Recorded(run_module.Run):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            runs.append(self)

    monkeypatch.setattr(api_module, "Run", Recorded)
    ex.extract(files, progress=lambda r: seen.append(r.file_path), keep_results=False)
    assert sorted(seen) == files  # not kept: each still reported once
    # nor remembered: the ids a run keeps to answer each file once are those of files in work (the old run kept every one)
    grown = {name: len(value) for name, value in vars(runs[-1]).items() if isinstance(value, set) and len(value) > 40}
    assert not grown, grown


def test_files_that_need_no_parser_come_back_a_block_a_batch_with_the_records_of_their_own_calls(tmp_path, extractor):
    """A batch's files that need no parser are extracted in one sandbox call and come back as one ``RowBlock`` (the
    old run made a call, a reply and a result for each); every other file (HDF5 named .bin, a start code suggesting
    media, an empty file) still gets its own call, and since no result is kept the parsed ones come back as one more
    block a batch (``BatchSettings.columns``), the failure as its result. A block's records and columns are those its
    files' own extraction makes, and the run's counters count every file."""
    plain = [make_bin(tmp_path / f"p{i:02d}.bin", 300 + i, i) for i in range(12)]
    text = tmp_path / "notes.dat"
    text.write_text("a note\n" * 30)
    hdf5 = make_h5(tmp_path / "hidden.bin", 50)
    media = tmp_path / "clip.dat"
    media.write_bytes(b"\x00\x00\x01\xba" + os.urandom(400))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    files = [*plain[:6], hdf5, str(media), *plain[6:], str(empty), str(text)]
    blocks, singles = [], []
    config = ParallelExtractionConfig(max_workers=2, batch_size=8, load_balancing="fifo")
    _, metrics = extractor(config).extract(files, progress=singles.append, keep_results=False, blocks=blocks.append)
    parsed = [b for b in blocks if hdf5 in b.paths]  # with the media-like file, read as bytes when libav cannot open it
    assert len(parsed) == 1 and set(parsed[0].paths) <= {hdf5, str(media)}
    assert sorted(p for b in blocks if b not in parsed for p in b.paths) == sorted([*plain, str(text)])
    assert all(not r.success for r in singles) and str(empty) in [r.file_path for r in singles]
    assert sorted([*(p for b in blocks for p in b.paths), *(r.file_path for r in singles)]) == sorted(files)
    assert 2 <= len(blocks) <= 4  # two batches of 8 files: at most a block of each lane each
    assert metrics.total_files == len(files) and metrics.failed == len(singles)
    for block in blocks:
        for i, path in enumerate(block.paths):
            record, columns = extract_with_columns(path, StreamingConfig())
            assert json.loads(block.columns["metadata"][i]) == json.loads(json.dumps(record, default=json_value))
            assert {k: v[i] for k, v in block.columns.items() if v[i] is not None} == columns
    kept, _ = extractor(config).extract(files)  # without ``blocks``: each file of a block is its own result
    assert [r.file_path for r in kept] == files
    assert [r.metadata for r in kept if r.file_path in plain] == [extract_with_columns(p, StreamingConfig())[0] for p in plain]


@pytest.mark.parametrize("on", ["local", "client"])
def test_scan_iter_yields_rows_while_the_scan_still_runs(tmp_path, on):
    """``scan_iter``: the first row reaches the reader before the last file has started (the rows' own
    ``started_at`` against the moment the reader got the first row), on Dask's local threads and on a user's
    Client; every file comes exactly once and the catalog has them all; leaving the loop stops the scan."""
    import time

    from distributed import Client, LocalCluster

    import metaextract_dask as me

    data = tmp_path / "data"
    data.mkdir()
    for i in range(24):
        (data / f"f{i:02d}.bin").write_bytes(os.urandom(16 * 2**20))
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) if on == "client" else None
    client = Client(cluster) if cluster is not None else None
    try:
        extra = {"client": client} if client is not None else {"execution": "local"}
        got = []
        for row in me.scan_iter(str(data), str(tmp_path / "cat"), checksum="sha256", progress=False, **extra):
            got.append((time.time(), row))
        first_seen = got[0][0]
        assert first_seen < max(row["started_at"] for _, row in got)  # a file started after the reader had a row
        assert sorted(row["path"] for _, row in got) == sorted(str(p) for p in data.iterdir())
        assert len(me.read_catalog(str(tmp_path / "cat"))) == 24

        stopped = []
        for row in me.scan_iter(str(data), str(tmp_path / "again"), checksum="sha256", progress=False, **extra):
            stopped.append(row)
            if len(stopped) == 2:
                break
        assert 2 <= len(me.read_catalog(str(tmp_path / "again"))) < 24  # what finished is kept, the rest never ran
    finally:
        if client is not None:
            client.close()
            cluster.close()
