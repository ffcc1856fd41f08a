"""Every row is its own file's: failing files at every position of a batch, sandbox on and off.

The first build shifted replies by one when a file in a sandboxed batch
failed with an error it retried: the retry went to the child that still
owed the rest of the batch's replies, so rows carried a neighbour's
metadata (some marked successful). These tests put failing files (corrupt,
raising inside the reader, crashing the parser with SIGSEGV, hanging past
the timeout, failing once with EIO) at every position of a batch.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaextract_dask import ParallelExtractionConfig, ParallelExtractor, extract_metadata
from metaextract_dask.catalog import to_row
from metaextract_dask.catalog.read import read_variables
from metaextract_dask.catalog.schema import variable_rows
from metaextract_dask.core.errors import MisattributionError
from metaextract_dask.core.model import ExtractionResult
from metaextract_dask.demo import make_bin, make_h5, make_nc
from metaextract_dask.execution.batch import BatchSettings, extract_many
from metaextract_dask.sandbox import Isolation

GOOD = ("good_h5", "good_nc", "good_bin")
#: kinds that must fail, and whether they may be tried more than once
FAILING = {"corrupt": 1, "raise": 1, "crash": 1, "hang": 1}


def behave(path: str) -> dict:
    """The extraction function of these tests: real extraction, or the failure the name asks for."""
    name = os.path.basename(path)
    if name.startswith("crash_"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if name.startswith("hang_"):
        time.sleep(60)
    if name.startswith("raise_"):
        raise ValueError("the reader failed on purpose")
    if name.startswith("flaky_"):
        marker = path + ".tried"
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise OSError(errno.EIO, "Input/output error (injected once)")
    return extract_metadata(path)


def make(folder: str, kind: str, i: int) -> str:
    path = os.path.join(folder, f"{kind}_{i:03d}")
    if kind == "good_h5":
        return make_h5(path + ".h5", 5 + i)
    if kind == "good_nc":
        return make_nc(path + ".nc", 5 + i)
    if kind == "good_bin":
        return make_bin(path + ".bin", 3000 + i, i)
    if kind == "corrupt":
        src = make_h5(path + ".src", 7)
        data = open(src, "rb").read()
        os.unlink(src)
        with open(path + ".h5", "wb") as f:
            f.write(data[: len(data) // 3])
        return path + ".h5"
    if kind == "flaky":
        return make_nc(path + ".nc", 3 + i)
    return make_bin(path + ".bin", 2000 + i, i)  # raise, crash, hang: decided by the name


def expected_success(path: str) -> bool:
    return os.path.basename(path).split("_")[0] in ("good", "flaky")


def check_rows(results: list[ExtractionResult], paths: list[str]) -> None:
    """One result per file; a success carries its own path; success matches the file's real state."""
    assert sorted(r.file_path for r in results) == sorted(paths)
    for r in results:
        row = to_row(r)
        assert row["path"] == r.file_path
        if r.success:
            assert r.metadata["path"] == r.file_path, f"{r.file_path} carries {r.metadata['path']}'s metadata"
            assert json.loads(row["metadata"])["path"] == row["path"]
        assert r.success == expected_success(r.file_path), (r.file_path, r.error)
        kind = os.path.basename(r.file_path).split("_")[0]
        if kind in FAILING:
            assert r.attempts == 1, f"{r.file_path}: a permanent failure was tried {r.attempts} times"
        if kind == "flaky":
            assert r.attempts == 2, f"{r.file_path}: a transient error should be retried once, got {r.attempts}"


BATCH = 6


@pytest.mark.integration
@pytest.mark.parametrize("isolate", [True, False], ids=["sandbox", "no-sandbox"])
@pytest.mark.parametrize("kind", ["corrupt", "raise", "crash", "hang", "flaky"])
def test_a_failing_file_at_every_position_of_a_batch(tmp_path, thread_client, kind, isolate):
    if not isolate and kind in ("crash", "hang"):
        pytest.skip("without the sandbox a segfault or a hang takes the worker itself: that is what the sandbox is for")
    config = ParallelExtractionConfig(max_workers=1, isolate=isolate, timeout_per_file=3, retry_delay=0.01, batch_size=BATCH,
                                      load_balancing="fifo")
    for position in range(BATCH):
        folder = tmp_path / f"at{position}"
        folder.mkdir()
        kinds = [GOOD[i % len(GOOD)] for i in range(BATCH)]
        kinds[position] = kind
        paths = [make(str(folder), k, i) for i, k in enumerate(kinds)]
        extractor = ParallelExtractor(config, behave, client=thread_client)
        results, _ = extractor.extract(paths)
        assert [len(b.tasks) for b in extractor.last_batches] == [BATCH]
        check_rows(results, paths)


@pytest.mark.integration
def test_every_failure_kind_in_one_sandboxed_batch(tmp_path, thread_client):
    kinds = ["good_h5", "crash", "good_nc", "raise", "flaky", "good_bin", "corrupt", "good_h5", "hang", "good_nc", "flaky", "raise", "good_bin"]
    paths = [make(str(tmp_path), k, i) for i, k in enumerate(kinds)]
    config = ParallelExtractionConfig(max_workers=1, timeout_per_file=3, retry_delay=0.01, batch_size=len(paths), load_balancing="fifo")
    results, metrics = ParallelExtractor(config, behave, client=thread_client).extract(paths)
    check_rows(results, paths)
    assert metrics.failed == sum(not expected_success(p) for p in paths)
    # the dashboard's failure table comes from the same outcomes: no shifted paths there either
    for failure in metrics.failures:
        assert os.path.basename(failure["path"]).split("_")[0] in FAILING
        assert failure["error"].startswith(failure["path"])


@pytest.mark.integration
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from([*GOOD, "corrupt", "raise", "crash", "flaky"]), min_size=1, max_size=9))
def test_random_batches_never_misattribute(tmp_path_factory, kinds):
    folder = str(tmp_path_factory.mktemp("batch"))
    paths = [make(folder, k, i) for i, k in enumerate(kinds)]
    settings_ = BatchSettings(timeout=5, retry_limit=2, retry_delay=0.0, isolation=Isolation())
    results = list(extract_many([(f"t{i}", p) for i, p in enumerate(paths)], behave, settings_))
    check_rows(results, paths)
    assert sorted(r.task_id for r in results) == sorted(f"t{i}" for i in range(len(paths)))


@pytest.mark.unit
def test_a_record_naming_another_file_is_refused(tmp_path):
    """Defence in depth: whatever produced it, a record about another file never becomes this file's row."""
    a, b = make(str(tmp_path), "good_h5", 1), make(str(tmp_path), "good_h5", 2)

    def neighbour(path: str) -> dict:
        return extract_metadata(b if path == a else a)

    results = list(extract_many([("t1", a)], neighbour, BatchSettings(isolation=Isolation.off())))
    assert not results[0].success and results[0].error_type == "MisattributionError"
    swapped = ExtractionResult("t1", a, True, extract_metadata(b))
    row = to_row(swapped)
    assert row["success"] is False and row["error_type"] == "MisattributionError" and row["metadata"] is None


@pytest.mark.integration
def test_scan_rows_match_their_files(tmp_path):
    """The default extraction, through scan and the catalog, with corrupt files among good ones."""
    from metaextract_dask import scan

    folder = tmp_path / "data"
    folder.mkdir()
    kinds = ["corrupt", "good_h5", "good_nc", "corrupt", "good_bin", "good_h5", "corrupt"]
    paths = [make(str(folder), k, i) for i, k in enumerate(kinds)]
    for isolate in (True, False):
        frame = scan(str(folder), str(tmp_path / f"cat-{isolate}"), workers=1, execution="thread_pool", isolate=isolate,
                     progress=False)
        assert sorted(frame["path"]) == sorted(paths)
        for row in frame.itertuples():
            assert row.success == expected_success(row.path), (row.path, row.error)
            if row.success:
                assert json.loads(row.metadata)["path"] == row.path
            else:
                assert row.attempts == 1 and row.error.startswith(row.path)


@pytest.mark.unit
def test_misattribution_error_is_permanent():
    from metaextract_dask.core.errors import is_transient

    assert not is_transient(MisattributionError("x", "y"))


@pytest.mark.integration
def test_quiet_cli_scan_of_bad_files_prints_no_traceback_and_tries_each_once(tmp_path):
    """Corrupt files (small ones in batches, a large one with its own chunk graph): one attempt, no worker tracebacks."""
    import subprocess
    import sys

    import numpy as np
    import pandas as pd

    h5py = pytest.importorskip("h5py")
    folder = tmp_path / "data"
    folder.mkdir()
    big = str(folder / "big.h5")
    with h5py.File(big, "w") as f:
        f.create_dataset("x", data=np.random.default_rng(0).random(1_600_000))  # 12.8 MB: above the streaming threshold
    data = open(big, "rb").read()
    open(folder / "big_truncated.h5", "wb").write(data[: len(data) // 2])
    mangled = bytearray(data)
    mangled[800:1600] = bytes(range(256)) * 3 + bytes(32)
    open(folder / "big_mangled.h5", "wb").write(bytes(mangled))
    for i in range(3):
        make(str(folder), "corrupt", i)
        make(str(folder), "good_nc", i)
    catalog = str(tmp_path / "cat")
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", str(folder), "-o", catalog, "-q", "--workers", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]
    assert "Compute Failed" not in done.stderr
    frame = pd.read_parquet(catalog)
    failed = frame[~frame["success"]]
    assert sorted(os.path.basename(p) for p in failed["path"]) == ["big_mangled.h5", "big_truncated.h5", "corrupt_000.h5",
                                                                  "corrupt_001.h5", "corrupt_002.h5"]
    assert (failed["attempts"] == 1).all() and (failed["error_type"] == "CorruptFileError").all()
    assert frame[frame["success"]]["path"].map(os.path.basename).tolist().count("big.h5") == 1


@pytest.mark.integration
def test_a_failing_chunk_read_is_a_value_not_a_worker_error(tmp_path, process_client):
    """A chunk read that fails (here: the file shrank after planning) travels as a value: no worker logs a traceback."""
    from conftest import MiB, write_random

    from metaextract_dask import StreamingConfig, StreamingExtractor
    from metaextract_dask.core.errors import FileChangedError
    from metaextract_dask.planning.tasks import Failed

    path = write_random(tmp_path / "shrinks.bin", 24 * MiB)
    plan, fg = StreamingExtractor(StreamingConfig(chunk_size=MiB, strategy="windowed")).graph(path)
    os.truncate(path, 3 * MiB)
    result = process_client.get(fg.dsk, fg.final_key, sync=False).result()
    assert isinstance(result, Failed) and isinstance(result.error, FileChangedError)
    token = fg.final_key.rsplit("-", 1)[-1]
    logs = [msg for worker_logs in process_client.get_worker_logs().values() for _, msg in worker_logs]
    assert not [m for m in logs if "Compute Failed" in m and token in m]


@pytest.mark.unit
def test_framework_keys_of_the_wrong_type_read_as_missing_not_as_a_crash(tmp_path):
    """A user's extraction function (or a plugin) may return any dict: the framework's keys are read typed (RecordHead)."""
    path = make_bin(str(tmp_path / "f.bin"), 1234, 0)
    odd = {"path": path, "size": "1234", "mtime": True, "reader": 5, "format": ["x"], "streaming": "fast", "io": 3, "checksum": "abc"}
    row = to_row(ExtractionResult("t1", path, True, odd))
    assert row["path"] == path and row["size"] == 1234 and row["mtime"] == os.stat(path).st_mtime  # from the file, not the record
    assert row["reader"] is None and row["strategy"] is None and row["checksum"] is None and row["io_requests"] is None
    assert row["format"] == "unknown"  # detected, not the record's list
    from metaextract_dask.execution.batch import outcome

    told = outcome(ExtractionResult("t1", path, True, odd))
    assert told["bytes"] == 1234 and told["chunks"] == 1 and told["io_requests"] == 0


@pytest.mark.integration
@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_scan_writes_the_files_of_a_block_as_their_own_rows(tmp_path, fmt):
    """Files that need no parser reach the catalog as a block of columns (``CatalogWriter.add_block``); each row is the
    one ``to_row`` makes of the file's own result, every column but the run's clock and worker, in either format, among
    rows of files that came one at a time."""
    from metaextract_dask import scan
    from metaextract_dask.catalog.read import _read_part, part_files
    from metaextract_dask.core.settings import StreamingConfig
    from metaextract_dask.execution.batch import extract_with_columns
    from metaextract_dask.scanning import ScanSummary

    data = tmp_path / "data"
    data.mkdir()
    plain = [make_bin(data / f"p{i:02d}.bin", 100 + 37 * i, i) for i in range(30)]
    (data / "readme.txt").write_text("text\n" * 100)
    plain.append(str(data / "readme.txt"))
    parsed = make_nc(str(data / "grid.nc"), 3)
    summary = ScanSummary()
    scan(str(data), str(tmp_path / "cat"), format=fmt, summary=summary, progress=False, as_frame=False)
    assert summary.extracted == 32 and summary.failed == 0
    rows = {r["path"]: r for part in part_files(str(tmp_path / "cat")) for r in _read_part(part)}
    assert sorted(rows) == sorted([*plain, parsed])
    clock = {"duration", "started_at", "finished_at", "extracted_at", "worker"}
    for path in [*plain, parsed]:  # the parsed file came in a block of its batch's parsed files (``BatchSettings.columns``)
        record, columns = extract_with_columns(path, StreamingConfig())
        st = os.stat(path)
        own = to_row(ExtractionResult("t", path, True, record, columns=columns), st.st_size, st.st_mtime)
        got = rows[path]
        if fmt == "jsonl":  # as JSON Lines keeps them
            own["path_bytes"], own["metadata"] = own["path_bytes"].hex(), json.loads(own["metadata"])
        assert {k: got.get(k) for k in own if k not in clock} == {k: v for k, v in own.items() if k not in clock}, path
        assert got["finished_at"] >= got["started_at"] > 0 and got["duration"] >= 0
    arrays = read_variables(str(tmp_path / "cat"))
    assert sorted(arrays["name"]) == sorted(v["name"] for v in variable_rows(to_row(extract_result(parsed)), extract_metadata(parsed)))
    assert set(arrays["path"]) == {parsed}


def extract_result(path: str) -> ExtractionResult:
    return ExtractionResult("t", path, True, extract_metadata(path))


@pytest.mark.integration
def test_a_catalog_gets_a_batch_of_parsed_files_as_one_block_of_columns_and_their_variables(tmp_path):
    """For a catalog (``BatchSettings.columns``: the scan's run keeps no records) a parsed file's sandbox call answers
    with its catalog columns and its variables-table rows, not its record dict, and the batch hands its parsed files
    over as one block (the client of a run of millions unpickles, checks and files no record of theirs: 0.14 -> 0.07
    ms of the client's CPU a small netCDF file on a separate scheduler and worker). Each row and each variable row is
    the one the file's own result gives; a plain file keeps its own block, a file that fails its own result."""
    from metaextract_dask.catalog.schema import block_columns, variable_rows
    from metaextract_dask.core.model import RowBlock
    from metaextract_dask.core.settings import StreamingConfig
    from metaextract_dask.execution.batch import extract_with_columns

    parsed = [make_nc(str(tmp_path / f"g{i}.nc"), 3 + i) for i in range(4)] + [make_h5(str(tmp_path / "a.h5"), 5)]
    plain = [make_bin(str(tmp_path / f"p{i}.bin"), 300 + i, i) for i in range(3)]
    broken = str(tmp_path / "broken.nc")
    with open(parsed[0], "rb") as f:
        open(broken, "wb").write(f.read()[:700])
    items = [(f"t{i}", p) for i, p in enumerate([*parsed, *plain, broken])]
    results = list(extract_many(items, None, BatchSettings(columns=True)))
    blocks = [r for r in results if isinstance(r, RowBlock)]
    assert [sorted(b.paths) for b in blocks] == [sorted(plain), sorted(parsed)] and blocks[1].paths == parsed
    assert [(r.file_path, r.success) for r in results if not isinstance(r, RowBlock)] == [(broken, False)]
    block = blocks[1]
    sizes, mtimes = [os.stat(p).st_size for p in parsed], [os.stat(p).st_mtime for p in parsed]
    cols = block_columns(block, sizes, mtimes)
    clock = {"duration", "started_at", "finished_at", "extracted_at", "worker"}
    for i, path in enumerate(parsed):
        record, columns = extract_with_columns(path, StreamingConfig())
        own = to_row(ExtractionResult("t", path, True, record, columns=columns), sizes[i], mtimes[i])
        assert {k: cols[k][i] if k in cols else None for k in own if k not in clock} == \
               {k: v for k, v in own.items() if k not in clock}, path
        assert block.variables[i] == variable_rows(own, record) and block.variables[i], path
    assert block.keep([3, 1]).variables == [block.variables[3], block.variables[1]]
    # without a catalog's settings (a library run that keeps its results), each parsed file is its own result, whole
    whole = list(extract_many(items[:5], None, BatchSettings()))
    assert all(isinstance(r, ExtractionResult) and r.success and r.metadata["path"] == p for r, p in zip(whole, parsed))


@pytest.mark.integration
def test_a_plain_call_that_fails_as_a_whole_leaves_each_file_its_own_call(tmp_path, monkeypatch):
    """Degrade, don't fail: when the one sandbox call for a batch's plain files fails (here it crashes its child), each
    file still gets its own call and its own record, none lost, none another file's."""
    from metaextract_dask.core.model import RowBlock
    from metaextract_dask.execution import batch

    def crashing(items, config):
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(batch, "extract_plain", crashing)  # pickled by value: the child runs this one
    paths = [make_bin(str(tmp_path / f"p{i}.bin"), 200 + i, i) for i in range(6)]
    results = list(extract_many([(f"t{i}", p) for i, p in enumerate(paths)], None, BatchSettings()))
    assert not any(isinstance(r, RowBlock) for r in results)
    assert [r.file_path for r in results] == paths and all(r.success for r in results)
    assert [r.metadata["path"] for r in results] == paths


@pytest.mark.integration
def test_scan_iter_gives_a_file_of_a_block_the_whole_row_any_file_gets(tmp_path):
    """``scan_iter`` (and ``on_result``) hand over each file's catalog row: a file that came in a block gets every
    column, as a parsed file's row has (it had only the columns its record fills: ``row["variables"]`` was a KeyError)."""
    from metaextract_dask import scan_iter
    from metaextract_dask.catalog.schema import catalog_columns

    data = tmp_path / "data"
    data.mkdir()
    for i in range(100):  # batches of several: their binary files come in blocks
        make_bin(data / f"p{i}.bin", 300 + i, i)
    make_nc(str(data / "grid.nc"), 3)
    rows = {os.path.basename(r["path"]): r for r in scan_iter(str(data), progress=False)}
    assert len(rows) == 101 and all(r["success"] for r in rows.values())
    every = [name for name, _ in catalog_columns()]
    assert all(list(r) == every or sorted(r) == sorted(every) for r in rows.values())
    assert rows["p0.bin"]["variables"] is None and rows["grid.nc"]["variables"]
