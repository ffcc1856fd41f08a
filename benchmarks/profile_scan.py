"""A full scan to profile: where WINDOWED spends its time beyond the copy.

    pip install py-spy
    py-spy record -r 500 -f raw --threads -o /tmp/scan.txt -- python benchmarks/profile_scan.py
    python benchmarks/profile_scan.py --summarize /tmp/scan.txt

Writes a 2 GiB file of random bytes, reads it into the page cache, and runs
the WINDOWED scan of benchmark 1 (``run_all.py``) ``--repeat`` times.
``--summarize`` prints the sampled lines with the most samples: the copy
(``_read_full``, i.e. ``pread``), the hash, and what is left.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from common import GiB, MiB  # noqa: E402


def scan(repeat: int, size: int) -> None:
    from metaextract_dask import StreamingConfig, extract_file

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        path = os.path.join(tmp, "random.bin")
        with open(path, "wb") as f:
            for _ in range(max(1, size // (64 * MiB))):
                f.write(os.urandom(min(size, 64 * MiB)))
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)
        cfg = StreamingConfig(strategy="windowed")
        for _ in range(repeat):
            extract_file(path, cfg)


def summarize(raw: str, top: int = 15) -> None:
    """Leaf lines of a py-spy ``raw`` (collapsed stacks) file, worker threads only."""
    leaves: collections.Counter = collections.Counter()
    for line in open(raw):
        stack, _, count = line.rstrip().rpartition(" ")
        frames = stack.split(";")
        if "MainThread" in frames[0] or "_worker (concurrent/futures/thread.py" in frames[-1]:
            continue  # the scheduler's own loop and idle pool threads
        leaves[frames[-1]] += int(count)
    total = sum(leaves.values())
    for leaf, n in leaves.most_common(top):
        print(f"{n / total:6.1%}  {leaf}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--size", type=int, default=2 * GiB)
    parser.add_argument("--summarize", metavar="RAW", help="summarize a py-spy raw file instead of scanning")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
    else:
        scan(args.repeat, args.size)


if __name__ == "__main__":
    main()
