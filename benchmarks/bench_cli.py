"""The main job as a user runs it: ``metaextract scan`` against what they would otherwise run.

Every contender is a whole process (cold start included), run in
interleaved rounds; medians are reported as ratios, so a noisy shared
machine moves both sides alike. Cases:

(a) one 2 MB netCDF file: ``metaextract scan`` vs ``metaextract info`` and ``ncdump -h``
(b) a corpus of real HDF5 / NetCDF / media files this project did not write
    (tests/public_corpus.py) vs a serial loop of ``ncdump -h`` / ``h5ls -r -v`` /
    ``ffprobe -show_format -show_streams -count_packets``; the same without the media; and
    NCAR's netCDF files (Debian's libncarg-data) when installed
(c) four 1 GiB files with ``--checksum sha256`` vs a serial ``hashlib.sha256``
    loop in one Python process and a loop of ``sha256sum``; and the
    library's full scan on the default execution model vs the threaded path and ``cat``
(d) 2,000 small netCDF files (40 x 64 floats) vs a serial netCDF4 loop listing
    dimensions, variables and attributes; and ``--metadata-only`` against the same loop
(e) the files of (d): the default scan vs an ecgtools Builder with an xarray parsing
    function returning the same coverage columns, 2 jobs (``ECGTOOLS_PYTHON``: a
    Python with ecgtools, default this one)
(s) statistics of uncompressed data: a 400 MB float32 variable in netCDF-4 and
    in HDF5, ``extract_file`` with SEQUENTIAL (one chunk read at a time: one
    core) vs a user's NumPy loop reading the same variable slab by slab for
    min, max and mean; MB/s per core (target >= 500)

Run: ``python benchmarks/bench_cli.py [--rounds 3] [--cases abcdes] [--out benchmarks/RESULTS-cli.md]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the public corpus builder lives with the tests
MiB, GiB = 2**20, 2**30

PEER_LOOP = r"""
for f in "$@"; do
  case "$f" in
    *.nc|*.cdf) ncdump -h "$f" ;;
    *) if h5ls "$f" >/dev/null 2>&1; then h5ls -r -v "$f"; else ffprobe -v error -show_format -show_streams -count_packets "$f"; fi ;;
  esac
done > /dev/null 2>&1
"""

HASH_LOOP = """
import hashlib, sys
for path in sys.argv[1:]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    print(h.hexdigest(), path)
"""

NETCDF_LOOP = """
import sys, netCDF4
for path in sys.argv[1:]:
    with netCDF4.Dataset(path) as ds:
        dims = {k: len(v) for k, v in ds.dimensions.items()}
        variables = {k: (v.dimensions, v.shape, v.dtype.str, {a: v.getncattr(a) for a in v.ncattrs()}) for k, v in ds.variables.items()}
        attrs = {a: ds.getncattr(a) for a in ds.ncattrs()}
        print(path, len(dims), len(variables), len(attrs))
"""


def run(cmd: list[str], **kw) -> float:
    """Wall seconds of one whole process; its failure stops the benchmark."""
    t = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    took = time.perf_counter() - t
    if done.returncode not in (0, 1):  # 1: some files failed, as real archives have
        raise SystemExit(f"{' '.join(cmd[:4])} ... exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return took


def rounds(contenders: dict[str, object], n: int) -> dict[str, float]:
    """Medians of interleaved rounds: each round runs every contender once, in turn."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(n):
        for name, fn in contenders.items():
            times[name].append(fn())  # type: ignore[operator]
    return {name: statistics.median(ts) for name, ts in times.items()}


def script_file(work: str, name: str, text: str) -> str:
    """A yardstick's script, written where the benchmark works."""
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def scan_cmd(paths: list[str], catalog: str, *extra: str) -> list[str]:
    return ["metaextract", "scan", *paths, "-o", catalog, "-q", "--force", *extra]


def case_a(work: str, n: int) -> list[str]:
    import netCDF4
    import numpy as np

    folder = os.path.join(work, "one")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tas.nc")
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("y", 100)
        ds.createDimension("x", 50)
        v = ds.createVariable("tas", "f4", ("time", "y", "x"))
        v.units = "K"
        v[:] = np.random.default_rng(0).random((100, 100, 50), dtype=np.float32)
    cat = os.path.join(work, "cat-a")
    med = rounds({
        "scan": lambda: run(scan_cmd([folder], cat)),
        "info": lambda: run(["metaextract", "info", path, "--json"]),
        "ncdump": lambda: run(["ncdump", "-h", path]),
    }, n)
    size = os.path.getsize(path) / MiB
    return [f"| (a) 1 file ({size:.1f} MiB netCDF) | scan {med['scan']:.2f} s | info {med['info']:.2f} s; ncdump -h {med['ncdump']:.2f} s | "
            f"scan / info = {med['scan'] / med['info']:.2f} | scan <= 1.5 s and <= 3x info: "
            f"{'met' if med['scan'] <= 1.5 and med['scan'] <= 3 * med['info'] else 'not met'} |"]


def flat_copies(folder: str, files: list[str]) -> list[str]:
    """The files copied into one flat folder (the scan and the loop see the same files)."""
    os.makedirs(folder, exist_ok=True)
    out = []
    for i, p in enumerate(files):
        dst = os.path.join(folder, f"{i:03d}-{os.path.basename(p)}")
        if not os.path.exists(dst):
            shutil.copy(p, dst)
        out.append(dst)
    return out


#: NCAR's netCDF files that come with NCL (Debian's libncarg-data): CF model output, station records, grids
NCARG = "/usr/share/ncarg/data"


def case_b(work: str, n: int) -> list[str]:
    """The public corpus with its media, without them, and (when installed) NCAR's climate files: each against the
    peers' CLI loop on the same files."""
    import glob

    import public_corpus

    corpus = public_corpus.build(os.path.join(work, "corpus"))
    files = sorted(p for paths in corpus.values() for p in paths)
    arrays = sorted(corpus["hdf5"] + corpus["netcdf"])
    ncar = sorted(p for p in glob.glob(os.path.join(NCARG, "**", "*"), recursive=True) if p.endswith((".nc", ".cdf")))
    sets = {"all": (flat_copies(os.path.join(work, "corpus-files"), files),
                    f"{len(files)} real files ({', '.join(f'{len(v)} {k}' for k, v in corpus.items())})"),
            "arrays": (flat_copies(os.path.join(work, "corpus-arrays"), arrays),
                       f"the same without the media: {len(arrays)} HDF5 and netCDF files")}
    if ncar:
        sets["ncar"] = (flat_copies(os.path.join(work, "ncar-files"), ncar), f"NCAR's {len(ncar)} netCDF files ({NCARG}: CF model output, "
                        "station records, grids; classic, 64-bit offset, netCDF-4)")
        copies = [p for i in range(10) for p in flat_copies(os.path.join(work, "ncar-x10", f"copy{i}"), ncar)]
        sets["ncar x10"] = (copies, f"the same, 10 copies in 10 folders: {len(copies)} files, the scale of an archive's folder")
    script = script_file(work, "peers.sh", PEER_LOOP)
    contenders = {}
    for key, (linked, _) in sets.items():
        cat = os.path.join(work, f"cat-b-{key.replace(' ', '')}")
        top = os.path.commonpath([os.path.dirname(p) for p in linked])
        contenders[f"scan-{key}"] = lambda top=top, cat=cat: run(scan_cmd([top], cat))
        contenders[f"peers-{key}"] = lambda linked=linked: run(["bash", script, *linked])
    if "ncar x10" in sets:  # the same work as the header loop's: structure and attributes, no values
        top = os.path.commonpath([os.path.dirname(p) for p in sets["ncar x10"][0]])
        contenders["meta-ncar x10"] = lambda: run(scan_cmd([top], os.path.join(work, "cat-b-ncar-meta"), "--metadata-only"))
    med = rounds(contenders, n)
    rows = []
    for key, (_, what) in sets.items():
        ratio = med[f"peers-{key}"] / med[f"scan-{key}"]
        rows.append(f"| (b{'' if key == 'all' else ' ' + key}) {what} | scan {med[f'scan-{key}']:.2f} s | serial ncdump/h5ls/ffprobe loop "
                    f"{med[f'peers-{key}']:.2f} s | {ratio:.2f}x | >= 3x: {'met' if ratio >= 3 else 'not met'} |")
    if "meta-ncar x10" in med:
        ratio = med["peers-ncar x10"] / med["meta-ncar x10"]
        rows.append(f"| (b ncar x10, --metadata-only) the same 940 files | scan {med['meta-ncar x10']:.2f} s | the same loop "
                    f"{med['peers-ncar x10']:.2f} s | {ratio:.2f}x | >= 3x: {'met' if ratio >= 3 else 'not met'} |")
    if not ncar:
        rows.append(f"| (b ncar) not run: {NCARG} is absent (apt-get install libncarg-data) | | | | |")
    return rows


def make_big(folder: str, count: int, size: int) -> list[str]:
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    out = []
    for i in range(count):
        path = os.path.join(folder, f"big{i}.bin")
        if not os.path.exists(path) or os.path.getsize(path) != size:
            rng = np.random.default_rng(i)
            with open(path, "wb") as f:
                for _ in range(size // (64 * MiB)):
                    f.write(rng.integers(0, 256, 64 * MiB, dtype=np.uint8).tobytes())
        out.append(path)
    return out


def case_c(work: str, n: int) -> list[str]:
    folder = os.path.join(work, "big")
    files = make_big(folder, 4, GiB)
    for p in files:  # into the page cache
        subprocess.run(["cat", p], stdout=subprocess.DEVNULL, check=True)
    hash_py = script_file(work, "hash_loop.py", HASH_LOOP)
    cat = os.path.join(work, "cat-c")
    med = rounds({
        "scan": lambda: run(scan_cmd([folder], cat, "--checksum", "sha256")),
        "hashlib": lambda: run([sys.executable, hash_py, *files]),
        "sha256sum": lambda: run(["bash", "-c", 'for f in "$@"; do sha256sum "$f"; done', "loop", *files]),
    }, n)
    r_py, r_sum = med["hashlib"] / med["scan"], med["sha256sum"] / med["scan"]
    rows = [f"| (c) 4 x 1 GiB, --checksum sha256 | scan {med['scan']:.2f} s | hashlib loop {med['hashlib']:.2f} s; sha256sum loop "
            f"{med['sha256sum']:.2f} s | {r_py:.2f}x hashlib, {r_sum:.2f}x sha256sum | >= 1.5x and >= 4x: "
            f"{'met' if r_py >= 1.5 and r_sum >= 4 else 'not met'} |"]
    rows += library_full_scan(files, n)
    return rows


def library_full_scan(files: list[str], n: int) -> list[str]:
    """In one Python process, same files, interleaved: ``scan()`` with its defaults (Dask's local scheduler for a
    few files), ParallelExtractor on a threaded Client (started once, as in a notebook), the threaded path
    (StreamingExtractor on dask.threaded, no Client) and cat."""
    code = f"""
import json, os, subprocess, time, statistics
from metaextract_dask import ParallelExtractionConfig, ParallelExtractor, StreamingConfig, StreamingExtractor, scan
from metaextract_dask.execution.cluster import ClientScope
files = {files!r}
cfg = StreamingConfig(strategy="windowed")
t = time.perf_counter()
scope = ClientScope(model="thread_pool", dashboard=False)
client = scope.__enter__()
start = time.perf_counter() - t
def default():
    frame = scan(os.path.dirname(files[0]), strategy="windowed", progress=False)
    assert frame["success"].all() and len(frame) == len(files)
def client_run():
    ParallelExtractor(ParallelExtractionConfig(execution_model="thread_pool", streaming=cfg), client=client).extract(files)
def threaded():
    for f in files:
        StreamingExtractor(cfg).extract(f)
def cat():
    subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
out = {{"default": [], "client": [], "threaded": [], "cat": []}}
for _ in range({n} + 1):
    for name, fn in (("default", default), ("client", client_run), ("threaded", threaded), ("cat", cat)):
        t = time.perf_counter(); fn(); out[name].append(time.perf_counter() - t)
scope.__exit__(None, None, None)
med = {{k: statistics.median(v[1:]) for k, v in out.items()}}  # the first round warms up
med["start"] = start
print(json.dumps(med))
"""
    import json

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    med = json.loads(done.stdout.strip().splitlines()[-1])
    gb = len(files) * GiB / 1e9
    ratio = med["threaded"] / med["default"]
    return [f"| (c') library full scan, xxh3, windowed, 4 x 1 GiB | scan() defaults {med['default']:.2f} s ({gb / med['default']:.1f} GB/s); "
            f"threaded Client {med['client']:.2f} s (started once in {med['start']:.2f} s) | threaded path {med['threaded']:.2f} s; "
            f"cat {med['cat']:.2f} s | default / threaded = {ratio:.2f}x, Client / threaded = {med['threaded'] / med['client']:.2f}x; "
            f"{med['cat'] / med['default']:.2f}x cat | default >= threaded: {'met' if ratio >= 0.95 else 'not met'} |"]


def small_netcdf(work: str) -> list[str]:
    """2,000 small netCDF files (40 x 64 floats, a time axis): case (d)'s and (e)'s."""
    import netCDF4
    import numpy as np

    folder = os.path.join(work, "small")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(2000):
        path = os.path.join(folder, f"s{i:05d}.nc")
        if not os.path.exists(path):
            with netCDF4.Dataset(path, "w") as ds:
                ds.title = f"small file {i}"
                ds.createDimension("time", None)
                ds.createDimension("x", 64)
                t = ds.createVariable("time", "f8", ("time",))
                t.units, t.calendar = "days since 2000-01-01", "standard"
                v = ds.createVariable("tas", "f4", ("time", "x"), fill_value=-999.0)
                v.units = "K"
                t[:] = np.arange(40) + i
                v[:, :] = rng.random((40, 64), dtype=np.float32) * 300
        files.append(path)
    return files


def case_d(work: str, n: int) -> list[str]:
    files = small_netcdf(work)
    folder = os.path.dirname(files[0])
    loop_py = script_file(work, "netcdf_loop.py", NETCDF_LOOP)
    cat = os.path.join(work, "cat-d")
    half = len(files) // 2
    med = rounds({
        "scan": lambda: run(scan_cmd([folder], cat)),
        "meta": lambda: run(scan_cmd([folder], cat + "-meta", "--metadata-only")),
        "loop": lambda: run([sys.executable, loop_py, *files]),
        "split": lambda: run_together([[sys.executable, loop_py, *files[:half]], [sys.executable, loop_py, *files[half:]]]),
    }, n)
    ratio, meta = med["loop"] / med["scan"], med["loop"] / med["meta"]
    return [f"| (d) 2,000 small netCDF files (40 x 64 floats) | scan {med['scan']:.2f} s | serial netCDF4 loop {med['loop']:.2f} s; "
            f"the same loop split over two processes at once {med['split']:.2f} s ({med['loop'] / med['split']:.2f}x: the ceiling of the "
            f"loop's own work on both cores) | {ratio:.2f}x | >= 2x: {'met' if ratio >= 2 else 'not met'} |",
            f"| (d') the same, --metadata-only | scan {med['meta']:.2f} s | the same loop {med['loop']:.2f} s | {meta:.2f}x | "
            f">= 1.3x: {'met' if meta >= 1.3 else 'not met'} |"]


#: ecgtools' documented use: a Builder over the folder, a parsing function that opens each file with xarray and
#: returns the columns a catalog needs (here the coverage columns the scan also makes), 2 jobs (joblib)
ECGTOOLS = """
import sys
import numpy as np
import xarray as xr
from ecgtools import Builder

def parse(path):
    with xr.open_dataset(path) as ds:
        row = {"path": path, "variables": sorted(ds.data_vars)}
        for name, role in (("time", "time"), ("lat", "lat"), ("latitude", "lat"), ("lon", "lon"), ("longitude", "lon")):
            if name in ds.coords or name in ds.variables:
                values = ds[name].values
                row[role + "_min"], row[role + "_max"] = str(values.min()), str(values.max())
    return row

builder = Builder(paths=[sys.argv[1]], depth=0, joblib_parallel_kwargs={"n_jobs": 2})
builder.build(parsing_func=parse)
assert len(builder.df) == int(sys.argv[3]), len(builder.df)
builder.df.to_csv(sys.argv[2], index=False)
"""


def case_e(work: str, n: int) -> list[str]:
    """(d)'s files: the default scan against ecgtools (in the Python of ``ECGTOOLS_PYTHON``, default this one)."""
    files = small_netcdf(work)
    folder = os.path.dirname(files[0])
    python = os.environ.get("ECGTOOLS_PYTHON", sys.executable)
    if subprocess.run([python, "-c", "import ecgtools"], capture_output=True).returncode:
        return [f"| (e) not run: {python} has no ecgtools (pip install ecgtools, or ECGTOOLS_PYTHON=a Python that has it) | | | | |"]
    version = subprocess.run([python, "-c", "import ecgtools; print(ecgtools.__version__)"], capture_output=True, text=True).stdout.strip()
    script = script_file(work, "ecgtools_build.py", ECGTOOLS)
    cat = os.path.join(work, "cat-e")
    med = rounds({
        "scan": lambda: run(scan_cmd([folder], cat)),
        "ecgtools": lambda: run([python, script, folder, os.path.join(work, "ecgtools.csv"), str(len(files))]),
    }, n)
    ratio = med["ecgtools"] / med["scan"]
    return [f"| (e) 2,000 small netCDF files, default scan (statistics, checksums, coverage) | scan {med['scan']:.2f} s | ecgtools "
            f"{version} Builder, an xarray parsing function returning variables and time, lat and lon ranges, 2 jobs: "
            f"{med['ecgtools']:.2f} s | {ratio:.2f}x | >= 3x: {'met' if ratio >= 3 else 'not met'} |"]


def run_together(cmds: list[list[str]]) -> float:
    """Wall seconds of several whole processes started at once, until the last ends."""
    t = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for cmd in cmds]
    codes = [p.wait() for p in procs]
    took = time.perf_counter() - t
    if any(codes):
        raise SystemExit(f"{cmds[0][:2]} ... exited {codes}")
    return took


STATS_LOOP = """
import sys, time, json, numpy as np
path, kind = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if kind == "netcdf":
    import netCDF4
    f = netCDF4.Dataset(path); v = f.variables["v"]; v.set_auto_mask(False)
else:
    import h5py
    f = h5py.File(path, "r"); v = f["v"]
lo, hi, total, n = np.inf, -np.inf, 0.0, 0
for i in range(0, v.shape[0], 10):
    a = np.asarray(v[i:i + 10])
    lo, hi, total, n = min(lo, a.min()), max(hi, a.max()), total + float(a.sum(dtype=np.float64)), n + a.size
f.close()
print(json.dumps(time.perf_counter() - t))
"""

STATS_OURS = """
import sys, time, json
from metaextract_dask import StreamingConfig, extract_file
path = sys.argv[1]
cfg = StreamingConfig(strategy="sequential", checksum=None)
t = time.perf_counter()
record = extract_file(path, cfg)[0]
took = time.perf_counter() - t
section = record[record["reader"]]
stats = [e["stats"] for e in (section.get("variables") or {}).values() if e.get("stats")] or \
        [d["stats"] for d in section.get("datasets", []) if d.get("stats")]
assert stats and all(s["exact"] for s in stats), stats
print(json.dumps(took))
"""


def make_stats_files(folder: str) -> dict[str, str]:
    """A 400 MB float32 variable (100 x 1000 x 1000), contiguous and uncompressed, in netCDF-4 and in HDF5."""
    import h5py
    import netCDF4
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    paths = {"netcdf": os.path.join(folder, "stats.nc"), "hdf5": os.path.join(folder, "stats.h5")}
    if not os.path.exists(paths["netcdf"]):
        with netCDF4.Dataset(paths["netcdf"], "w") as ds:
            for name, n in (("t", 100), ("y", 1000), ("x", 1000)):
                ds.createDimension(name, n)
            v = ds.createVariable("v", "f4", ("t", "y", "x"))
            for i in range(100):
                v[i] = np.random.default_rng(i).random((1000, 1000), dtype=np.float32)
    if not os.path.exists(paths["hdf5"]):
        with h5py.File(paths["hdf5"], "w") as f:
            d = f.create_dataset("v", (100, 1000, 1000), "f4")
            for i in range(100):
                d[i] = np.random.default_rng(i).random((1000, 1000), dtype=np.float32)
    return paths


def case_s(work: str, n: int) -> list[str]:
    import json

    paths = make_stats_files(os.path.join(work, "stats"))
    ours, loop = script_file(work, "stats_ours.py", STATS_OURS), script_file(work, "stats_loop.py", STATS_LOOP)
    rows = []
    for kind, path in paths.items():
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # into the page cache
        inner = lambda cmd: json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])  # noqa: E731
        med = rounds({"ours": lambda: inner([sys.executable, ours, path]), "loop": lambda: inner([sys.executable, loop, path, kind])}, n)
        mb = os.path.getsize(path) / 1e6
        rows.append(f"| (s) statistics, 400 MB uncompressed float32 {kind} variable, SEQUENTIAL (one core) | {mb / med['ours']:.0f} MB/s "
                    f"({med['ours']:.2f} s) | NumPy loop (min, max, mean by slabs) {mb / med['loop']:.0f} MB/s ({med['loop']:.2f} s) | "
                    f"{med['loop'] / med['ours']:.2f}x | >= 500 MB/s per core: {'met' if mb / med['ours'] >= 500 else 'not met'} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="abcd")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "metaextract-bench-cli"))
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS-cli.md"))
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rows = []
    for case in args.cases:
        fn = {"a": case_a, "b": case_b, "c": case_c, "d": case_d, "e": case_e, "s": case_s}[case]
        print(f"case ({case}) ...", file=sys.stderr, flush=True)
        rows += fn(args.work, args.rounds)
        print(rows[-1], file=sys.stderr, flush=True)
    import platform

    text = "\n".join([
        "# The CLI as a user runs it, against what they would otherwise run",
        "",
        f"`python benchmarks/bench_cli.py --rounds {args.rounds} --cases {args.cases}` on {platform.node()} "
        f"({os.cpu_count()} cores), {time.strftime('%Y-%m-%d %H:%M')}. Whole processes, cold start included, "
        f"{args.rounds} interleaved rounds, medians; default settings unless shown.",
        "",
        "| case | metaextract | what a user would otherwise run | ratio | target |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ])
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
