"""The main job: ``metaextract scan`` writes a crash-safe, resumable catalog."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from metaextract_dask import read_catalog, scan
from metaextract_dask.catalog import part_files
from metaextract_dask.demo import make_bin, make_h5, mixed_corpus

SCAN = ["metaextract", "scan", "--dashboard-address", "127.0.0.1:0", "-q"]


def cli(*args, **kw):
    return subprocess.run([*SCAN, *args], capture_output=True, text=True, timeout=300, **kw)


def check_catalog(folder, allowed: set[str]) -> pd.DataFrame:
    """Reads without error; no duplicate path; every row whole."""
    frame = pd.read_parquet(folder)
    assert frame["path"].is_unique
    assert set(frame["path"]) <= allowed
    for row in frame.itertuples():
        assert isinstance(row.success, (bool,)) or row.success in (True, False)
        if row.success:
            assert json.loads(row.metadata)["path"] == row.path
        else:
            assert row.error and row.path in row.error
    return frame


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan") / "data"
    files = mixed_corpus(folder, n_h5=200, n_nc=150, n_video=4, n_bin=250, n_corrupt=6)
    return str(folder), {p for v in files.values() for p in v}, set(files["corrupt"])


@pytest.mark.integration
def test_sigkill_at_several_points_then_resume(corpus, tmp_path):
    folder, files, corrupt = corpus
    out = str(tmp_path / "catalog")
    args = [*SCAN, folder, "-o", out, "--flush-every", "10", "-j", "1", "--retries", "0"]
    rng = random.Random(7)
    seen_rows = []
    for wait_for_parts in (1, None, 3, None):
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        if wait_for_parts is None:
            time.sleep(rng.uniform(0.5, 2.5))  # a random moment, maybe during start-up
        else:
            before = len(part_files(out)) if os.path.isdir(out) else 0
            while time.time() < deadline and proc.poll() is None:
                if os.path.isdir(out) and len(part_files(out)) >= before + wait_for_parts:
                    break
                time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if os.path.isdir(out) and part_files(out):
            frame = check_catalog(out, files)
            seen_rows.append(len(frame))
    assert seen_rows and seen_rows == sorted(seen_rows)  # each resumed run kept what was saved
    assert seen_rows[0] < len(files)  # the kills really came mid-scan
    recorded = set(check_catalog(out, files)["path"])
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == (1 if corrupt - recorded else 0)  # 1: a corrupt file failed in this run (a killed one may have recorded them all)
    frame = check_catalog(out, files)
    assert set(frame["path"]) == files and len(frame) == len(files)
    assert set(frame.loc[~frame["success"], "path"]) == corrupt


@pytest.mark.integration
def test_resume_extracts_only_changed_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    paths = [make_bin(data / f"f{i}.bin", 1000 + i, i) for i in range(12)] + [make_h5(data / "g.h5", 3)]
    out = str(tmp_path / "cat")
    first = scan(str(data), out, workers=1, dashboard_address="127.0.0.1:0", progress=False)
    assert len(first) == 13 and first["success"].all()
    time.sleep(0.01)
    make_bin(data / "f3.bin", 5000, 99)  # changed
    make_bin(data / "new.bin", 300, 5)  # new
    from metaextract_dask.scanning import ScanSummary

    summary = ScanSummary()
    second = scan(str(data), out, workers=1, dashboard_address="127.0.0.1:0", progress=False, summary=summary)
    assert summary.found == 14 and summary.skipped == 12 and summary.extracted == 2
    assert len(second) == 14 and second["path"].is_unique
    assert second.set_index("path").loc[str(data / "f3.bin"), "size"] == 5000
    unchanged = first.set_index("path").loc[paths[0], "extracted_at"]
    assert second.set_index("path").loc[paths[0], "extracted_at"] == unchanged
    forced = ScanSummary()
    scan(str(data), out, workers=1, dashboard_address="127.0.0.1:0", progress=False, force=True, summary=forced)
    assert forced.skipped == 0 and forced.extracted == 14


@pytest.mark.integration
def test_catalog_opens_in_pandas_pyarrow_and_dask(tmp_path):
    files = mixed_corpus(tmp_path / "d", n_h5=3, n_nc=3, n_video=2, n_bin=3, n_corrupt=2)
    out = str(tmp_path / "cat")
    result = cli(str(tmp_path / "d"), "-o", out)
    assert result.returncode == 1, result.stderr  # two corrupt files
    import dask.dataframe as dd
    import pyarrow.dataset as ds

    total = sum(len(v) for v in files.values())
    assert len(pd.read_parquet(out)) == total
    assert ds.dataset(out, format="parquet").count_rows() == total
    ddf = dd.read_parquet(out)
    by_format = ddf[ddf["success"]].groupby("format")["size"].count().compute()
    assert by_format["hdf5"] == 3 and by_format["mp4"] == 2
    frame = read_catalog(out)
    video = frame[frame["format"] == "mp4"].iloc[0]
    assert video["codec"] == "h264" and video["width"] == 64 and video["height"] == 48 and video["media_duration"] > 0
    nc = frame[frame["reader"] == "netcdf"].iloc[0]
    assert nc["n_variables"] == 1 and nc["n_dimensions"] == 1
    manifest = json.load(open(os.path.join(out, "_manifest.json")))
    assert manifest["rows"] == total and manifest["failed"] == 2


@pytest.mark.integration
def test_exit_codes_and_quiet_progress(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    make_bin(good / "a.bin", 100, 1)
    ok = cli(str(good), "-o", str(tmp_path / "c1"))
    assert ok.returncode == 0, ok.stderr
    assert "\r[" not in ok.stderr and "1 extracted (0 failed)" in ok.stdout
    (good / "empty.bin").touch()
    some_failed = cli(str(good), "-o", str(tmp_path / "c2"))
    assert some_failed.returncode == 1 and "empty file" in some_failed.stdout
    assert os.path.exists(tmp_path / "c2" / "_manifest.json")
    assert cli(str(tmp_path / "nope"), "-o", str(tmp_path / "c3")).returncode == 2
    assert cli(str(good)).returncode == 2  # -o missing
    assert cli(str(good), "-o", str(tmp_path / "c4"), "--strategy", "best").returncode == 2


@pytest.mark.integration
def test_progress_bar_on_a_terminal(tmp_path):
    """Under a pseudo-terminal the bar shows files, bytes, rate and errors."""
    import pty

    data = tmp_path / "d"
    data.mkdir()
    for i in range(5):
        make_bin(data / f"{i}.bin", 2000, i)
    (data / "empty.bin").touch()
    code = (f"import sys; from metaextract_dask.cli import main; "
            f"sys.exit(main(['scan', {str(data)!r}, '-o', {str(tmp_path / 'c')!r}, '--dashboard-address', '127.0.0.1:0']))")
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-c", code])
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 1
    assert "100%" in text and "6/6 files" in text and "file/s" in text and "1 error" in text and "Dask dashboard: http://127.0.0.1:" in text


@pytest.mark.unit
def test_walking_rules(tmp_path):
    from metaextract_dask.execution.walk import iter_files

    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / ".hidden").mkdir()
    for name in ("a.h5", "b.nc", "sub/c.h5", ".dot.h5", ".hidden/d.h5", "sub/skip.tmp"):
        (d / name).write_bytes(b"x")
    (d / "sub" / "loop").symlink_to(d)  # a symlink loop
    os.mkfifo(d / "pipe.bin")
    found = {os.path.relpath(p, d) for p in iter_files([str(d)])}
    assert found == {"a.h5", "b.nc", "sub/c.h5", "sub/skip.tmp", "sub/loop", "pipe.bin"}  # loop listed as a link, not walked
    assert {os.path.relpath(p, d) for p in iter_files([str(d)], include=["*.h5"], hidden=True)} == {"a.h5", "sub/c.h5", ".dot.h5", ".hidden/d.h5"}
    assert {os.path.relpath(p, d) for p in iter_files([str(d)], exclude=["*.tmp", "sub/loop", "pipe.bin"], follow_symlinks=True)} == {"a.h5", "b.nc", "sub/c.h5"}
    assert "sub/c.h5" not in {os.path.relpath(p, d) for p in iter_files([str(d)], skip=[str(d / "sub")])}


@pytest.mark.integration
def test_jsonl_catalog_and_special_files_get_records(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    make_bin(data / "a.bin", 500, 1)
    os.mkfifo(data / "fifo.h5")
    out = str(tmp_path / "cat")
    frame = scan(str(data), out, format="jsonl", workers=1, dashboard_address="127.0.0.1:0", progress=False)
    assert all(p.endswith(".jsonl") for p in part_files(out))
    rows = {os.path.basename(r.path): r for r in frame.itertuples()}
    assert rows["a.bin"].success and not rows["fifo.h5"].success and "FIFO" in rows["fifo.h5"].error
    lines = [json.loads(line) for p in part_files(out) for line in open(p)]
    record = next(line["metadata"] for line in lines if line["path"].endswith("a.bin"))
    assert isinstance(record, dict) and record["path"].endswith("a.bin")  # an object, not JSON inside a string
    assert isinstance(rows["a.bin"].metadata, dict) and "entropy" in rows["a.bin"].metadata["binary"]
    with pytest.raises(ValueError, match="holds a jsonl catalog"):
        scan(str(data), out, format="parquet", progress=False)


@pytest.mark.integration
def test_scan_without_output_returns_a_dataframe(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    make_h5(data / "x.h5", 4)
    frame = scan(str(data), workers=1, dashboard_address="127.0.0.1:0", progress=False)
    assert list(frame["format"]) == ["hdf5"] and frame["n_datasets"].iloc[0] == 1
