"""The ``metaextract`` command line.

Exit status: 0 success, 1 some files failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from .config import StreamingConfig, StreamingStrategy
from .errors import MetaExtractError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _human(record: dict[str, Any], indent: int = 0) -> str:
    """An indented, readable rendering of a metadata record."""
    pad = "  " * indent
    lines = []
    for key, value in record.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(_human(value, indent + 1))
        elif isinstance(value, list) and len(value) > 8:
            lines.append(f"{pad}{key}: [{len(value)} items] {json.dumps(value[:3], default=str)[:-1]}, ...]")
        else:
            lines.append(f"{pad}{key}: {json.dumps(value, default=str) if isinstance(value, list) else value}")
    return "\n".join(lines)


def _streaming_options(parser: argparse.ArgumentParser) -> None:
    strategies = [s.value for s in StreamingStrategy]
    parser.add_argument("--strategy", choices=strategies, help="streaming strategy (default: adaptive)")
    parser.add_argument("--chunk-size", help="bytes per chunk read, e.g. 4MiB (default: 1MiB)")
    parser.add_argument("--checksum", help="xxh3_128 (default), sha256, blake2b or none")
    parser.add_argument("--timeout", type=float, help="seconds allowed per file (default: 300)")


def _config(args: argparse.Namespace) -> StreamingConfig:
    given = {k: getattr(args, k) for k in ("strategy", "chunk_size", "checksum", "timeout") if getattr(args, k, None) is not None}
    return StreamingConfig(**given)


def cmd_info(args: argparse.Namespace) -> int:
    """Print one file's metadata."""
    from .streaming import extract_file

    try:
        record, _ = extract_file(args.file, _config(args))
    except MetaExtractError as exc:
        print(f"metaextract: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(record, indent=2, default=str) if args.json else _human(record))
    return EXIT_OK


def _scan_options(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("where it runs")
    run.add_argument("-j", "--workers", type=int, help="worker processes (or threads with --threads); default: one per core")
    run.add_argument("--threads", dest="execution", action="store_const", const="thread_pool", help="one worker process with many threads")
    run.add_argument("--processes", dest="execution", action="store_const", const="process_pool", help="one single-threaded process per worker (default)")
    run.add_argument("--hybrid", dest="execution", action="store_const", const="hybrid", help="processes with two threads each")
    run.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    run.add_argument("--dashboard-address", default=None, help="where the embedded cluster's dashboard listens (default 127.0.0.1:8787)")
    tls = parser.add_argument_group("TLS between client, scheduler and workers (shared machines)")
    tls.add_argument("--tls-ca-file", help="CA certificate that signed the certificates below")
    tls.add_argument("--tls-cert", help="certificate (PEM) for client, scheduler and workers")
    tls.add_argument("--tls-key", help="private key of --tls-cert, if not in the same file")
    hpc = parser.add_argument_group("batch systems (dask-jobqueue; defaults from jobqueue.yaml)")
    hpc.add_argument("--cluster", choices=["slurm", "pbs", "sge", "lsf"], help="run the workers as batch jobs")
    hpc.add_argument("--jobs", type=int, default=1, help="batch jobs to start (default 1)")
    hpc.add_argument("--adapt", metavar="MIN:MAX", help="scale between MIN and MAX jobs with the work instead of --jobs")
    hpc.add_argument("--cores", type=int, help="cores per job")
    hpc.add_argument("--memory", help="memory per job, e.g. 8GB")
    hpc.add_argument("--walltime", help="walltime per job, e.g. 01:00:00")
    hpc.add_argument("--queue", help="queue / partition")
    hpc.add_argument("--account", help="account / project to charge")
    hpc.add_argument("--interface", help="network interface of scheduler and workers, e.g. ib0")
    hpc.add_argument("--lifetime", help="retire each worker gracefully after this long (before its walltime), e.g. 55m")
    work = parser.add_argument_group("how files are extracted")
    _streaming_options(work)
    work.add_argument("--retries", type=int, default=3, help="retries of transient errors, with exponential backoff (default 3)")
    work.add_argument("--no-isolate", dest="isolate", action="store_false", help="parse in the worker itself, not in a sandbox process")
    work.add_argument("--load-balancing", default="size_aware", choices=["fifo", "priority", "least_loaded", "file_type_aware", "size_aware"])
    pick = parser.add_argument_group("which files")
    pick.add_argument("--include", action="append", default=[], metavar="GLOB", help="only names or relative paths matching (repeatable)")
    pick.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip names or relative paths matching (repeatable)")
    pick.add_argument("--hidden", action="store_true", help="include hidden files and folders")
    pick.add_argument("--follow-symlinks", action="store_true", help="walk into symlinked folders (loops are detected)")
    out = parser.add_argument_group("the catalog")
    out.add_argument("--format", default="parquet", choices=["parquet", "jsonl"], help="catalog part format (default parquet)")
    out.add_argument("--force", action="store_true", help="redo every file, replacing the catalog")
    out.add_argument("--flush-every", type=int, default=200, help="write a catalog part every N results (and every 10 s)")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="no progress bar, no dashboard link, no log messages below errors: the summary lines only")


def _quiet_logs() -> None:
    """Dask's own log lines (cluster start, worker notices) only when they are errors, here and in the workers."""
    import logging

    import dask.config

    dask.config.set({"logging.distributed": "error"})
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _run_scan(paths: list[str], output: str, args: argparse.Namespace) -> int:
    from .scanning import ScanSummary, scan

    summary = ScanSummary()
    if args.quiet:
        _quiet_logs()

    def show_dashboard(client) -> None:
        if not args.quiet:
            from .dashboard import page_link

            print(f"Dask dashboard: {client.dashboard_link}  (extraction page: {page_link(client.dashboard_link)})", file=sys.stderr, flush=True)

    cluster = None
    if getattr(args, "cluster", None):
        from .hpc import make_jobqueue_cluster

        adapt = tuple(int(x) for x in args.adapt.split(":")) if args.adapt else None
        cluster = make_jobqueue_cluster(args.cluster, jobs=args.jobs, cores=args.cores, memory=args.memory, walltime=args.walltime,
                                        queue=args.queue, account=args.account, interface=args.interface, lifetime=args.lifetime,
                                        adapt=adapt)
    security = None
    if args.tls_ca_file or args.tls_cert:
        if not (args.tls_ca_file and args.tls_cert):
            print("metaextract: TLS needs both --tls-ca-file and --tls-cert", file=sys.stderr)
            return EXIT_USAGE
        from .cluster import tls_security

        security = tls_security(args.tls_ca_file, args.tls_cert, args.tls_key)
    try:
        frame = scan(
            paths, output, cluster=cluster, security=security, format=args.format, strategy=args.strategy, chunk_size=args.chunk_size, checksum=args.checksum,
            timeout=args.timeout if args.timeout is not None else 300.0, workers=args.workers, execution=args.execution or "process_pool",
            scheduler=args.scheduler, retries=args.retries, isolate=args.isolate, load_balancing=args.load_balancing,
            include=args.include, exclude=args.exclude, hidden=args.hidden, follow_symlinks=args.follow_symlinks,
            force=args.force, flush_every=args.flush_every, progress=False if args.quiet else None,
            dashboard_address=args.dashboard_address, on_client=show_dashboard, summary=summary,
        )
    except KeyboardInterrupt:
        print(f"metaextract: interrupted; {summary.extracted} results were saved in {output}", file=sys.stderr)
        return 130
    finally:
        if cluster is not None:
            cluster.close()
    print(f"{summary.found} files found, {summary.skipped} already in the catalog, {summary.extracted} extracted "
          f"({summary.failed} failed) in {summary.seconds:.1f} s")
    for path, error in summary.failures[:10]:
        print(f"  failed: {error}")
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} more (see the catalog's error column)")
    print(f"catalog: {output} ({len(frame)} rows)")
    return EXIT_FAILED if summary.failed else EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan paths into a catalog."""
    import os

    missing = [p for p in args.paths if not os.path.lexists(p)]
    if missing:
        print(f"metaextract: no such file or directory: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    return _run_scan(args.paths, args.output, args)


def cmd_demo(args: argparse.Namespace) -> int:
    """Make a small mixed corpus and scan it: the first thing to run."""
    import os
    import tempfile

    from .demo import demo_corpus

    folder = args.folder or tempfile.mkdtemp(prefix="metaextract-demo-")
    data = os.path.join(folder, "data")
    print(f"Making a small corpus of HDF5, NetCDF, video and binary files (two of them corrupt) in {data} ...")
    paths, notes = demo_corpus(data)
    for note in notes:
        print(f"  note: {note}")
    output = args.output or os.path.join(folder, "catalog")
    code = _run_scan([data], output, args)
    from .catalog import read_catalog

    frame = read_catalog(output)
    cols = ["path", "format", "reader", "success", "n_datasets", "n_variables", "codec", "media_duration", "error_type"]
    frame = frame.assign(path=frame["path"].map(os.path.basename))
    print()
    print(frame[cols].sort_values("path").to_string(index=False, na_rep=""))
    print(f"\nRead it with pandas: pandas.read_parquet({output!r})")
    # the two corrupt files are meant to fail: the demo succeeded if everything else did
    expected = sum(os.path.basename(p).startswith("corrupt_") for p in paths)
    return EXIT_OK if code == EXIT_OK or int((~frame["success"]).sum()) == expected else code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaextract", description="Metadata from large scientific, video and binary files, on Dask.")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print one file's metadata")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="machine-readable JSON")
    _streaming_options(info)
    info.set_defaults(func=cmd_info)

    sc = sub.add_parser("scan", help="extract every file under PATHs into a catalog",
                        description="Extract every file under PATHs on a Dask cluster into a crash-safe, resumable catalog. "
                                    "Exit status: 0 all files succeeded, 1 some failed (the catalog is still written), 2 usage error.")
    sc.add_argument("paths", nargs="+", metavar="PATH")
    sc.add_argument("-o", "--output", required=True, metavar="CATALOG", help="catalog folder (created; reruns resume it)")
    _scan_options(sc)
    sc.set_defaults(func=cmd_scan)

    demo = sub.add_parser("demo", help="make a small mixed corpus in a temporary folder and scan it")
    demo.add_argument("--folder", help="where to make it (default: a new temporary folder)")
    demo.add_argument("-o", "--output", help="catalog folder (default: FOLDER/catalog)")
    _scan_options(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    except ValueError as exc:  # bad option values found when building the config
        print(f"metaextract: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
