"""A run of netCDF-4 files as one virtual dataset in Icechunk: metaextract against VirtualiZarr, whole processes.

    pip install virtualizarr obstore   # the yardstick (VirtualiZarr 2.x; not a dependency of this project)
    python benchmarks/bench_virtual.py --rounds 3 --files 200

The same ``--files`` netCDF-4 files (a run split in time, written by xarray through libnetcdf: 8 steps of a
100 x 200 float32 field each, chunked 2 x 100 x 200, zlib) become one Icechunk repository twice per round:

- metaextract: ``metaextract scan DATA -o CAT --references`` then ``metaextract export CAT --to icechunk``, and as one
  command, ``metaextract scan DATA -o CAT --references --export icechunk`` (the export in the scan's process);
- VirtualiZarr: ``open_virtual_mfdataset`` (its HDF parser, the local object store registry) with its parallel
  setting that is fastest here (each is timed first: none, a thread pool, a process pool, dask), then
  ``vds.vz.to_icechunk`` and a commit.

Rounds are interleaved, whole processes (cold start included), medians; after the last round both repositories are
opened with xarray and their arrays compared value by value (``xarray.testing.assert_equal``). Results go to
``benchmarks/RESULTS-virtual.md`` with the command that made them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_scale import machine, whole  # noqa: E402
from common import command_line, write_report  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

VIRTUALIZARR = r'''
import sys, concurrent.futures
import icechunk
from obstore.store import LocalStore
from virtualizarr import open_virtual_mfdataset
from virtualizarr.parsers import HDFParser
from virtualizarr.registry import ObjectStoreRegistry

data, repo_path, parallel = sys.argv[1], sys.argv[2], sys.argv[3]
import glob, os
files = sorted(glob.glob(os.path.join(data, "*.nc")))
registry = ObjectStoreRegistry({"file://": LocalStore()})
how = {"none": False, "threads": concurrent.futures.ThreadPoolExecutor, "processes": concurrent.futures.ProcessPoolExecutor,
       "dask": "dask"}[parallel]
vds = open_virtual_mfdataset([f"file://{f}" for f in files], registry=registry, parser=HDFParser(), parallel=how,
                             combine="by_coords")
config = icechunk.RepositoryConfig.default()
prefix = f"file://{data.rstrip('/')}/"
config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(prefix, icechunk.local_filesystem_store(data)))
repo = icechunk.Repository.create(icechunk.local_filesystem_storage(repo_path), config,
                                  authorize_virtual_chunk_access=icechunk.containers_credentials({prefix: None}))
session = repo.writable_session("main")
vds.vz.to_icechunk(session.store)
session.commit("virtualizarr")
'''


def make_run(folder: str, count: int) -> str:
    import numpy as np
    import pandas as pd
    import xarray as xr

    if os.path.isdir(folder) and len(os.listdir(folder)) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for day in range(count):
        time_ = pd.date_range("2001-01-01", periods=8, freq="3h") + pd.Timedelta(days=day)
        ds = xr.Dataset({"tas": (("time", "lat", "lon"), (rng.random((8, 100, 200)) * 40 + 250).astype("f4"), {"units": "K"})},
                        coords={"time": time_, "lat": np.linspace(-89.1, 89.1, 100), "lon": np.linspace(0, 358.2, 200)},
                        attrs={"source": "bench", "experiment_id": "run"})
        ds.to_netcdf(os.path.join(folder, f"tas_{day:04d}.nc"),
                     encoding={"tas": {"zlib": True, "chunksizes": (2, 100, 200)}, "time": {"units": "hours since 2001-01-01"}})
    return folder


def ours(data: str, work: str, *extra: str, one: bool = False) -> tuple[float, int]:
    """The scan and the export as two commands, or with ``one`` as one (``scan --export icechunk``)."""
    cat = os.path.join(work, "cat")
    for p in (cat, cat + ".icechunk", cat + ".references"):
        shutil.rmtree(p, ignore_errors=True)
    scan = [sys.executable, "-m", "metaextract_dask.cli", "scan", data, "-o", cat, "--references", "-q", *extra]
    if one:
        return whole([*scan, "--export", "icechunk"])
    t0, rss0 = whole(scan)
    t1, rss1 = whole([sys.executable, "-m", "metaextract_dask.cli", "export", cat, "--to", "icechunk"])
    return t0 + t1, max(rss0, rss1)


def theirs(data: str, work: str, parallel: str) -> tuple[float, int]:
    """VirtualiZarr's run with one parallel setting: (seconds, peak RSS), or (inf, 0) when it fails (a process pool
    breaks here: BrokenProcessPool)."""
    repo = os.path.join(work, f"vz-{parallel}.icechunk")
    shutil.rmtree(repo, ignore_errors=True)
    script = os.path.join(work, "virtualizarr_run.py")
    with open(script, "w") as f:
        f.write(VIRTUALIZARR)
    took, peak = whole([sys.executable, script, data, repo, parallel])
    return (took, peak) if os.path.isdir(repo) and os.listdir(repo) and _committed(repo) else (float("inf"), 0)


def _committed(repo: str) -> bool:
    import icechunk

    try:
        snapshots = list(icechunk.Repository.open(icechunk.local_filesystem_storage(repo)).ancestry(branch="main"))
    except Exception:  # noqa: BLE001 - no repository: the run failed
        return False
    return any(s.message == "virtualizarr" for s in snapshots)


def same_arrays(work: str, data: str, parallel: str) -> str:
    """Both repositories opened with xarray: equal arrays, value by value (or why not)."""
    import icechunk
    import xarray as xr

    prefix = f"file://{data.rstrip('/')}/"
    creds = icechunk.containers_credentials({prefix: None})
    mine = icechunk.Repository.open(icechunk.local_filesystem_storage(os.path.join(work, "cat.icechunk")), authorize_virtual_chunk_access=creds)
    vz = icechunk.Repository.open(icechunk.local_filesystem_storage(os.path.join(work, f"vz-{parallel}.icechunk")), authorize_virtual_chunk_access=creds)
    a = xr.open_zarr(mine.readonly_session("main").store, group="run.bench", consolidated=False)
    b = xr.open_zarr(vz.readonly_session("main").store, consolidated=False)
    try:
        xr.testing.assert_equal(a.load(), b.load())
    except AssertionError as exc:
        return "differ: " + " ".join(str(exc).split())[:300]
    return f"equal ({', '.join(f'{k} {v}' for k, v in a.sizes.items())})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "metaextract-bench-virtual"))
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS-virtual.md"))
    args = parser.parse_args()
    import importlib.util

    missing = [m for m in ("virtualizarr", "obstore") if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"bench_virtual: the yardstick needs {' and '.join(missing)}: pip install virtualizarr obstore")
    os.makedirs(args.work, exist_ok=True)
    data = make_run(os.path.join(args.work, f"data{args.files}"), args.files)
    settings = {p: theirs(data, args.work, p)[0] for p in ("none", "threads", "processes", "dask")}
    fastest = min(settings, key=settings.get)  # type: ignore[arg-type]
    print("VirtualiZarr's parallel settings, one run each:", {k: round(v, 2) for k, v in settings.items()}, "fastest:", fastest, flush=True)
    runs: dict[str, list[tuple[float, int]]] = {"one (metadata only)": [], "one": [], "ours (metadata only)": [], "ours": [], "theirs": []}
    for _ in range(args.rounds):
        runs["one (metadata only)"].append(ours(data, args.work, "--metadata-only", one=True))
        runs["one"].append(ours(data, args.work, one=True))
        runs["ours (metadata only)"].append(ours(data, args.work, "--metadata-only"))
        runs["ours"].append(ours(data, args.work))  # last: its repository is the one compared
        runs["theirs"].append(theirs(data, args.work, fastest))
        print({k: round(v[-1][0], 2) for k, v in runs.items()}, flush=True)
    verdict = same_arrays(args.work, data, fastest)
    mb = 2**20
    med = {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in runs.items()}
    lines = [f"`{command_line()}` on {machine()}, {time.strftime('%Y-%m-%d %H:%M')}. {args.files} netCDF-4 files (8 steps of "
             "100 x 200 float32, chunks 2 x 100 x 200, zlib) as one virtual dataset in a local Icechunk repository; whole "
             f"processes, cold start included, {args.rounds} interleaved rounds, medians; peak RSS of the process tree.", "",
             "| | seconds | peak RSS |", "|---|---|---|",
             f"| `metaextract scan --references` (statistics too, the default) + `metaextract export --to icechunk` | {med['ours'][0]:.2f} s "
             f"| {med['ours'][1] / mb:.0f} MB |",
             f"| `metaextract scan --references --metadata-only` + `metaextract export --to icechunk` | {med['ours (metadata only)'][0]:.2f} s "
             f"| {med['ours (metadata only)'][1] / mb:.0f} MB |",
             f"| `metaextract scan --references --export icechunk` (one command: the scan, then the export in its process) | "
             f"{med['one'][0]:.2f} s | {med['one'][1] / mb:.0f} MB |",
             f"| `metaextract scan --references --metadata-only --export icechunk` | {med['one (metadata only)'][0]:.2f} s | "
             f"{med['one (metadata only)'][1] / mb:.0f} MB |",
             f"| VirtualiZarr `open_virtual_mfdataset(parallel={fastest!r})` + `to_icechunk` | {med['theirs'][0]:.2f} s | "
             f"{med['theirs'][1] / mb:.0f} MB |", "",
             f"Ratio (VirtualiZarr / metaextract): two commands {med['theirs'][0] / med['ours'][0]:.2f}x with statistics, "
             f"{med['theirs'][0] / med['ours (metadata only)'][0]:.2f}x metadata only; one command "
             f"{med['theirs'][0] / med['one'][0]:.2f}x with statistics, {med['theirs'][0] / med['one (metadata only)'][0]:.2f}x "
             "metadata only. VirtualiZarr's parallel settings, one "
             f"run each before the rounds: {', '.join(f'{k} ' + ('failed' if v == float('inf') else f'{v:.2f} s') for k, v in settings.items())}.",
             f"The two repositories' arrays, opened with xarray: {verdict}."]
    print("\n".join(lines))
    write_report("\n".join(["# Virtual datasets in Icechunk", "", *lines, ""]), args.out)


if __name__ == "__main__":
    main()
