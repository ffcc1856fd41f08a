"""Makespan with work ordered by a learned cost model vs by size vs FIFO, on 2 workers (issue 19).

Two corpora, each made twice (a training copy and a measured copy, other
seeds, same recipe):

- **disagree**: costs and sizes disagree: 6 small netCDF files of 600
  variables (about 0.9 s each to summarise, 300 KB) beside 154 binaries of
  1 to 3 MB (milliseconds each). Ordered by size, the netCDF files come last
  and, batched by count, share one or two batch tasks: one worker runs them
  while the other idles. That is the situation the model is for;
- **agree**: binaries only, 1 to 9 MB: cost follows size.

The model is learned from a default scan of the training copy
(``--learn-from`` its catalog). Each contender is ``scan()`` on the measured
copy, into a fresh catalog, ``workers=2``, in one Python process (so process
start is not in the makespan), in interleaved rounds; medians.

    python benchmarks/bench_costs.py [--rounds 3] [--quick]

Targets: on *disagree* the learned order at least 15 % shorter than the size
order; on *agree* never more than 5 % longer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def costly_netcdf(path: str, variables: int) -> None:
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 20)
        for i in range(variables):
            ds.createVariable(f"v{i}", "f4", ("x",))[:] = np.arange(20.0) + i


def binary(path: str, size: int, seed: int) -> None:
    import numpy as np

    with open(path, "wb") as f:
        f.write(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())


def make(folder: str, kind: str, seed: int, scale: float) -> str:
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    if kind == "disagree":
        for i in range(max(2, int(6 * scale))):
            costly_netcdf(os.path.join(folder, f"n{seed}_{i}.nc"), 600)
        for i in range(max(9, int(154 * scale))):
            binary(os.path.join(folder, f"b{seed}_{i}.bin"), int(rng.integers(1_000_000, 3_000_000)), seed * 1000 + i)
    else:
        for i in range(max(10, int(150 * scale))):
            binary(os.path.join(folder, f"b{seed}_{i}.bin"), int(rng.integers(1_000_000, 9_000_000)), seed * 1000 + i)
    return folder


def makespan(data: str, work: str, **kw) -> float:
    from metaextract_dask import scan

    out = os.path.join(work, "cat")
    for leftover in (out, out + ".variables", out + ".costs.json"):
        shutil.rmtree(leftover, ignore_errors=True) if os.path.isdir(leftover) else (os.path.exists(leftover) and os.unlink(leftover))
    t = time.perf_counter()
    frame = scan(data, out, workers=2, progress=False, as_frame=False, **kw)
    elapsed = time.perf_counter() - t
    del frame
    return elapsed


def measure(kind: str, work: str, rounds: int, scale: float) -> dict[str, float]:
    from metaextract_dask import scan

    train = make(os.path.join(work, kind, "train"), kind, 1, scale)
    data = make(os.path.join(work, kind, "data"), kind, 2, scale)
    taught = os.path.join(work, kind, "taught")
    scan(train, taught, workers=2, progress=False, as_frame=False)
    contenders = {
        "fifo": dict(load_balancing="fifo"),
        "size": dict(load_balancing="size_aware"),
        "learned": dict(load_balancing="size_aware", learn_from=[taught]),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    makespan(data, os.path.join(work, kind), **contenders["size"])  # warm the page cache and the sandboxes' imports
    for r in range(rounds):
        for name, kw in contenders.items():
            times[name].append(makespan(data, os.path.join(work, kind), **kw))
        print(f"{kind} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a tenth of the files, one round (checks the benchmark runs)")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS-costs.md"))
    args = ap.parse_args()
    scale, rounds = (0.1, 1) if args.quick else (1.0, args.rounds)
    work = tempfile.mkdtemp(prefix="bench-costs-")
    try:
        disagree = measure("disagree", work, rounds, scale)
        agree = measure("agree", work, rounds, scale)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gain = 1 - disagree["learned"] / disagree["size"]
    loss = agree["learned"] / agree["size"] - 1
    met = gain >= 0.15 and loss <= 0.05
    text = (f"# Learned cost ordering vs size vs FIFO\n\nCommand: `python {' '.join(['benchmarks/bench_costs.py', *sys.argv[1:]])}` "
            f"on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}. `scan()` with 2 workers in one process, fresh catalog "
            f"each time, {rounds} interleaved rounds, medians (seconds).\n\n"
            "| corpus | FIFO | size order | learned order | learned vs size |\n|---|---|---|---|---|\n"
            f"| disagree (6 netCDF of 600 variables, 154 binaries of 1-3 MB) | {disagree['fifo']:.2f} | {disagree['size']:.2f} | "
            f"{disagree['learned']:.2f} | {gain:+.1%} shorter (target >= 15 %) |\n"
            f"| agree (150 binaries of 1-9 MB) | {agree['fifo']:.2f} | {agree['size']:.2f} | {agree['learned']:.2f} | "
            f"{loss:+.1%} longer (target <= 5 %) |\n\nTargets: {'met' if met else 'not met'}.\n")
    with open(args.results, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
