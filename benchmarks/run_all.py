"""All benchmarks in one run: six tables, written to benchmarks/RESULTS.md.

Every figure is a ratio against a reference measured in the same run (these
machines are shared and noisy), with absolute numbers for context.

    python benchmarks/run_all.py            # the recorded sizes (about 10 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # tiny sizes, to check it runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import bench_many_files  # noqa: E402
import bench_stream  # noqa: E402
from common import GiB, MiB, best_of, command_line, machine_line, table, write_report  # noqa: E402


def t1_full_scan(tmp: str, size: int, repeat: int) -> str:
    path = os.path.join(tmp, "random.bin")
    with open(path, "wb") as f:
        for _ in range(max(1, size // (64 * MiB))):
            f.write(os.urandom(min(size, 64 * MiB)))
    report = bench_stream.full_scan_report(path, os.path.getsize(path), repeat)
    os.unlink(path)
    return f"### 1. Full scan of a {size / GiB:.1f} GiB file in the page cache (WINDOWED, xxh3_128 checksum)\n\n{report}\n"


def t2_sampled(tmp: str, size: int) -> str:
    from metaextract_dask import StreamingConfig, extract_file

    path = os.path.join(tmp, "sparse.bin")
    with open(path, "wb") as f:
        f.truncate(size)
    sampled_cfg = StreamingConfig(strategy="sample_based")
    record, _ = extract_file(path, sampled_cfg)
    t_sampled = best_of(lambda: extract_file(path, sampled_cfg), 3)
    t_full = best_of(lambda: extract_file(path, StreamingConfig(strategy="windowed")), 1)
    reads = record["streaming"]["chunks_read"]
    os.unlink(path)
    rows = [["WINDOWED full scan (reference)", f"{t_full:.2f}", "-", "1"],
            ["SAMPLE_BASED", f"{t_sampled:.4f}", str(reads), f"{t_full / t_sampled:.0f}"]]
    return f"### 2. SAMPLE_BASED on a {size / GiB:.0f} GiB sparse file\n\n" + table(
        ["run", "seconds", "chunk reads", "speed-up"], rows) + "\n\nTargets: >= 100x faster than the full scan, <= 64 chunk reads.\n"


def t3_memory(tmp: str, small: int, large: int) -> str:
    rows, peaks = [], {}
    for size in (small, large):
        path = os.path.join(tmp, f"sparse-{size}.bin")
        with open(path, "wb") as f:
            f.truncate(size)
        r = bench_stream.memory_run(path)
        peaks[size] = r
        rows.append([f"{size / MiB:.0f} MiB", r["chunks"], f"{r['seconds']:.2f}", r["processes"], f"{r['peak_total'] / MiB:.0f}", f"{r['peak_single'] / MiB:.0f}"])
        os.unlink(path)
    ratio = peaks[large]["peak_total"] / peaks[small]["peak_total"]
    return ("### 3. Peak memory of the whole process tree (client, scheduler, 2 workers), full scan\n\n"
            + table(["sparse file", "chunks read", "seconds", "processes", "peak RSS tree (MiB)", "largest process (MiB)"], rows)
            + f"\n\nRatio {large / MiB:.0f} MiB / {small / MiB:.0f} MiB: **{ratio:.2f}**. Targets: ratio <= 1.25, no process above 400 MiB.\n")


def t4_small_files(tmp: str, n: int) -> str:
    folder = os.path.join(tmp, "small")
    os.makedirs(folder)
    result = bench_many_files.compare(folder, n)
    shutil.rmtree(folder)
    return f"### 4. {n} NetCDF and HDF5 files of about {result['size'] / 1024:.0f} KB\n\n{result['table']}\n\n{result['summary']}\n"


def t5_videos(tmp: str, n: int) -> str:
    from distributed import Client, LocalCluster

    from metaextract_dask import ParallelExtractionConfig, ParallelExtractor
    from metaextract_dask.demo import make_video

    folder = os.path.join(tmp, "videos")
    os.makedirs(folder)
    sources = [make_video(os.path.join(folder, f"src{i}.mp4"), 1.0 + i * 0.5) for i in range(4)]
    paths = []
    for i in range(n):
        paths.append(os.path.join(folder, f"v{i:04d}.mp4"))
        shutil.copy(sources[i % 4], paths[-1])
    t = time.perf_counter()
    for p in paths:
        subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", p], stdout=subprocess.DEVNULL, check=True)
    t_peer = time.perf_counter() - t
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        ex = ParallelExtractor(ParallelExtractionConfig(), client=client)
        ex.extract(sources)
        t = time.perf_counter()
        results, _ = ex.extract(paths)
        wall = time.perf_counter() - t
    assert all(r.success for r in results)
    shutil.rmtree(folder)
    rows = [["ffprobe -show_format -show_streams per file (reference)", f"{t_peer:.2f}", f"{n / t_peer:.1f}", "1.00"],
            ["ParallelExtractor (format, streams and every frame counted)", f"{wall:.2f}", f"{n / wall:.1f}", f"{t_peer / wall:.2f}"]]
    return f"### 5. {n} short videos\n\n" + table(["run", "seconds", "files/s", "speed-up"], rows) + "\n\nTarget: >= 1.5x the ffprobe loop.\n"


def t6_scaling(tmp: str, counts: list[int], sizes: list[int]) -> str:
    from distributed import Client, LocalCluster

    from metaextract_dask import ParallelExtractionConfig, ParallelExtractor, StreamingConfig, extract_file
    from metaextract_dask.demo import make_bin

    folder = os.path.join(tmp, "scale")
    os.makedirs(folder)
    all_paths = [make_bin(os.path.join(folder, f"f{i:05d}.bin"), 4096, i) for i in range(max(counts))]
    rows_files = []
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        ParallelExtractor(ParallelExtractionConfig(), client=client).extract(all_paths[:10])
        for n in counts:
            ex = ParallelExtractor(ParallelExtractionConfig(), client=client)
            t = time.perf_counter()
            ex.extract(all_paths[:n])
            wall = time.perf_counter() - t
            rows_files.append([n, f"{wall:.3f}", f"{wall / n * 1000:.3f}", len(ex.last_batches), f"{len(ex.last_batches) / n:.3f}"])
    shutil.rmtree(folder)
    rows_sizes = []
    for size in sizes:
        path = os.path.join(tmp, "size.bin")
        with open(path, "wb") as f:
            f.truncate(size)
        record, _ = extract_file(path, StreamingConfig())
        wall = best_of(lambda: extract_file(path, StreamingConfig()), 1)
        s = record["streaming"]
        rows_sizes.append([f"{size / MiB:,.0f} MiB", s["strategy"], s["shape"], s["tasks"], s["chunks_read"], f"{wall:.3f}"])
        os.unlink(path)
    return ("### 6. Scaling with work\n\nFiles of 4 KB, ParallelExtractor on 2 processes:\n\n"
            + table(["files", "seconds", "ms per file", "tasks", "tasks per file"], rows_files)
            + "\n\nOne file under ADAPTIVE (sparse files, local threaded scheduler):\n\n"
            + table(["file size", "strategy", "shape", "tasks", "chunks read", "seconds"], rows_sizes)
            + "\n\nExpected: time grows linearly with files; tasks per file fall as batches fill; above 1 GiB the cost is flat in file size.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    parser.add_argument("--only", default="123456", help="which benchmarks to run, by number (default: all six)")
    args = parser.parse_args()
    q = args.quick
    sections = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        for title, fn in [
            ("1", lambda: t1_full_scan(tmp, 64 * MiB if q else 2 * GiB, 1 if q else 9)),
            ("2", lambda: t2_sampled(tmp, 256 * MiB if q else 20 * GiB)),
            ("3", lambda: t3_memory(tmp, 8 * MiB if q else 512 * MiB, 64 * MiB if q else 8 * GiB)),
            ("4", lambda: t4_small_files(tmp, 60 if q else 5000)),
            ("5", lambda: t5_videos(tmp, 8 if q else 200)),
            ("6", lambda: t6_scaling(tmp, [1, 10, 100] if q else [1, 10, 100, 1000, 10000],
                                     [MiB, 64 * MiB] if q else [MiB, 64 * MiB, GiB, 4 * GiB, 20 * GiB])),
        ]:
            if title not in args.only:
                continue
            t = time.perf_counter()
            sections.append(fn())
            print(f"benchmark {title} done in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    report = "\n".join([
        "# Benchmarks", "", f"Command: `{command_line()}`  ", f"Machine: {machine_line()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "", *sections,
    ])
    write_report(report, args.results)


if __name__ == "__main__":
    main()
