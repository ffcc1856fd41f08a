"""Kerchunk references made during a scan vs kerchunk's own SingleHdf5ToZarr run serially (issue 18).

Contenders, each a whole process (cold start included), in interleaved rounds, medians:

- ``metaextract scan DATA -o CAT --references`` with its defaults otherwise (statistics and
  checksum included: the references come with the metadata scan, in the same pass);
- a serial loop of ``kerchunk.hdf.SingleHdf5ToZarr(path).translate()`` over the same files, in
  one Python process, each reference set written to a JSON file (what a user would otherwise run).

After the rounds every file's references from the catalog are compared with kerchunk's
(metadata parsed, chunk references as they are): the benchmark fails if any differ.

    python benchmarks/bench_references.py [--files 100] [--chunks 10000] [--rounds 3]

Results go to ``benchmarks/RESULTS-references.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

KERCHUNK_LOOP = """
import json, os, sys, warnings
from kerchunk.hdf import SingleHdf5ToZarr
out = sys.argv[1]
warnings.simplefilter("ignore")
for i, path in enumerate(sys.argv[2:]):
    refs = SingleHdf5ToZarr(path, inline_threshold=500).translate()
    with open(os.path.join(out, f"{i}.json"), "w") as f:
        json.dump(refs, f)
"""


def make_files(folder: str, files: int, chunks: int) -> list[str]:
    """``files`` HDF5 files, each one float32 dataset of ``chunks`` stored chunks of 200 values (800 bytes: above the inline limit)."""
    import h5py
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)
    for i in range(files):
        path = os.path.join(folder, f"f{i:04d}.h5")
        with h5py.File(path, "w") as f:
            f.attrs["title"] = f"file {i}"
            d = f.create_dataset("values", shape=(chunks * 200,), chunks=(200,), dtype="f4")
            d[:] = rng.random(chunks * 200, dtype="f4")
            d.attrs["units"] = "K"
        paths.append(path)
    return paths


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode not in (0,):
        raise SystemExit(f"{cmd[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def normalised(refs: dict) -> dict:
    return {k: json.loads(v) if k.rsplit("/", 1)[-1].startswith(".") else v for k, v in refs.items()}


def check_identical(cat: str, kerchunk_out: str, paths: list[str]) -> int:
    """How many files' references are identical; raises on the first difference."""
    import fsspec
    import pandas as pd

    rows = pd.read_parquet(cat, columns=["path", "references"]).set_index("path")["references"]
    same = 0
    for i, path in enumerate(paths):
        with open(os.path.join(kerchunk_out, f"{i}.json")) as f:
            theirs = normalised(json.load(f)["refs"])
        entry = os.path.join(cat + ".references", rows[path])
        if entry.endswith(".json"):
            with open(entry) as f:
                mine = json.load(f)["refs"]
        else:
            from fsspec.implementations.reference import LazyReferenceMapper

            lazy = LazyReferenceMapper(entry, fs=fsspec.filesystem("file"), engine="pyarrow")
            fs = fsspec.filesystem("reference", fo=lazy, remote_protocol="file")
            mine = {k: (fs.references[k] if not isinstance(fs.references[k], bytes) else fs.references[k].decode())
                    for k in fs.references}
        if normalised(mine) != theirs:
            raise SystemExit(f"references differ for {path}")
        same += 1
    return same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--output", default=os.path.join(HERE, "RESULTS-references.md"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-refs-")
    try:
        t0 = time.perf_counter()
        paths = make_files(os.path.join(work, "data"), args.files, args.chunks)
        print(f"made {len(paths)} files of {args.chunks} chunks in {time.perf_counter() - t0:.1f} s", flush=True)
        ours, theirs = [], []
        cat, kout = os.path.join(work, "cat"), os.path.join(work, "kerchunk")
        for r in range(args.rounds):
            for folder in (cat, cat + ".references", cat + ".variables", kout):
                shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(kout)
            ours.append(run([sys.executable, "-m", "metaextract_dask.cli", "scan", os.path.join(work, "data"), "-o", cat,
                             "--references", "-q"]))
            theirs.append(run([sys.executable, "-c", KERCHUNK_LOOP, kout, *paths]))
            print(f"round {r + 1}: scan --references {ours[-1]:.2f} s, kerchunk loop {theirs[-1]:.2f} s", flush=True)
        same = check_identical(cat, kout, paths)
        a, b = statistics.median(ours), statistics.median(theirs)
        text = (f"# References during a scan vs kerchunk\n\n`{' '.join(['python', *sys.argv])}` on {os.cpu_count()} cores, "
                f"{time.strftime('%Y-%m-%d')}\n\n{args.files} HDF5 files, {args.chunks} chunks each (float32, 800-byte chunks), "
                f"page cache warm; whole processes, {args.rounds} interleaved rounds, medians.\n\n"
                f"| contender | seconds |\n|---|---|\n| `metaextract scan --references` (defaults: statistics and checksum too) | {a:.2f} |\n"
                f"| serial `SingleHdf5ToZarr(path).translate()` loop | {b:.2f} |\n\n"
                f"Speed-up: **{b / a:.2f}x** (target >= 2x). References identical for {same} of {len(paths)} files.\n")
        with open(args.output, "w") as f:
            f.write(text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
