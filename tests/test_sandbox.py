"""The sandbox runs a batch of files in one child: crashes and hangs cost one file."""

from __future__ import annotations

import os
import signal
import time

import pytest

from metaextract_dask.core.errors import ExtractionTimeout, ParserCrashError
from metaextract_dask.sandbox import Sandbox, child_environment

pytestmark = pytest.mark.integration


def test_batch_survives_a_crash_and_a_hang_in_its_middle():
    def pid(_):
        return os.getpid()

    def crash(_):
        os.kill(os.getpid(), signal.SIGSEGV)

    def hang(_):
        time.sleep(60)

    def fail(_):
        raise ValueError("not this one")

    box = Sandbox(memory_limit=2**30)
    try:
        calls = [("a", pid, (1,)), ("b", pid, (2,)), ("c", crash, (3,)), ("d", pid, (4,)),
                 ("e", hang, (5,)), ("f", fail, (6,)), ("g", pid, (7,))]
        replies = list(box.call_many(calls, timeout=3))
        assert [ok for ok, *_ in replies] == [True, True, False, True, False, False, True]
        first, second, crashed, after_crash, hung, failed, last = (value for _, value, _, _ in replies)
        assert first == second  # one child for consecutive files
        assert after_crash != first and last != after_crash  # a fresh child after each death
        assert isinstance(crashed, ParserCrashError) and "SIGSEGV" in str(crashed) and "c" == crashed.path
        assert isinstance(hung, ExtractionTimeout) and hung.path == "e"
        assert isinstance(failed, ValueError)
        assert box.restarts == 2
        assert all(start <= end for _, _, start, end in replies)
    finally:
        box.kill()


def test_stopping_a_batch_early_leaves_no_stale_replies():
    def echo(x):
        return x

    box = Sandbox()
    try:
        replies = box.call_many([("a", echo, ("first",)), ("b", echo, ("second",))], timeout=10)
        assert next(replies)[1] == "first"
        replies.close()  # "second" is still queued in the child
        assert box.proc is None
        assert box.call("c", 10, echo, "third") == "third"
    finally:
        box.kill()


def test_child_does_not_inherit_the_nannys_malloc_trim(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert "MALLOC_TRIM_THRESHOLD_" not in child_environment()
    def read(name):
        return os.environ.get(name)

    box = Sandbox()
    try:
        assert box.call("x", 10, read, "MALLOC_TRIM_THRESHOLD_") is None
    finally:
        box.kill()


def test_a_child_reads_the_settings_it_is_handed_without_importing_dask(tmp_path):
    """The child's settings come from its parent, whole and with sizes as ints: it never imports dask for them (0.2 s
    of every child's start, on its first file's clock), and a ``dask.config.set`` in the parent still holds there."""
    import dask.config
    import netCDF4

    from metaextract_dask.execution.batch import extract_metadata

    path = str(tmp_path / "a.nc")
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 3)
        ds.createVariable("v", "f4", ("x",))[:] = [1, 2, 3]
    box = Sandbox()
    try:
        with dask.config.set({"metaextract.streaming.timeout": 77, "metaextract.streaming.chunk-size": "2 MiB"}):
            record = box.call(path, 60, extract_metadata, path)
            seen = box.call(path, 60, eval, "(__import__('metaextract_dask.core.settings', fromlist=['_']).StreamingConfig(), "
                                            "sorted(m for m in __import__('sys').modules if m.split('.')[0] == 'dask'))")
    finally:
        box.kill()
    assert record["netcdf"]["variables"]["v"]["shape"] == [3]
    config, dask_modules = seen
    assert (config.timeout, config.chunk_size) == (77, 2 * 2**20)
    assert dask_modules == []


def test_a_child_is_handed_its_parents_readers_and_reads_no_package_metadata(tmp_path, monkeypatch):
    """The readers a parent discovered (built-ins and plugins, ``registry.available_readers``) are handed to its parser
    children: a child reads no installed package's entry points (importing ``importlib.metadata`` and reading them
    cost each child 30 ms of its start). A variable of that name the parent inherited is neither trusted there nor
    passed on."""
    from metaextract_dask.execution.batch import extract_metadata
    from metaextract_dask.readers import registry

    monkeypatch.setenv(registry.READERS_VARIABLE, repr({"binary": "os:system"}))  # inherited: not the parent's readers
    registry._discovered.cache_clear()
    try:
        parent = registry.available_readers()
    finally:
        registry._discovered.cache_clear()
    assert parent["binary"] == registry.BUILTIN_READERS["binary"]
    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(300))
    box = Sandbox()
    try:
        record = box.call(str(path), 60, extract_metadata, str(path))
        seen = box.call(str(path), 60, eval, "(__import__('metaextract_dask.readers.registry', fromlist=['_']).available_readers(), "
                                             "'importlib.metadata' in __import__('sys').modules)")
    finally:
        box.kill()
    assert record["reader"] == "binary"
    assert seen == (registry.available_readers(), False)


def test_prestarted_children_are_taken_by_threads_and_the_rest_ended(tmp_path):
    """A scan starts its sandbox children early; a thread takes one that is already up, the unused ones are ended."""
    import threading

    from metaextract_dask import sandbox as isolation

    isolation.prestart(3, 2**30)
    spares = list(isolation._spare)
    assert len(spares) == 3 and all(b.proc.poll() is None for b in spares)
    got = []

    def work():
        box = isolation.sandbox_for_thread(2**30)
        got.append((box, box.call("p", 30, os.getpid)))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    (box, pid), = got
    assert box in spares and pid == box.proc.pid  # the call ran in a child started ahead of it
    isolation.discard_spares()
    assert isolation._spare == [] and all(b.proc is None for b in spares if b is not box)
    box.kill()


#: an HDF5 filter plugin (id 300, a number HDF5 keeps for testing) that stores bytes unchanged and raises SIGSEGV in
#: the process that decodes them: a real native crash while a file's values are read (not while its structure is)
CRASHING_FILTER = r"""
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
typedef struct {
    int version; int id; unsigned encoder_present; unsigned decoder_present; const char *name;
    void *can_apply; void *set_local;
    size_t (*filter)(unsigned int, size_t, const unsigned int[], size_t, size_t *, void **);
} filter_class;
static size_t crash(unsigned int flags, size_t n, const unsigned int v[], size_t nbytes, size_t *size, void **buf) {
    if (flags & 0x0100) raise(SIGSEGV);  /* H5Z_FLAG_REVERSE: decoding */
    return nbytes;
}
static const filter_class info = {1, 300, 1, 1, "crash on read", NULL, NULL, crash};
int H5PLget_plugin_type(void) { return 0; }
/* with CRASH_FILTER_ON_LOAD set, libhdf5 crashes as soon as it asks the plugin what it is: listing the file's filters */
const void *H5PLget_plugin_info(void) { if (getenv("CRASH_FILTER_ON_LOAD")) raise(SIGSEGV); return &info; }
"""

WRITE = r"""
import sys, h5py, numpy as np
path, rows = sys.argv[1], int(sys.argv[2])
with h5py.File(path, "w") as f:
    f.create_dataset("plain", data=np.arange(100, dtype="f4"))
    d = f.create_dataset("crashing", data=np.random.default_rng(1).random((rows, 10000), dtype="f4"), chunks=(10, 10000),
                         compression=300)
    d.attrs["units"] = "K"
"""


def crashing_files(tmp_path, folder):
    """The crashing filter plugin built into ``tmp_path/plugins``, and ``small.h5`` and ``large.h5`` (0.8 MB and 12 MB:
    below and above the 10 MiB threshold) written with it into ``folder``; returns the plugin folder."""
    import shutil
    import subprocess
    import sys

    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to build the crashing filter plugin (.ci/run installs it)")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (tmp_path / "crash.c").write_text(CRASHING_FILTER)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(plugins / "libcrashfilter.so"), str(tmp_path / "crash.c")], check=True)
    env = {**os.environ, "HDF5_PLUGIN_PATH": str(plugins)}
    for name, rows in (("small.h5", 20), ("large.h5", 300)):
        subprocess.run([sys.executable, "-c", WRITE, str(folder / name), str(rows)], env=env, check=True)
    return plugins


def test_a_native_crash_reading_values_costs_statistics_not_the_row(tmp_path):
    """Before: a file whose values crash libhdf5 (here a filter plugin the user trusts; in the wild a malformed chunk)
    was one error row. Now its structure is read again without values, with a note, in the batch path (a small
    file), the large-file path and ``metaextract info``; its neighbours are untouched."""
    import json
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    plugins = crashing_files(tmp_path, data)
    env = {**os.environ, "HDF5_PLUGIN_PATH": str(plugins)}
    (data / "neighbour.bin").write_bytes(os.urandom(4096))
    read = subprocess.run([sys.executable, "-c", "import h5py, sys; h5py.File(sys.argv[1])['crashing'][...]", str(data / "small.h5")],
                          env=env, capture_output=True)
    assert read.returncode == -signal.SIGSEGV  # the crash is real

    trusted = {**os.environ, "DASK_METAEXTRACT__HDF5__PLUGIN_PATHS": json.dumps([str(plugins)])}
    cat = tmp_path / "cat"
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", str(data), "-o", str(cat), "-q"], env=trusted,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    from metaextract_dask import read_catalog

    rows = {os.path.basename(r["path"]): r for r in read_catalog(str(cat)).to_dict("records")}
    assert all(r["success"] for r in rows.values()), {k: r["error"] for k, r in rows.items()}
    for name in ("small.h5", "large.h5"):
        record = json.loads(rows[name]["metadata"])
        datasets = {d["name"]: d for d in record["hdf5"]["datasets"]}
        assert set(datasets) == {"/plain", "/crashing"} and datasets["/crashing"]["attrs"] == {"units": "K"}
        assert [f["id"] for f in datasets["/crashing"]["filters"]] == [300]
        assert "crashed" in record["streaming"]["note"] and "SIGSEGV" in record["streaming"]["note"], record["streaming"]
        assert any("structure only" in w for w in record["hdf5"]["warnings"])
        assert "stats" not in datasets["/plain"]  # no value of the file was read
    assert json.loads(rows["neighbour.bin"]["metadata"])["binary"]["entropy"]["sampled_bytes"] == 4096

    info = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "info", "--json", str(data / "small.h5")], env=trusted,
                          capture_output=True, text=True, timeout=300)
    assert info.returncode == 0, info.stderr
    assert "crashed" in json.loads(info.stdout)["streaming"]["note"]

    # libhdf5 crashing even on the structure (listing the filters loads the plugin): pyfive, pure Python, lists it as h5ls
    cat = tmp_path / "cat2"
    done = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", str(data), "-o", str(cat), "-q"],
                          env={**trusted, "CRASH_FILTER_ON_LOAD": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {os.path.basename(r["path"]): r for r in read_catalog(str(cat)).to_dict("records")}
    assert all(r["success"] for r in rows.values()), {k: r["error"] for k, r in rows.items()}
    h5ls = subprocess.run(["h5ls", "-r", str(data / "small.h5")], capture_output=True, text=True, check=True).stdout
    for name in ("small.h5", "large.h5"):
        record = json.loads(rows[name]["metadata"])
        assert record["hdf5"]["reader_library"].startswith("pyfive") and "pure Python" in record["streaming"]["note"]
        datasets = {d["name"]: d for d in record["hdf5"]["datasets"]}
        assert set(datasets) == {line.split()[0] for line in h5ls.splitlines() if "Dataset" in line}
        assert datasets["/crashing"]["filters"][0]["id"] == 300 and datasets["/crashing"]["attrs"] == {"units": "K"}
        assert datasets["/crashing"]["shape"] == [20 if name == "small.h5" else 300, 10000]


EXTRACT_TWICE = r"""
import json, sys
import psutil
import metaextract_dask as me
out = {}
for name in sys.argv[1:]:
    record, _ = me.extract_file(name)
    out[name] = {"note": record["streaming"].get("note"), "children": sorted(c.pid for c in psutil.Process().children())}
print(json.dumps(out))
"""


def test_extract_file_survives_a_native_crash_and_keeps_its_child_for_the_next_call(tmp_path):
    """``extract_file`` (the seed's one-file call, a notebook's) parsed in the caller's process: a file whose values
    crash libhdf5 ended the process, a notebook's kernel with it. It parses in a sandbox child now, as a scan does: the
    crash costs the file its statistics (small file and large-file path alike), and the next call finds the child the
    last one used instead of starting one (0.3 s a call)."""
    import json
    import subprocess
    import sys

    plugins = crashing_files(tmp_path, tmp_path)
    for name in ("a.bin", "b.bin"):
        (tmp_path / name).write_bytes(os.urandom(4096))
    trusted = {**os.environ, "DASK_METAEXTRACT__HDF5__PLUGIN_PATHS": json.dumps([str(plugins)])}
    files = [str(tmp_path / n) for n in ("small.h5", "large.h5", "a.bin", "b.bin")]
    run = subprocess.run([sys.executable, "-c", EXTRACT_TWICE, *files], env=trusted, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]  # the old code: killed by SIGSEGV (-11)
    out = json.loads(run.stdout)
    for name in files[:2]:
        assert "crashed" in out[name]["note"] and "SIGSEGV" in out[name]["note"], out[name]
    a, b = out[files[2]]["children"], out[files[3]]["children"]
    assert a and a == b, out  # the children the last call used serve the next one: none started for it


FORKED = r"""
import json, multiprocessing, sys
import psutil
import metaextract_dask as me

def work(path):
    return sorted(me.extract_file(path)[0])

if __name__ == "__main__":
    me.extract_file(sys.argv[1])
    before = sorted(c.pid for c in psutil.Process().children())
    with multiprocessing.get_context("fork").Pool(1) as pool:
        keys = pool.apply_async(work, (sys.argv[1],)).get(timeout=120)
    alive = sorted(c.pid for c in psutil.Process().children() if c.pid in before)
    print(json.dumps({"keys": keys, "before": before, "alive": alive, "again": sorted(me.extract_file(sys.argv[1])[0])}))
"""


def test_a_process_forked_after_a_call_starts_its_own_children_and_leaves_the_parents(tmp_path):
    """The sandbox children and the thread that starts them belong to the process that made them: a process forked
    from it (a user's multiprocessing pool, fork being Linux's default) that extracts a file must start its own,
    not wait on a keeper thread it does not have, and must leave its parent's children alone."""
    import json
    import subprocess
    import sys

    path = tmp_path / "a.bin"
    path.write_bytes(os.urandom(4096))
    script = tmp_path / "forked.py"
    script.write_text(FORKED)
    run = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["keys"] == out["again"] and "binary" in out["keys"]
    assert out["before"] and out["alive"] == out["before"]  # the parent's children outlived the forked process


LEFT_BEHIND = r"""
import json, sys, time
import psutil
import metaextract_dask as me

def children():
    time.sleep(0.5)
    return sorted(c.pid for c in psutil.Process().children() if c.status() != psutil.STATUS_ZOMBIE)

me.scan(sys.argv[1], progress=False)
after_scan = children()
me.extract_file(sys.argv[2])
first = children()
me.extract_file(sys.argv[2])
print(json.dumps({"after_scan": after_scan, "first": first, "second": children()}))
"""


def test_runs_leave_no_sandbox_children_behind_but_the_spares_they_keep(tmp_path):
    """A file above the streaming threshold is read by chunk tasks on a pool's threads, which take sandbox children
    and hand them back after each task. A library scan ends with none left; runs of one file keep the same few for
    the next (children started by the keeper thread do not end with the thread that used them)."""
    import json
    import subprocess
    import sys

    import h5py
    import numpy as np

    data = tmp_path / "data"
    data.mkdir()
    with h5py.File(data / "large.h5", "w") as f:  # 16 MB: the chunked, large-file path
        f.create_dataset("x", data=np.random.default_rng(0).random((2000, 1000)), chunks=(100, 1000))
    (data / "small.bin").write_bytes(os.urandom(4096))
    script = tmp_path / "left.py"
    script.write_text(LEFT_BEHIND)
    run = subprocess.run([sys.executable, str(script), str(data), str(data / "large.h5")], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["after_scan"] == [], out
    assert out["first"] and out["second"] == out["first"] and len(out["first"]) <= (os.cpu_count() or 1), out


COUNTED = r"""
import json, sys, threading, time
import psutil
import metaextract_dask as me

seen, done = set(), threading.Event()

def watch():
    while not done.is_set():
        seen.update(c.pid for c in psutil.Process().children())
        time.sleep(0.005)

watcher = threading.Thread(target=watch)
watcher.start()
frame = me.scan(sys.argv[1], workers=1, progress=False)
done.set()
watcher.join()
print(json.dumps({"children": len(seen), "ok": bool(frame["success"].all()), "rows": len(frame)}))
"""


def test_a_worker_waiting_for_its_files_chunk_tasks_lends_them_its_child(tmp_path):
    """One worker, one file large enough for chunk tasks: the worker thread only waits while the chunk pool's thread
    reads, so one sandbox child serves both (each kept its own before: two children, each a Python start with NumPy,
    h5py and netCDF4, on a machine where a scan of 94 real netCDF files took about a second)."""
    import json
    import subprocess
    import sys

    import h5py
    import numpy as np

    data = tmp_path / "data"
    data.mkdir()
    with h5py.File(data / "large.h5", "w") as f:  # 16 MB: the chunked, large-file path
        f.create_dataset("x", data=np.random.default_rng(0).random((2000, 1000)), chunks=(100, 1000))
    for i in range(5):
        (data / f"small{i}.bin").write_bytes(os.urandom(4096))
    script = tmp_path / "counted.py"
    script.write_text(COUNTED)
    run = subprocess.run([sys.executable, str(script), str(data)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["ok"] and out["rows"] == 6 and out["children"] == 1, out


def test_a_parser_process_reads_model_output_without_xarray_or_pandas(tmp_path):
    """The time axes of climate model output (a noleap calendar, months since a date, NOAA's "00:00:0.0") are read in
    the parser process without importing xarray and pandas (0.4 s of its CPU each time it did)."""
    import netCDF4
    import numpy as np

    from metaextract_dask.core.settings import StreamingConfig
    from metaextract_dask.execution.batch import extract_with_columns

    axes = [("days since 1850-01-01", "noleap"), ("months since 1958-1-1 00:00:00", "standard"),
            ("days since 1800-01-01 00:00:0.0", "gregorian"), ("days since 0001-01-01", "360_day")]
    paths = []
    for i, (units, calendar) in enumerate(axes):
        path = str(tmp_path / f"model{i}.nc")
        with netCDF4.Dataset(path, "w") as ds:
            ds.createDimension("time", None)
            t = ds.createVariable("time", "f8", ("time",))
            t.units, t.calendar = units, calendar
            t[:] = np.arange(12.0) * 30
            ds.createVariable("tas", "f4", ("time",))[:] = np.arange(12.0)
        paths.append(path)
    box = Sandbox(2**31)
    try:
        for path in paths:
            record, _ = box.call(path, 120, extract_with_columns, path, StreamingConfig())
            assert record["netcdf"]["cf_coverage"]["time"]["start"], record["netcdf"]["cf_coverage"]
        loaded = box.call("sys.modules", 30, eval, "sorted(m for m in ('xarray', 'pandas') if m in __import__('sys').modules)")
    finally:
        box.kill()
    assert loaded == []
