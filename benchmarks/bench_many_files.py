"""Many small files: NetCDF and HDF5 files of about 20 KB.

Files per second of a parallel run on a LocalCluster (two worker processes,
sandboxed parsers, the default settings), against, in the same run:
  - a serial loop calling the same per-file function (``extract_metadata``) in one process;
  - a loop running ``ncdump -h`` / ``h5ls -r`` per file (what users do by hand).
Scheduling overhead per file = (wall time x worker threads - sum of per-file
extraction times) / files: what Dask, batching and the sandbox add.

    python benchmarks/bench_many_files.py            # 5,000 files
    python benchmarks/bench_many_files.py --quick    # 100 files
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import command_line, machine_line, table, write_report  # noqa: E402


def make_files(folder: str, n: int) -> list[str]:
    import h5py
    import netCDF4
    import numpy as np

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        values = rng.normal(size=2000).astype("f4")  # 8 KB of data, ~20 KB files
        if i % 2:
            path = os.path.join(folder, f"obs_{i:05d}.nc")
            with netCDF4.Dataset(path, "w", format="NETCDF3_CLASSIC" if i % 4 == 1 else "NETCDF4") as ds:
                ds.title = f"station {i}"
                ds.createDimension("time", None)
                ds.createDimension("x", 2000)
                t = ds.createVariable("time", "f8", ("time",))
                t.units = "hours since 2000-01-01"
                t[:] = [float(i)]
                v = ds.createVariable("temp", "f4", ("x",))
                v.units = "K"
                v[:] = values
                ds.createVariable("qc", "i4", ("x",))[:] = np.arange(2000, dtype="i4")
        else:
            path = os.path.join(folder, f"grid_{i:05d}.h5")
            with h5py.File(path, "w") as f:
                f.attrs["station"] = i
                f.create_dataset("temp", data=values, chunks=(500,), compression="gzip")
                f.create_dataset("qc", data=np.arange(2000, dtype="i4"))
                f["temp"].attrs["units"] = "K"
        paths.append(path)
    return paths


def serial(paths: list[str]) -> float:
    from metaextract_dask import extract_metadata

    t = time.perf_counter()
    for p in paths:
        extract_metadata(p)
    return time.perf_counter() - t


def peer_tools(paths: list[str]) -> float:
    t = time.perf_counter()
    for p in paths:
        cmd = ["ncdump", "-h", p] if p.endswith(".nc") else ["h5ls", "-r", p]
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def parallel(paths: list[str], client) -> tuple[float, float, int, int]:
    from metaextract_dask import ParallelExtractionConfig, ParallelExtractor

    ex = ParallelExtractor(ParallelExtractionConfig(), client=client)
    t = time.perf_counter()
    results, metrics = ex.extract(paths)
    wall = time.perf_counter() - t
    assert all(r.success for r in results), [r.error for r in results if not r.success][:3]
    return wall, sum(r.duration for r in results), len(ex.last_batches), metrics.total_files


def compare(folder: str, n: int) -> dict[str, object]:
    """Make ``n`` files in ``folder`` and time the parallel run, the serial
    loop and the peer tools on them: the figures and the table rows."""
    from distributed import Client, LocalCluster

    paths = make_files(folder, n)
    size = sum(os.path.getsize(p) for p in paths) / n
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        parallel(paths[:20], client)  # warm: worker imports and sandboxes started
        wall, work, batches, counted = parallel(paths, client)
        threads = sum(client.nthreads().values())
    t_serial = serial(paths)
    t_peer = peer_tools(paths)
    rows = [
        ["ncdump -h / h5ls -r per file (reference)", f"{t_peer:.2f}", f"{n / t_peer:.0f}", f"{t_peer / wall:.2f}"],
        ["serial loop, extract_metadata in one process", f"{t_serial:.2f}", f"{n / t_serial:.0f}", f"{t_serial / wall:.2f}"],
        [f"ParallelExtractor, LocalCluster 2 processes ({batches} batch tasks)", f"{wall:.2f}", f"{n / wall:.0f}", "1.00"],
    ]
    overhead_ms = max(0.0, wall * threads - work) / n * 1000
    summary = (f"Parallel over serial loop: **{t_serial / wall:.2f}x**; over ncdump/h5ls: **{t_peer / wall:.2f}x**; "
               f"scheduling overhead per file: **{overhead_ms:.2f} ms** ({counted} files counted by the scheduler plugin). "
               "Targets: >= 1.5x the serial loop, >= 5x ncdump/h5ls, < 1 ms per file.")
    return {"size": size, "table": table(["run", "seconds", "files/s", "parallel speed-up over it"], rows), "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--files", type=int)
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "RESULTS-many-files.md"))
    args = parser.parse_args()
    n = args.files or (100 if args.quick else 5000)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        result = compare(tmp, n)
    report = "\n".join([
        f"## Many small files: {n} NetCDF and HDF5 files of about {result['size'] / 1024:.0f} KB",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine_line()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        result["table"],
        "",
        result["summary"],
        "",
    ])
    write_report(report, args.results)


if __name__ == "__main__":
    main()
