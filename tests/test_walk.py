"""Discovery as tasks (one per folder, on a Client's workers) finds what the serial walk finds, with the same rules."""

from __future__ import annotations

import os

import pytest
from distributed import Client, LocalCluster

from metaextract_dask.execution.walk import iter_files, walk_files


def tree(root):
    """Nested folders, hidden names, a file link, a broken link, a folder link back up (a loop), the catalog folder."""
    data = root / "data"
    for d in ("a/b/c", "a/.hidden", "z", "cat"):
        (data / d).mkdir(parents=True)
    for i, path in enumerate(["a/one.nc", "a/b/two.h5", "a/b/c/three.bin", "a/.hidden/four.nc", "z/five.mp4", ".dot.nc",
                              "cat/part.parquet", "top.nc", "a/b/keep.txt"]):
        (data / path).write_bytes(b"x" * (i + 1))
    os.symlink(data / "top.nc", data / "z" / "link.nc")
    os.symlink(data / "missing", data / "z" / "broken.nc")
    os.symlink(data / "a", data / "a" / "b" / "up")  # a loop when links are followed
    return data


def serial(data, **rules):
    files = list(iter_files([data], **rules))
    return files, {p: (os.stat(p).st_size, os.stat(p).st_mtime) if os.path.exists(p) else (None, None) for p in files}


RULES = [dict(), dict(hidden=True), dict(include=["*.nc", "*.h5"]), dict(exclude=["a/b/*"]), dict(follow_symlinks=True),
         dict(skip=["CAT"])]


@pytest.mark.unit
@pytest.mark.parametrize("rules", RULES, ids=lambda r: ",".join(r) or "defaults")
def test_threads_walk_like_the_serial_walk(tmp_path, rules):
    data = tree(tmp_path)
    rules = {k: ([str(data / "cat")] if v == ["CAT"] else v) for k, v in rules.items()}
    files, stats = serial(data, **rules)
    found = walk_files([data], workers=2, **rules)
    assert found.files == files
    assert found.stats == stats
    assert found.links == {f for f in files if os.path.islink(f)}
    assert all(found.link_stats[f] == (os.lstat(f).st_size, os.lstat(f).st_mtime) for f in found.links)


@pytest.mark.unit
def test_small_task_budgets_split_the_walk_and_change_nothing(tmp_path, monkeypatch):
    """With a budget of 3 entries a task hands most folders back: many tasks, the same answer."""
    import metaextract_dask.execution.walk as walk

    data = tree(tmp_path)
    for i in range(30):
        (data / "z" / f"deep{i}" / "x").mkdir(parents=True)
        (data / "z" / f"deep{i}" / "x" / "f.nc").write_bytes(b"y" * i)
    calls = []
    real = walk.list_folder
    monkeypatch.setattr(walk, "list_folder", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    files, stats = serial(data)
    for budget in (3, 10**9):
        monkeypatch.setattr(walk, "TASK_ENTRIES", budget)
        calls.clear()
        found = walk.walk_files([data], workers=2)
        assert found.files == files and found.stats == stats
        assert (len(calls) > 20) if budget == 3 else (len(calls) == 1)


@pytest.fixture(scope="module")
def two_processes():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


@pytest.mark.integration
def test_worker_processes_walk_like_the_serial_walk(tmp_path, two_processes):
    """Each folder is a task on the worker processes; the answer is the serial walk's, in its order."""
    data = tree(tmp_path)
    for rules in ({}, {"follow_symlinks": True, "hidden": True}):
        files, stats = serial(data, **rules)
        found = walk_files([data], client=two_processes, **rules)
        assert found.files == files and found.stats == stats
    prefixes = two_processes.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert "list_folder" in prefixes


@pytest.mark.integration
def test_a_scan_on_a_client_lists_its_folders_on_the_workers(tmp_path, two_processes):
    from metaextract_dask import scan

    data = tree(tmp_path)
    (tmp_path / "outside.nc").write_bytes(b"out")
    os.symlink(tmp_path / "outside.nc", data / "z" / "out.nc")
    two_processes.run_on_scheduler(lambda dask_scheduler: dask_scheduler.task_prefixes.pop("list_folder", None))
    frame = scan(str(data), client=two_processes, progress=False)
    assert "list_folder" in two_processes.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    expected = sorted(f for f in iter_files([data]) if not f.endswith("link.nc"))  # a link to a scanned file: that file's row only
    assert sorted(frame["path"]) == expected
    assert frame.set_index("path").loc[str(data / "z" / "out.nc"), "format"] == "symlink"  # recorded as a link, not followed


def _dwalk_line(path) -> str:
    """A line of mpiFileUtils' ``dwalk --text`` (mfu_flist_io.c, print_file_text): mode, user, group, size, unit, mtime, path."""
    import pwd
    import stat
    import time

    st = os.lstat(path)
    kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "-"
    mode = kind + stat.filemode(st.st_mode)[1:]
    user = pwd.getpwuid(st.st_uid).pw_name
    return f"{mode} {user} {user} {st.st_size / 1024:7.3f} KB {time.strftime('%b %e %Y %H:%M', time.localtime(st.st_mtime))} {path}\n"


@pytest.mark.integration
def test_a_scan_from_a_listing_in_each_form_reads_only_listed_files_under_its_folders(tmp_path):
    """--from-list: lines, NUL-separated, find -printf records, dwalk --text (and --lite), standard input; a listed path outside the scanned
    folder and a link leading out of it are not read; a resume from a shorter listing keeps the unlisted rows."""
    import subprocess

    import pandas as pd

    data = tmp_path / "data"
    for rel in ("a/one.bin", "a/two.bin", "b/three.bin", ".hidden/four.bin"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_bytes(rel.encode() * 10)
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    (data / "b" / "leak.bin").symlink_to(secret)
    names = [str(data / "a/one.bin"), "data/b/three.bin", str(secret), str(data / ".hidden/four.bin"), str(data / "a"),
             str(data / "b/leak.bin")]
    forms = {
        "lines": "\n".join(names).encode() + b"\n",
        "nul": b"\0".join(n.encode() for n in names) + b"\0",
        "find": b"".join(f"{os.lstat(tmp_path / n if not os.path.isabs(n) else n).st_size} 1733486400.5 {n}".encode() + b"\0"
                         for n in names),
        "dwalk": "".join(_dwalk_line(tmp_path / n) for n in names).encode(),
        "dwalk-lite": "".join(f"Type={'DIR' if os.path.isdir(tmp_path / n) else 'LNK' if os.path.islink(tmp_path / n) else 'REG'} "
                              f"File={n}\n" for n in names).encode(),
    }

    def scan(listing: str, cat: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        out = subprocess.run(["metaextract", "scan", "data", "--from-list", listing, "-o", cat, "-q"], cwd=tmp_path, input=stdin,
                             capture_output=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    for form, content in [*forms.items(), ("stdin", forms["lines"])]:
        cat = str(tmp_path / f"cat-{form}")
        if form == "stdin":
            out = scan("-", cat, stdin=content)
        else:
            (tmp_path / form).write_bytes(content)
            out = scan(form, cat)
        assert b"1 listed paths are outside the scanned folders" in out.stderr, (form, out.stderr)
        rows = pd.read_parquet(cat).set_index("path")
        assert sorted(rows.index) == ["data/a/one.bin", "data/b/leak.bin", "data/b/three.bin"], form  # hidden, folder, outside: not rows
        assert rows.loc["data/b/leak.bin", "format"] == "symlink"  # recorded as a link, its target not read
        assert "TOPSECRET" not in rows.to_json() and rows["success"].all()

    cat = str(tmp_path / "cat-lines")
    (tmp_path / "short").write_text(str(data / "a/two.bin") + "\n")
    scan("short", cat)
    rows = pd.read_parquet(cat)
    assert sorted(rows["path"]) == ["data/a/one.bin", "data/a/two.bin", "data/b/leak.bin", "data/b/three.bin"]  # nothing dropped


@pytest.mark.integration
def test_another_catalog_inside_the_scanned_tree_is_left_out_with_a_note(tmp_path):
    """A catalog (a folder holding _manifest.json) and what lies beside it (X.variables, X.references, X.esm) are not data:
    before, their Parquet and JSON files became rows of format unknown. A folder that is not a catalog is walked as before,
    files named like its siblings included."""
    import subprocess

    import numpy as np

    from metaextract_dask.demo import make_cf_nc

    data = tmp_path / "data"
    (data / "runs").mkdir(parents=True)
    (data / "plain").mkdir()
    (data / "plain.txt").write_text("not beside a catalog")
    for year in (2001, 2002):
        make_cf_nc(data / "runs" / f"tas_{year}.nc", year, (-10.0, 10.0), (0.0, 20.0))
    old = data / "runs" / "old"
    for args in (["scan", str(data / "runs"), "-o", str(old), "-q", "--references"], ["export", str(old), "--to", "esm"]):
        assert subprocess.run(["metaextract", *args], capture_output=True, timeout=300).returncode == 0
    assert {p.name for p in (data / "runs").iterdir()} >= {"old", "old.variables", "old.references", "old.esm"}
    done = subprocess.run(["metaextract", "scan", str(data), "-o", str(tmp_path / "cat"), "-q"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    import metaextract_dask as me

    rows = me.read_catalog(str(tmp_path / "cat"))
    assert sorted(os.path.relpath(p, data) for p in rows["path"]) == ["plain.txt", "runs/tas_2001.nc", "runs/tas_2002.nc"]
    assert "4 catalog folders" in done.stderr and "left out, not data" in done.stderr and str(old) in done.stderr
    assert np.all(rows["success"])


@pytest.mark.unit
def test_the_walk_holds_its_files_stats_and_identities_compactly(tmp_path, monkeypatch):
    """A scan of millions holds what the walk found for every file until the run ends: its stat and identity are one
    packed value (walk.WalkedStats), not a tuple, two numbers and an identity string (about 300 bytes a file more
    than its path, which a 10-million-file scan held as 3 GB). Both read back as the walk saw them. And the walk's
    peak stays near what it keeps: a listing task's tuples are packed as they come, and the serial walk lists a folder
    when it takes it (before, every task's listing waited in the queue at once: 445 bytes a file at the peak)."""
    import gc
    import sys
    import tracemalloc

    from metaextract_dask.core.pin import identity
    from metaextract_dask.execution import walk

    monkeypatch.setattr(walk, "TASK_ENTRIES", 2000)  # ten listing tasks: what their answers cost at once shows

    data = tmp_path / "data"
    for d in range(20):
        (data / f"d{d:02d}").mkdir(parents=True)
        for i in range(1000):
            (data / f"d{d:02d}" / f"f{i:04d}.bin").write_bytes(b"x")
    gc.collect()
    tracemalloc.start()
    try:
        found = walk_files([str(data)], workers=0)
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(found.files) == 20_000
    paths = sum(sys.getsizeof(p) for p in found.files)
    beyond_paths = (held - paths) / len(found.files)
    assert beyond_paths < 200, f"{beyond_paths:.0f} bytes a file besides its path"
    at_peak = (peak - paths) / len(found.files)
    assert at_peak < 300, f"{at_peak:.0f} bytes a file besides its path at the walk's peak"
    for path in found.files[::997]:
        st = os.stat(path)
        assert found.stats[path] == (st.st_size, st.st_mtime)
        assert found.etags.get(path) == identity(st)
