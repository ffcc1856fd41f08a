"""Statistics on every real HDF5 and netCDF file at hand, file by file, against a plain whole-variable read.

For each file this project did not write (tests/public_corpus.py: PyTables', h5py's, Iris' and xarray's
files; and, when Debian's ``libncarg-data`` is installed, the 94 netCDF files NCAR ships with NCL in
/usr/share/ncarg/data: CF model output, station records, grids), in one process, interleaved, best of
``--repeat``:

- **plain**: what a user would otherwise write: open with netCDF4 (or h5py), read every numeric variable
  whole (``v[:]``, masked and unpacked as netCDF4 does) and take NumPy's min, max and mean;
- **ours**: ``extract_metadata(path)`` with the default strategy and no checksum (structure, attributes,
  CF coverage and every numeric variable's statistics);
- **metadata-only**: ``extract_metadata`` with ``metadata_only`` (structure and attributes, no statistics):
  what ours costs before a single value is read.

ratio = plain / ours (the issue's target: at least 0.5 for every file). A file the plain loop cannot read
(a filter plugin it lacks, a datatype with no NumPy equivalent) is listed without a ratio.

Run: ``python benchmarks/bench_stats.py [--repeat 5] [--out benchmarks/RESULTS-stats.md]``
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))  # the public corpus builder lives with the tests
from common import command_line, machine_line, write_report  # noqa: E402

NCARG = "/usr/share/ncarg/data"


def plain_netcdf(path: str) -> None:
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        stack = [ds]
        while stack:
            group = stack.pop()
            stack.extend(group.groups.values())
            for v in group.variables.values():
                if isinstance(v.dtype, type) or v.dtype.kind not in "biuf" or not v.shape:
                    continue
                a = v[:]
                if a.size:
                    a.min(), a.max(), a.mean()


def plain_hdf5(path: str) -> None:
    import h5py

    with h5py.File(path, "r") as f:
        found: list = []
        f.visititems(lambda _, o: found.append(o) if isinstance(o, h5py.Dataset) else None)
        for d in found:
            if d.dtype.kind not in "biuf" or not d.shape:
                continue
            a = d[()]
            if a.size:
                a.min(), a.max(), a.mean()


def files() -> list[tuple[str, str]]:
    """(kind, path) of every HDF5 and netCDF file at hand."""
    import public_corpus

    corpus = public_corpus.build(os.path.join(public_corpus.cache_dir(), "corpus-v1"))
    out = [("hdf5", p) for p in corpus["hdf5"]] + [("netcdf", p) for p in corpus["netcdf"]]
    ncar = sorted(glob.glob(os.path.join(NCARG, "**", "*.nc"), recursive=True) + glob.glob(os.path.join(NCARG, "**", "*.cdf"), recursive=True))
    return out + [("netcdf", p) for p in ncar]


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(kind: str, path: str, repeat: int) -> dict:
    import metaextract_dask as me
    from metaextract_dask.core.settings import StreamingConfig

    full, meta = StreamingConfig(checksum=None), StreamingConfig(metadata_only=True)
    plain = plain_netcdf if kind == "netcdf" or open(path, "rb").read(3) == b"CDF" else plain_hdf5
    row = {"path": path, "size": os.path.getsize(path), "kind": kind}
    try:
        plain(path)
    except Exception as exc:  # noqa: BLE001 - the yardstick cannot read it: listed without a ratio
        row["plain_error"] = f"{type(exc).__name__}: {exc}"[:60]
    me.extract_metadata(path, full)  # warm: the page cache and the imports, for both sides
    rounds: dict[str, list[float]] = {"plain": [], "ours": [], "meta": []}
    for _ in range(repeat):  # interleaved, so a disturbance touches all three alike
        if "plain_error" not in row:
            rounds["plain"].append(best(lambda: plain(path), 1))
        rounds["ours"].append(best(lambda: me.extract_metadata(path, full), 1))
        rounds["meta"].append(best(lambda: me.extract_metadata(path, meta), 1))
    row.update({k: min(v) for k, v in rounds.items() if v})
    return row


def name(path: str) -> str:
    base = os.path.basename(path)
    return base.split("__")[-1] if "__" in base else base


def report(rows: list[dict], repeat: int) -> str:
    timed = [r for r in rows if "plain" in r]
    met = [r for r in timed if r["plain"] / r["ours"] >= 0.5]
    unmet = [r for r in timed if r["plain"] / r["ours"] < 0.5]
    described = [r for r in unmet if r["meta"] >= 2 * r["plain"]]
    large = [r for r in timed if r["size"] >= 1_000_000]
    out = ["# Statistics on every real HDF5 and netCDF file, against a plain whole-variable read\n",
           f"`{command_line()}` on {machine_line()}, {time.strftime('%Y-%m-%d %H:%M')}. In one process, interleaved, "
           f"best of {repeat}; page cache warm. plain: netCDF4 / h5py, every numeric variable read whole, NumPy min, max, "
           "mean. ours: `extract_metadata` (default strategy, no checksum). metadata-only: ours without statistics. "
           "ratio = plain / ours (target >= 0.5).\n",
           f"- files: {len(rows)} ({sum(r['kind'] == 'hdf5' for r in rows)} HDF5, {sum(r['kind'] == 'netcdf' for r in rows)} netCDF); "
           f"the plain loop cannot read {len(rows) - len(timed)} of them",
           f"- ratio >= 0.5: {len(met)} of {len(timed)}; of the {len(large)} files of 1 MB or more: "
           f"{sum(r['plain'] / r['ours'] >= 0.5 for r in large)} (median ratio "
           f"{sorted(r['plain'] / r['ours'] for r in large)[len(large) // 2] if large else float('nan'):.2f})",
           f"- below 0.5: {len(unmet)} files, all under {max((r['size'] for r in unmet), default=0) / 1e3:.0f} kB; for {len(described)} "
           "of them describing the file without reading a value (metadata-only) alone takes over twice the plain loop's time\n",
           "| file | kind | bytes | plain ms | ours ms | ratio | metadata-only ms |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["kind"], r["size"])):
        if "plain" in r:
            out.append(f"| {name(r['path'])} | {r['kind']} | {r['size']:,} | {r['plain'] * 1e3:.1f} | {r['ours'] * 1e3:.1f} | "
                       f"{r['plain'] / r['ours']:.2f} | {r['meta'] * 1e3:.1f} |")
        else:
            out.append(f"| {name(r['path'])} | {r['kind']} | {r['size']:,} | ({r['plain_error']}) | {r['ours'] * 1e3:.1f} | | "
                       f"{r['meta'] * 1e3:.1f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (a quick check)")
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS-stats.md"))
    args = parser.parse_args()
    found = files()
    if args.limit:
        found = found[: args.limit]
    if not any(p.startswith(NCARG) for _, p in found):
        print(f"note: {NCARG} is absent (apt-get install libncarg-data): NCAR's files are left out", file=sys.stderr)
    rows = [measure(kind, path, args.repeat) for kind, path in found]
    write_report(report(rows, args.repeat), args.out)


if __name__ == "__main__":
    main()
