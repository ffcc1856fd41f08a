"""Discovery over 200,000 empty files in 2,000 folders: files per second of each way to list and stat them.

Contenders, interleaved rounds, medians, in one process (Clients started
before timing): a user's serial ``os.walk`` + ``os.stat`` loop; the scan's own
serial walk (``walk.discover`` without a Client: the same tasks, in its
thread); tasks (``walk.list_folder``: a folder and, without links to follow,
its subtree up to 20,000 entries) on 1 and 2 threads; the same tasks on a
LocalCluster of 1 and 2 worker processes. On a local file system in the page cache a listing
or a stat takes microseconds: this measures what the tasks cost, not what
they save on a parallel file system, where each is a round trip.

Run: ``python benchmarks/bench_discovery.py [--rounds 3] [--files 200000] [--out benchmarks/RESULTS-discovery.md]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def make_tree(root: str, files: int, folders: int) -> None:
    per = files // folders
    marker = os.path.join(root, f".made-{files}-{folders}")
    if os.path.exists(marker):
        return
    for d in range(folders):
        folder = os.path.join(root, f"d{d // 100:03d}", f"f{d:05d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per):
            open(os.path.join(folder, f"x{i:04d}.nc"), "w").close()
    open(marker, "w").close()


def user_loop(root: str) -> int:
    n = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.startswith("."):
                os.stat(os.path.join(folder, name))
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--folders", type=int, default=2000)
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS-discovery.md"))
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    from metaextract_dask.execution.walk import discover, walk_files

    root = os.path.join(tempfile.gettempdir(), "metaextract-bench-discovery")
    os.makedirs(root, exist_ok=True)
    make_tree(root, args.files, args.folders)
    clusters = {n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
                for n in (1, 2)}
    clients = {n: Client(c, set_as_default=False) for n, c in clusters.items()}
    contenders = {
        "serial os.walk + os.stat loop (a user's script)": lambda: user_loop(root),
        "scan's serial walk (walk.discover, no Client)": lambda: len(discover([root]).files),
        "tasks, 1 thread": lambda: len(walk_files([root], workers=1).files),
        "tasks, 2 threads": lambda: len(walk_files([root], workers=2).files),
        "tasks, 1 worker process": lambda: len(walk_files([root], client=clients[1]).files),
        "tasks, 2 worker processes": lambda: len(walk_files([root], client=clients[2]).files),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            n = fn()
            times[name].append(time.perf_counter() - t)
            assert n == args.files, (name, n)
    for c in clients.values():
        c.close()
    for c in clusters.values():
        c.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["serial os.walk + os.stat loop (a user's script)"]
    lines = [
        "# Discovery: listing and stat-ing a tree, serially and as tasks",
        "",
        f"`python benchmarks/bench_discovery.py --rounds {args.rounds}` on {os.uname().nodename} ({os.cpu_count()} cores), "
        f"{time.strftime('%Y-%m-%d %H:%M')}: {args.files:,} empty files in {args.folders:,} folders, in the page cache; "
        f"{args.rounds} interleaved rounds, medians.",
        "",
        "| contender | seconds | files/s | vs the user's loop |",
        "|---|---|---|---|",
    ]
    for name, sec in med.items():
        lines.append(f"| {name} | {sec:.2f} | {args.files / sec:,.0f} | {base / sec:.2f}x |")
    t1, t2 = med["tasks, 1 worker process"], med["tasks, 2 worker processes"]
    lines += ["", f"Scaling from 1 to 2 worker processes: {t1 / t2:.2f}x; from 1 to 2 threads: "
              f"{med['tasks, 1 thread'] / med['tasks, 2 threads']:.2f}x."]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
