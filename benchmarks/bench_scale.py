"""Millions of files: `metaextract scan` against a naive serial loop, as whole processes.

    python benchmarks/bench_scale.py --rounds 3 --sizes 10000,100000
    python benchmarks/bench_scale.py --million          # one 1,000,000-file run, recorded once

Cases (each a whole process, cold start included, interleaved rounds, medians):

- tiny files (512 random bytes, 100 folders): the default scan against a
  serial Python loop that walks, stats, reads, sha256-hashes and writes one
  Parquet table (the loop a user writes in ten lines); peak RSS of each
  process tree;
- resumes of the 100,000-file catalog: nothing changed, and one file touched;
- a 3,000,000-row catalog (synthetic rows): open, and a query by variable,
  time range and bounding box;
- the client's CPU per parsed file, as on a cluster (a scheduler and a worker
  of their own processes; ``--client-files`` small netCDF files,
  ``--metadata-only``): what sets the pace of a run of millions.

Results go to ``benchmarks/RESULTS-scale.md`` with the command that made them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_cli import run_together, small_netcdf  # noqa: E402  (it puts tests/ on the path: servers)
from common import TreeRSS  # noqa: E402
from servers import separate_scheduler  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

NAIVE = r'''
import hashlib, os, sys
import pyarrow as pa, pyarrow.parquet as pq
root, out = sys.argv[1], sys.argv[2]
rows = {"path": [], "size": [], "mtime": [], "sha256": []}
for folder, dirs, files in os.walk(root):
    for name in files:
        path = os.path.join(folder, name)
        st = os.stat(path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        rows["path"].append(path); rows["size"].append(st.st_size)
        rows["mtime"].append(st.st_mtime); rows["sha256"].append(digest)
pq.write_table(pa.table(rows), out)
'''

#: the same loop over every other folder (``part`` 0 or 1): two of them at once are the loop's own work on both cores,
#: the most a tool doing at least that work can reach on this machine (without merging their tables)
NAIVE_HALF = NAIVE.replace("root, out = sys.argv[1], sys.argv[2]", "root, out, part = sys.argv[1], sys.argv[2], int(sys.argv[3])").replace(
    "for folder, dirs, files in os.walk(root):",
    "for folder, dirs, files in (w for i, d in enumerate(sorted(os.listdir(root))) if i % 2 == part for w in os.walk(os.path.join(root, d))):")


def make_tiny(root: str, count: int, folders: int = 100, size: int = 512) -> str:
    """``count`` files of ``size`` random bytes in ``folders`` folders (made once, kept for later rounds)."""
    done = os.path.join(root, ".complete")
    if os.path.exists(done):
        return root
    per = -(-count // folders)
    made = 0
    for d in range(folders):
        folder = os.path.join(root, f"d{d:03d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(min(per, count - made)):
            with open(os.path.join(folder, f"f{i:06d}.bin"), "wb") as f:
                f.write(os.urandom(size))
            made += 1
    open(done, "w").close()
    return root


def whole(cmd: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes, the process and its children) of one whole process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    with TreeRSS(proc.pid) as rss:
        _, err = proc.communicate()
    took = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:4])} ... exited {proc.returncode}: {err.decode()[-800:]}")
    return took, rss.peak_total


def scan_cmd(root: str, catalog: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "metaextract_dask.cli", "scan", root, "-o", catalog, "-q", *extra]


def tiny_case(work: str, count: int, rounds: int) -> dict:
    root = make_tiny(os.path.join(work, f"tiny{count}"), count)
    naive = os.path.join(work, "naive.py")
    with open(naive, "w") as f:
        f.write(NAIVE)
    half = os.path.join(work, "naive_half.py")
    with open(half, "w") as f:
        f.write(NAIVE_HALF)
    empty = os.path.join(work, "empty")
    os.makedirs(empty, exist_ok=True)
    out: dict[str, list] = {"naive": [], "scan": [], "local": [], "cluster": [], "both cores": [], "start": []}
    cluster = dict(os.environ, DASK_METAEXTRACT__CLUSTER__DASHBOARD_MIN_SECONDS="0")  # the dashboard's cluster at any size
    for _ in range(rounds):
        out["naive"].append(whole([sys.executable, naive, root, os.path.join(work, "naive.parquet")]))
        out["both cores"].append((run_together([[sys.executable, half, root, os.path.join(work, f"naive{i}.parquet"), str(i)] for i in (0, 1)]), 0))
        out["start"].append(whole(scan_cmd(empty, os.path.join(work, "cat-empty"), "--force")))
        out["scan"].append(whole(scan_cmd(root, os.path.join(work, f"cat{count}"), "--force")))
        out["local"].append(whole(scan_cmd(root, os.path.join(work, f"cat{count}"), "--force", "--local")))
        out["cluster"].append(whole(scan_cmd(root, os.path.join(work, f"cat{count}"), "--force"), env=cluster))
    return {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in out.items()}


VOCABULARY = [("tas", "air_temperature"), ("pr", "precipitation_flux"), ("psl", "air_pressure_at_sea_level"),
              ("uas", "eastward_wind"), ("vas", "northward_wind"), ("huss", "specific_humidity"), ("ts", "surface_temperature"),
              ("sst", "sea_surface_temperature"), ("sic", "sea_ice_area_fraction"), ("zg", "geopotential_height")]


def make_catalog(folder: str, rows: int, per_part: int = 100_000) -> str:
    """A synthetic catalog of ``rows`` CF-like netCDF rows (regional boxes, decades of time, a 700-byte record each),
    written by the catalog's own part writer (row groups of 4,096 rows, in folder order) with its manifest."""
    import json
    import random

    from metaextract_dask.catalog.schema import catalog_columns
    from metaextract_dask.catalog.writer import _OpenPart

    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return folder
    os.makedirs(folder, exist_ok=True)
    rnd = random.Random(1)
    import datetime

    epoch = datetime.datetime(1850, 1, 1)
    names = []
    for p in range(-(-rows // per_part)):
        name = f"part-{p:05d}-synthetic.parquet"
        part = _OpenPart(folder, name, "parquet", catalog_columns())
        batch = []
        for i in range(p * per_part, min(rows, (p + 1) * per_part)):
            var, std = VOCABULARY[(i // 1000) % len(VOCABULARY)]  # a folder per 1,000 files of one variable
            path = f"/archive/model{i // 300_000}/run{(i // 10_000) % 30:02d}/{var}/{var}_{i:08d}.nc"
            start = epoch + datetime.timedelta(days=rnd.randrange(0, 250 * 365))
            lat, lon = rnd.uniform(-80, 70), rnd.uniform(-180, 160)
            record = {"path": path, "format": "netcdf4", "reader": "netcdf", "netcdf": {"variables": {var: {"dims": ["time", "lat", "lon"],
                      "shape": [12, 64, 128], "dtype": "float32", "attrs": {"standard_name": std, "units": "K"}}},
                      "global_attrs": {"Conventions": "CF-1.8", "source": "synthetic " * 20}}}
            batch.append({"path": path, "path_bytes": path.encode(), "size": 1_000_000 + i, "mtime": 1.7e9 + i, "format": "netcdf4",
                          "reader": "netcdf", "reader_version": "1", "success": True, "extracted_at": 1.75e9 + i,
                          "variables": [var, "time", "lat", "lon"], "standard_names": [std, "time", "latitude", "longitude"],
                          "time_start": start, "time_end": start + datetime.timedelta(days=365), "calendar": "standard",
                          "lat_min": lat, "lat_max": lat + 10, "lon_min": lon, "lon_max": lon + 20, "crosses_antimeridian": False,
                          "n_variables": 4, "n_dimensions": 3, "metadata": json.dumps(record)})
            if len(batch) == 4096:
                part.write(batch)
                batch = []
        part.write(batch)
        part.commit()
        names.append(name)
    with open(os.path.join(folder, "_manifest.json"), "w") as f:
        json.dump({"format": "parquet", "schema_version": 5, "parts": names, "rows": rows, "roots": ["/archive"],
                   "columns": [c for c, _ in catalog_columns()], "superseded": 0}, f)
    open(done, "w").close()
    return folder


OPEN = "import sys, metaextract_dask as me; me.read_catalog(sys.argv[1], columns=%r)"
QUERY = ("import sys, metaextract_dask as me; f = me.query_catalog(sys.argv[1], variable='tas', time=('1990-01-01', '1999-12-31'), "
         "bbox=(-10, 35, 30, 60)); print(len(f))")
WHOLE = "import sys, pandas as pd; pd.read_parquet(sys.argv[1])"
OPEN_COLUMNS = ["path", "size", "format", "variables", "time_start", "time_end", "lat_min", "lat_max", "lon_min", "lon_max"]


def catalog_case(work: str, rows: int, rounds: int) -> dict:
    cat = make_catalog(os.path.join(work, f"catalog{rows}"), rows)
    runs = {"open (10 columns, no record JSON)": [sys.executable, "-c", OPEN % OPEN_COLUMNS, cat],
            "query by variable, time range and box": [sys.executable, "-c", QUERY, cat],
            "pandas.read_parquet of the whole catalog": [sys.executable, "-c", WHOLE, cat]}
    out: dict[str, list] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, cmd in runs.items():
            out[name].append(whole(cmd))
    return {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in out.items()}


def resume_case(work: str, count: int, rounds: int) -> dict:
    """Re-scans of the ``count``-file catalog (made by the tiny case): nothing changed, then one file touched."""
    root = make_tiny(os.path.join(work, f"tiny{count}"), count)
    cat = os.path.join(work, f"cat{count}")
    whole(scan_cmd(root, cat))  # the catalog complete and settled
    victim = os.path.join(root, "d050", "f000010.bin")
    out: dict[str, list] = {"nothing changed": [], "one file touched": []}
    for _ in range(rounds):
        out["nothing changed"].append(whole(scan_cmd(root, cat)))
        os.utime(victim)
        out["one file touched"].append(whole(scan_cmd(root, cat)))
    return {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in out.items()}


#: the scanning process's own CPU (``resource.getrusage``) around the CLI's ``main``, printed last on stderr
CPU_WRAPPER = r'''
import resource, sys
from metaextract_dask.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
own = resource.getrusage(resource.RUSAGE_SELF)
print(f"cpu {own.ru_utime + own.ru_stime}", file=sys.stderr)
'''


def client_cpu(cmd: list[str]) -> float:
    """The scanning process's own CPU seconds (not its children's) for ``metaextract`` arguments ``cmd``."""
    proc = subprocess.run([sys.executable, "-c", CPU_WRAPPER, *cmd], capture_output=True, text=True, check=True)
    return float(proc.stderr.strip().splitlines()[-1].split()[1])


def client_case(work: str, count: int, rounds: int) -> dict:
    """The client's CPU per parsed file, as on a cluster: a scheduler and a worker (2 threads) of their own processes,
    ``count`` small netCDF files (bench_cli's 40 x 64 floats), ``--metadata-only``; one file's scan subtracted (the
    client's start, imports and catalog). What a run of millions of files costs the one process that writes the
    catalog (docs/hpc.md)."""
    import shutil

    small = small_netcdf(work)
    root, one = os.path.join(work, f"netcdf{count}"), os.path.join(work, "netcdf1")
    for i in range(count):
        folder = os.path.join(root, f"d{i // len(small):02d}")
        target = os.path.join(folder, f"c{i:06d}.nc")
        if not os.path.exists(target):
            os.makedirs(folder, exist_ok=True)
            shutil.copyfile(small[i % len(small)], target)
    os.makedirs(one, exist_ok=True)
    if not os.path.exists(os.path.join(one, "c.nc")):
        shutil.copyfile(small[0], os.path.join(one, "c.nc"))
    many, single = [], []
    with separate_scheduler(workers=1, nthreads=2) as (address, _dashboard, _workers):
        for _ in range(rounds):
            single.append(client_cpu(["scan", one, "-o", os.path.join(work, "cat-client1"), "-q", "--force", "--metadata-only",
                                      "--scheduler", address]))
            many.append(client_cpu(["scan", root, "-o", os.path.join(work, "cat-client"), "-q", "--force", "--metadata-only",
                                    "--scheduler", address]))
    return {"many": statistics.median(many), "single": statistics.median(single)}


def machine() -> str:
    import platform

    return f"{platform.node()} ({os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--catalog-rows", type=int, default=3_000_000)
    parser.add_argument("--million", action="store_true", help="one scan of 1,000,000 tiny files, recorded once (about 5 minutes)")
    parser.add_argument("--client-files", type=int, default=10_000, help="small netCDF files of the client case (0: skip it)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "metaextract-bench-scale"))
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS-scale.md"))
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    mb = 2**20
    lines = [f"`python benchmarks/bench_scale.py --rounds {args.rounds} --sizes {args.sizes} --catalog-rows {args.catalog_rows}"
             f"{' --million' if args.million else ''}` on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}. Whole processes, cold "
             f"start included, {args.rounds} interleaved rounds, medians; peak RSS of the process and its children. Default settings.",
             "", "## Tiny files (512 random bytes, 100 folders)", "",
             "| files | `metaextract scan` | naive serial loop (walk, stat, read, sha256, one Parquet table) | ratio (loop / scan) | "
             "scan peak RSS | loop peak RSS | `scan --local`: time, peak RSS | `scan` on the dashboard's cluster at any size: time, "
             "peak RSS | the loop on both cores at once (two processes, every other folder): time, ratio to the serial loop |",
             "|---|---|---|---|---|---|---|---|---|"]
    sizes = [int(x) for x in args.sizes.split(",")]
    peaks, local, clustered = {}, {}, {}
    for count in sizes:
        got = tiny_case(args.work, count, args.rounds)
        (tn, mn), (ts, ms), (tl, ml), (tc, mc) = got["naive"], got["scan"], got["local"], got["cluster"]
        peaks[count], local[count], clustered[count], start = ms, ml, mc, got["start"][0]
        tb = got["both cores"][0]
        lines.append(f"| {count:,} | {ts:.2f} s | {tn:.2f} s | {tn / ts:.2f}x | {ms / mb:.0f} MB | {mn / mb:.0f} MB | "
                     f"{tl:.2f} s, {ml / mb:.0f} MB | {tc:.2f} s, {mc / mb:.0f} MB | {tb:.2f} s, {tn / tb:.2f}x |")
        print(lines[-1], flush=True)
    lines += ["", f"A scan of an empty folder (the command's own start: Python, its imports, the catalog's writing): {start:.2f} s. "
                  "The last column is the ceiling of the target: a tool that does at least the loop's work, spread perfectly over "
                  "both cores, with no start of its own, reaches the loop's ratio there."]
    if len(sizes) > 1:
        lines += ["", f"Peak RSS at {sizes[-1]:,} files over {sizes[0]:,}: {peaks[sizes[-1]] / peaks[sizes[0]]:.2f}x with the default "
                      f"settings (which start the dashboard's in-memory cluster for a scan expected to take "
                      f"`metaextract.cluster.dashboard-min-seconds` or more), "
                      f"{local[sizes[-1]] / local[sizes[0]]:.2f}x on Dask's local threads at both sizes (`--local`), "
                      f"{clustered[sizes[-1]] / clustered[sizes[0]]:.2f}x on the dashboard's cluster at both sizes."]
    if args.million:
        root = make_tiny(os.path.join(args.work, "tiny1000000"), 1_000_000, folders=1000)
        naive = os.path.join(args.work, "naive.py")
        first, _ = whole([sys.executable, naive, root, os.path.join(args.work, "naive.parquet")])  # reads the tree into the page cache
        took, peak = whole(scan_cmd(root, os.path.join(args.work, "cat1000000"), "--force"))
        loop, loop_peak = whole([sys.executable, naive, root, os.path.join(args.work, "naive.parquet")])
        lines += ["", f"One scan of 1,000,000 tiny files (1,000 folders): {took:.0f} s, peak RSS {peak / mb:.0f} MB; the naive loop "
                      f"after it {loop:.0f} s, peak RSS {loop_peak / mb:.0f} MB ({loop / took:.2f}x; its first run, which read the "
                      f"tree into the page cache, {first:.0f} s)."]
        print(lines[-1], flush=True)
    count = sizes[-1]
    lines += ["", f"## Resumes of the {count:,}-file catalog", "", "| re-scan | seconds | peak RSS |", "|---|---|---|"]
    for name, (t, m) in resume_case(args.work, count, args.rounds).items():
        lines.append(f"| {name} | {t:.2f} s | {m / mb:.0f} MB |")
        print(lines[-1], flush=True)
    lines += ["", f"## A catalog of {args.catalog_rows:,} rows (synthetic CF netCDF rows, written by the catalog's own part writer)",
              "", "| step | seconds | peak RSS |", "|---|---|---|"]
    for name, (t, m) in catalog_case(args.work, args.catalog_rows, args.rounds).items():
        lines.append(f"| {name} | {t:.2f} s | {m / mb:.0f} MB |")
        print(lines[-1], flush=True)
    if args.client_files:
        got = client_case(args.work, args.client_files, args.rounds)
        per = (got["many"] - got["single"]) / (args.client_files - 1)
        lines += ["", f"## The client's CPU per parsed file ({args.client_files:,} small netCDF files, a scheduler and a worker "
                      "of their own processes, `--metadata-only`)", "",
                  f"The scanning process's own CPU (`resource.getrusage`): {got['many']:.2f} s for {args.client_files:,} files, "
                  f"{got['single']:.2f} s for one (its start, imports and catalog): {per * 1000:.3f} ms a parsed file."]
        print(lines[-1], flush=True)
    text = "\n".join(["# Millions of files", "", *lines, ""])
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
