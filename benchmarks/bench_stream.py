"""One large file: bounded memory and full-scan throughput.

1. Peak resident memory of the whole process tree (client, scheduler, two
   worker processes) while a LocalCluster full-scans (WINDOWED) a 512 MiB and
   an 8 GiB sparse file: the ratio shows memory does not grow with file size.
2. Full-scan throughput of a file in the page cache, WINDOWED with the
   default checksum, as a ratio against ``cat FILE > /dev/null`` and against a
   serial Python loop computing the same checksum, all measured in this run.

    python benchmarks/bench_stream.py                 # the recorded sizes
    python benchmarks/bench_stream.py --quick         # tiny, used by the tests
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(__file__))
from common import GiB, MiB, TreeRSS, cat_seconds, command_line, machine_line, table, timed, write_report  # noqa: E402

CHILD = """
import json, sys, time
from distributed import Client, LocalCluster
from metaextract_dask import StreamingConfig, extract_file
path = sys.argv[1]
with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
    t = time.perf_counter()
    record, metrics = extract_file(path, StreamingConfig(strategy="windowed"), client=client)
    print(json.dumps({"seconds": time.perf_counter() - t, "chunks": metrics.chunks_processed,
                      "bytes": metrics.bytes_processed, "checksum": record["checksum"]["value"]}))
"""


def memory_run(path: str) -> dict:
    """Run a full scan in a child process tree and sample its memory."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE, text=True)
    with TreeRSS(proc.pid) as rss:
        out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"memory child failed for {path}")
    result = json.loads(out.strip().splitlines()[-1])
    result.update(peak_total=rss.peak_total, peak_single=rss.peak_single, processes=rss.peak_processes)
    return result


def serial_checksum(path: str, algorithm: str = "xxh3_128") -> str:
    """The reference a user would write: read 1 MiB at a time, hash the blocks."""
    from metaextract_dask.core.checksum import block_digests, combine

    digests = bytearray()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(MiB):
            digests += block_digests(block, algorithm)
    return combine(bytes(digests), algorithm)


def read_share(path: str) -> float:
    """Profile of the serial loop (cProfile): the share of its time spent in
    ``read``, i.e. copying from the page cache rather than hashing."""
    import cProfile
    import pstats

    profile = cProfile.Profile()
    profile.runcall(serial_checksum, path)
    stats = pstats.Stats(profile).stats
    total = sum(tt for (_, _, tt, _, _) in stats.values())
    reads = sum(tt for (_, _, name), (_, _, tt, _, _) in stats.items() if name.startswith("<method 'read"))
    return reads / total


def parallel_copy(path: str, threads: int = 2, hashing: bool = False) -> None:
    """The copy ceiling: ``threads`` threads ``pread`` their share of the file
    into 1 MiB buffers and do nothing else (``hashing``: and hash each 1 MiB
    block, the least a checksum scan must do). No scan that reads every byte
    through the page cache on this many cores can be faster."""
    import threading

    from metaextract_dask.core.checksum import one_shot

    digest = one_shot("xxh3_128")

    size = os.path.getsize(path)
    share = -(-size // threads)

    def copy(lo: int, hi: int) -> None:
        view = memoryview(bytearray(MiB))
        fd = os.open(path, os.O_RDONLY)
        try:
            while lo < hi and (n := os.preadv(fd, [view[: min(MiB, hi - lo)]], lo)):
                if hashing:
                    digest(view[:n])
                lo += n
        finally:
            os.close(fd)

    workers = [threading.Thread(target=copy, args=(i * share, min(size, (i + 1) * share))) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def cpu_bound(path: str, size: int, repeat: int) -> list[list[object]]:
    """The same comparison with sha256, where hashing, not copying, is the
    bottleneck: what the graph gains when there is CPU work to share."""
    from metaextract_dask import StreamingConfig, extract_file

    cfg = StreamingConfig(strategy="windowed", checksum="sha256")
    best = {"serial": float("inf"), "local": float("inf")}
    for _ in range(repeat):
        best["serial"] = min(best["serial"], timed(lambda: serial_checksum(path, "sha256")))
        best["local"] = min(best["local"], timed(lambda: extract_file(path, cfg)))
    serial, local = best["serial"], best["local"]
    return [
        ["serial Python loop, sha256", f"{serial:.3f}", f"{size / serial / 1e9:.2f}", "1.00"],
        ["WINDOWED sha256, local threaded scheduler", f"{local:.3f}", f"{size / local / 1e9:.2f}", f"{serial / local:.2f}"],
    ]


def best_rounds(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, float]:
    """Best time of each run over ``repeat`` rounds, every run once per round.

    Each run goes twice in a row and the second is timed: cores that were idle
    (or had one thread on them) run slower at first, which cost a two-thread
    scan that followed the serial loop 15% and one that followed a 0.2 s
    pause 30%. Warming every contender the same way removes that artifact.
    """
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            run()
            best[name] = min(best[name], run())
    return best


def throughput(path: str, size: int, repeat: int) -> tuple[list[list[object]], dict[str, float]]:
    """Best of ``repeat`` rounds; each round runs every contender once, in turn,
    so a noisy moment on a shared machine hits them all alike."""
    from distributed import Client, LocalCluster

    from metaextract_dask import StreamingConfig, extract_file

    cfg = StreamingConfig(strategy="windowed")
    subprocess.run(f"cat '{path}' > /dev/null", shell=True, check=True)  # into the page cache
    assert extract_file(path, cfg)[0]["checksum"]["value"] == serial_checksum(path)
    runs = {
        "cat": lambda: cat_seconds(path),
        "copy": lambda: timed(lambda: parallel_copy(path)),
        "copy+hash": lambda: timed(lambda: parallel_copy(path, hashing=True)),
        "serial": lambda: timed(lambda: serial_checksum(path)),
        "local": lambda: timed(lambda: extract_file(path, cfg)),
    }
    best = best_rounds(runs, repeat)  # no cluster running: its idle heartbeats cost the local run about 5 ms
    # not the default client: extract_file without client= must stay on the threaded scheduler
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        extract_file(path, cfg, client=client)  # warm the workers
        best.update(best_rounds({"dist": lambda: timed(lambda: extract_file(path, cfg, client=client))}, repeat))
    cat, copy, hashed, serial, local, dist = (best[k] for k in ("cat", "copy", "copy+hash", "serial", "local", "dist"))
    gbs = lambda s: f"{size / s / 1e9:.2f}"  # noqa: E731
    return best, [
        ["cat FILE > /dev/null (reference)", f"{cat:.3f}", gbs(cat), "1.00", f"{serial / cat:.2f}"],
        ["2 threads only copying the file with pread (the 2-core ceiling)", f"{copy:.3f}", gbs(copy), f"{cat / copy:.2f}", f"{serial / copy:.2f}"],
        ["2 threads copying and hashing, a bare loop without Dask", f"{hashed:.3f}", gbs(hashed), f"{cat / hashed:.2f}", f"{serial / hashed:.2f}"],
        ["serial Python loop, same checksum", f"{serial:.3f}", gbs(serial), f"{cat / serial:.2f}", "1.00"],
        ["WINDOWED, local threaded scheduler", f"{local:.3f}", gbs(local), f"{cat / local:.2f}", f"{serial / local:.2f}"],
        ["WINDOWED, LocalCluster 2 processes", f"{dist:.3f}", gbs(dist), f"{cat / dist:.2f}", f"{serial / dist:.2f}"],
    ]


def explain(best: dict[str, float], read_share: float) -> str:
    """The full-scan figures in words: met, or by how much and why not."""
    serial, local, copy, hashed = best["serial"], best["local"], best["copy"], best["copy+hash"]
    ratio = serial / local
    text = (f"A cProfile of the serial loop puts **{read_share:.0%}** of its time in `read()`, the copy out of the page cache; "
            f"xxh3 and Python take the rest. Two threads that only copy the file reach **{serial / copy:.2f}x** the loop, "
            f"the most any full scan on 2 cores can reach here; two bare threads that copy and hash reach **{serial / hashed:.2f}x**. "
            f"WINDOWED reaches **{ratio:.2f}x**: its chunk tasks, entropy sample and Dask's hand-offs cost "
            f"{local / hashed - 1:.0%} over the bare threads.")
    if ratio >= 1.6:
        return text + " The 1.6x target is met."
    return text + f" The 1.6x target is missed by {1.6 / ratio - 1:.0%}."


def full_scan_report(path: str, size: int, repeat: int) -> str:
    """Table 1 with its explanation: the page-cache ceiling, the loop's
    profile, and the sha256 comparison where the hash is the bottleneck."""
    best, rows = throughput(path, size, repeat)
    share = read_share(path)
    cpu_rows = cpu_bound(path, size, max(1, repeat // 3))
    return "\n".join([
        table(["run", "seconds (best of rounds)", "GB/s", "vs cat", "vs serial loop"], rows),
        "",
        f"Best of {repeat} rounds; each round runs the local five in turn (each twice, the second timed), then the LocalCluster rounds. Targets: >= 0.5 of cat, >= 1.6x the serial loop.",
        "",
        explain(best, share),
        "",
        "Where the hash is the bottleneck instead of the copy (sha256, same graph), the same comparison shows what two cores give:",
        "",
        table(["run", "seconds (best)", "GB/s", "vs serial loop"], cpu_rows),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the benchmark runs")
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "RESULTS-stream.md"))
    args = parser.parse_args()
    small, large = (8 * MiB, 64 * MiB) if args.quick else (512 * MiB, 8 * GiB)
    scan_size = 16 * MiB if args.quick else 2 * GiB
    repeat = 1 if args.quick else 9

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        rows = []
        runs = {}
        for size in (small, large):
            path = os.path.join(tmp, f"sparse-{size}.bin")
            with open(path, "wb") as f:
                f.truncate(size)
            runs[size] = r = memory_run(path)
            rows.append([f"{size / MiB:.0f} MiB", r["chunks"], f"{r['seconds']:.2f}", r["processes"],
                         f"{r['peak_total'] / MiB:.0f}", f"{r['peak_single'] / MiB:.0f}"])
            os.unlink(path)
        ratio = runs[large]["peak_total"] / runs[small]["peak_total"]
        mem_table = table(["sparse file", "chunks read", "seconds", "processes", "peak RSS, tree (MiB)", "peak RSS, largest process (MiB)"], rows)

        path = os.path.join(tmp, "random.bin")
        with open(path, "wb") as f:
            for _ in range(scan_size // (64 * MiB) or 1):
                f.write(os.urandom(min(scan_size, 64 * MiB)))
        tput_table = full_scan_report(path, os.path.getsize(path), repeat)

    report = "\n".join([
        "## One large file: memory and full-scan throughput",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine_line()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        mem_table,
        "",
        f"Peak tree RSS ratio, {large / MiB:.0f} MiB over {small / MiB:.0f} MiB: **{ratio:.2f}**",
        "",
        f"Throughput on a {scan_size / MiB:.0f} MiB file of random bytes in the page cache (checksum xxh3_128):",
        "",
        tput_table,
        "",
    ])
    write_report(report, args.results)


if __name__ == "__main__":
    main()
