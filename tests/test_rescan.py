"""Make-like re-scans: only what changed, what a newer reader would read differently, and failures only when asked."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from metaextract_dask import scan
from metaextract_dask.catalog.read import part_files
from metaextract_dask.demo import make_bin, make_h5, make_nc
from metaextract_dask.scanning import ScanSummary

pytestmark = pytest.mark.integration


def folder(root):
    data = root / "data"
    data.mkdir()
    make_h5(data / "a.h5", 500)
    make_h5(data / "b.h5", 700)
    make_nc(data / "c.nc", 600)
    make_nc(data / "d.nc", 800)
    make_bin(data / "e.bin", 3000, 1)
    (data / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 600)
    return data


def rescan(data, catalog, **options):
    summary = ScanSummary()
    frame = scan(str(data), str(catalog), summary=summary, progress=False, **options)
    return summary, frame


def names(plan):
    return sorted((os.path.basename(p), reason) for p, reason in plan)


def test_touching_one_file_re_extracts_exactly_that_file(tmp_path):
    data, catalog = folder(tmp_path), tmp_path / "cat"
    first, frame = rescan(data, catalog)
    assert first.extracted == 6 and first.failed == 1
    assert set(frame["reader_version"].dropna()) == {"1"} and frame["reader_version"].notna().sum() == 5
    before = frame.set_index("path")["extracted_at"]
    st = os.stat(data / "c.nc")
    os.utime(data / "c.nc", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    dry, plan = rescan(data, catalog, dry_run=True)
    assert names(dry.plan) == [("c.nc", "changed")] and list(plan.columns) == ["path", "reason"]
    second, frame = rescan(data, catalog)
    assert second.extracted == 1 and second.skipped == 5 and len(frame) == 6
    after = frame.set_index("path")["extracted_at"]
    changed = sorted(os.path.basename(p) for p in after.index if after[p] != before[p])
    assert changed == ["c.nc"]


def test_bumping_a_readers_version_re_extracts_exactly_its_files(tmp_path, monkeypatch):
    from metaextract_dask.readers.hdf5 import HDF5ChunkReader

    data, catalog = folder(tmp_path), tmp_path / "cat"
    rescan(data, catalog, isolate=False)
    monkeypatch.setattr(HDF5ChunkReader, "version", "2")
    dry, _ = rescan(data, catalog, isolate=False, dry_run=True)
    assert names(dry.plan) == [("a.h5", "reader upgraded"), ("b.h5", "reader upgraded")]  # not the failed one, not netcdf
    second, frame = rescan(data, catalog, isolate=False)  # in this process: the parser sees the bumped version
    assert second.extracted == 2
    versions = frame.set_index(frame["path"].map(os.path.basename))["reader_version"]
    assert versions["a.h5"] == versions["b.h5"] == "2" and versions["c.nc"] == "1"
    third, _ = rescan(data, catalog, isolate=False)
    assert third.extracted == 0


def test_failed_files_are_remembered_and_retried_only_when_asked(tmp_path):
    data, catalog = folder(tmp_path), tmp_path / "cat"
    rescan(data, catalog)
    again, frame = rescan(data, catalog)
    assert again.extracted == 0 and len(frame) == 6
    assert frame.set_index(frame["path"].map(os.path.basename)).loc["broken.h5", "error_type"] == "CorruptFileError"
    dry, _ = rescan(data, catalog, dry_run=True, retry_failed=True)
    assert names(dry.plan) == [("broken.h5", "previously failed")]
    retried, _ = rescan(data, catalog, retry_failed=True)
    assert retried.extracted == 1 and retried.failed == 1


def test_cli_dry_run_lists_reasons_and_touches_nothing(tmp_path):
    data, catalog = folder(tmp_path), tmp_path / "cat"
    cli = [sys.executable, "-m", "metaextract_dask.cli"]
    assert subprocess.run([*cli, "scan", str(data), "-o", str(catalog), "-q"], capture_output=True, timeout=300).returncode == 1
    make_bin(data / "new.bin", 100, 7)
    with open(data / "e.bin", "ab") as f:
        f.write(b"more")
    parts, manifest = part_files(str(catalog)), (catalog / "_manifest.json").read_bytes()
    run = subprocess.run([*cli, "scan", str(data), "-o", str(catalog), "--dry-run", "--retry-failed"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    lines = sorted(tuple(reversed(line.split("\t"))) for line in run.stdout.splitlines())
    assert [(os.path.basename(p), r) for p, r in lines] == [("broken.h5", "previously failed"), ("e.bin", "changed"), ("new.bin", "new")]
    assert "would extract 3 of 7 files (1 new, 1 changed, 1 previously failed); 4 up to date" in run.stderr
    assert part_files(str(catalog)) == parts and (catalog / "_manifest.json").read_bytes() == manifest
    assert not any(name.startswith("_lock") for name in os.listdir(catalog))
    frame = pd.read_parquet(catalog)
    assert len(frame) == 6  # the dry run extracted nothing


def test_the_resume_index_holds_little_per_file():
    """A resume holds the index column-wise: about 40 bytes per catalog row (a hash of the name, size, mtime, identity,
    outcome, reader and extras in NumPy arrays), where a Python entry per row cost 120 bytes beyond the name it kept
    (and a dataclass per row, 400): at ten million files, 0.4 GB instead of 5."""
    import tracemalloc

    from metaextract_dask.catalog.index import CatalogIndex

    CatalogIndex().add([{"path": "/warm", "size": 1}])  # NumPy and xxhash imported before measuring

    rows = [{"path": f"/data/d{i // 100:03d}/f{i % 100:04d}.bin", "path_bytes": f"/data/d{i // 100:03d}/f{i % 100:04d}.bin".encode(),
             "size": 512, "mtime": 1.5e9 + i, "reader": "".join(["bin", "ary"]), "reader_version": "1", "success": True,
             "etag": f"local:2049:{i}:{i}"} for i in range(20_000)]  # each reader name its own string, as unpickled rows have
    tracemalloc.start()
    try:
        index = CatalogIndex()
        index.add(rows)
        len(index)  # sorted: what a resume holds
        per_file = tracemalloc.get_traced_memory()[0] / len(rows)
    finally:
        tracemalloc.stop()
    assert len(index) == len(rows) and index.reason(rows[7]["path"], 512, 1.5e9 + 7, {"binary": "1"}) is None
    assert index.reason(rows[7]["path"], 513, 1.5e9 + 7, {"binary": "1"}) == "changed"
    assert index.reason(rows[7]["path"], 512, 1.5e9 + 7, {"binary": "2"}) == "reader upgraded"
    assert index.reason("/data/other.bin", 512, 1.5e9, {"binary": "1"}) == "new"
    assert index.reason(rows[7]["path"], 512, 1.5e9 + 7, {"binary": "1"}, etag="local:2049:7:8") == "changed"
    assert per_file < 60, per_file


def test_a_new_catalog_is_opened_and_asked_without_numpy(tmp_path):
    """A new scan's parser children start once the walk knows how many files there are; opening a new catalog, and
    asking its empty index which files to drop and why each is read, imported NumPy first (70 ms of a 0.5 s one-file
    scan). In a fresh process: nothing of that needs it."""
    script = ("import sys; from metaextract_dask.catalog.writer import CatalogWriter; w = CatalogWriter(sys.argv[1]); "
              "assert w.forget_missing([sys.argv[1]], ['/x/a.bin']) == 0 and len(w.index) == 0; "
              "assert w.index.reasons(['/x/a.bin'], [(1, 1.0)], {}) == ['new'] and w.index.absent([1]) == 0; "
              "print('numpy' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "cat")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_a_scan_of_20000_files_holds_a_bounded_number_of_rows(tmp_path):
    """Memory flat in the number of files: a scan of 20,000 small files holds at most one row group of rows (4,096) in
    the client at once, counted by the writer itself, and writes them as one part of several row groups; the run
    keeps no results (``keep_results=False``). Before, a part of ``flush_every`` rows was held whole."""
    import pyarrow.parquet as pq

    from metaextract_dask.catalog.writer import ROW_GROUP

    data = tmp_path / "data"
    for d in range(20):
        (data / f"d{d:02d}").mkdir(parents=True)
        for i in range(1000):
            (data / f"d{d:02d}" / f"f{i:04d}.bin").write_bytes(os.urandom(64) + bytes([i % 256]) * 64)
    summary = ScanSummary()
    scan(str(data), str(tmp_path / "cat"), summary=summary, progress=False, as_frame=False, execution="local")
    assert summary.extracted == summary.rows == 20_000 and summary.failed == 0
    assert 0 < summary.most_rows_held <= ROW_GROUP
    metas = [pq.ParquetFile(p).metadata for p in part_files(str(tmp_path / "cat"))]
    groups = [m.row_group(g).num_rows for m in metas for g in range(m.num_row_groups)]
    assert sum(groups) == 20_000 and max(groups) <= ROW_GROUP and len(metas) < len(groups)  # parts of several row groups
