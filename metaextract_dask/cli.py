"""The ``metaextract`` command line.

Exit status: 0 success, 1 some files failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from . import __version__
from .catalog import FORMATS, CatalogWriteError
from .core.errors import MetaExtractError
from .core.options import GROUPS, Feedback, ScanOptions
from .core.settings import LoadBalancingStrategy, StreamingConfig, StreamingStrategy
from .core.text import for_terminal
from .execution.hpc import BatchJobError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _positive_seconds(text: str) -> float:
    """A finite number of seconds above zero (``nan`` and ``inf`` are refused)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds above 0")
    return value


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least {minimum}")
        return value
    parse.__name__ = "count"
    return parse


def _byte_size(text: str) -> int:
    """A size such as ``4GiB`` or ``512MB``, above zero."""
    from .core.settings import parse_size

    try:
        value = parse_size(text)
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (for example 4GiB or 512MB)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size above 0")
    return value


def _adapt_range(text: str) -> tuple[int, int]:
    """MIN:MAX jobs, 0 <= MIN <= MAX."""
    lo, sep, hi = text.partition(":")
    if not sep or not lo.isdigit() or not hi.isdigit() or int(lo) > int(hi):
        raise argparse.ArgumentTypeError(f"{text!r} is not MIN:MAX jobs (for example 1:10)")
    return int(lo), int(hi)


def _host_port(text: str) -> str:
    """HOST:PORT (or :PORT) for the dashboard."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:8787, or :0 for any free port)")
    return text


#: record fields that are Unix times: shown as UTC dates (with the number) by ``_human``
_TIMES = {"mtime", "extracted_at", "started_at", "finished_at"}


def _human(record: dict[str, Any], indent: int = 0) -> str:
    """An indented, readable rendering of a metadata record: Unix times as dates, empty sections as ``none``, an
    array's ``cells_read``/``cells_total`` as the storage chunks its statistics read."""
    import time

    pad = "  " * indent
    lines = []
    for key, value in record.items():
        if key == "cells_total" and "cells_read" in record:
            continue
        key = for_terminal(key)
        if key == "cells_read" and isinstance(record.get("cells_total"), int):
            lines.append(f"{pad}storage chunks read: {value} of {record['cells_total']} (a contiguous array is one)")
        elif key in _TIMES and isinstance(value, (int, float)) and not isinstance(value, bool):
            lines.append(f"{pad}{key}: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(value))} ({value})")
        elif isinstance(value, (dict, list)) and not value:
            lines.append(f"{pad}{key}: none")
        elif isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(_human(value, indent + 1))
        elif isinstance(value, list) and len(value) > 8:
            lines.append(f"{pad}{key}: [{len(value)} items] {for_terminal(json.dumps(value[:3], default=str)[:-1])}, ...]")
        else:
            lines.append(f"{pad}{key}: {for_terminal(json.dumps(value, default=str) if isinstance(value, list) else value)}")
    return "\n".join(lines)


def _streaming_options(parser: Any) -> None:
    strategies = [s.value for s in StreamingStrategy]
    parser.add_argument("--strategy", choices=strategies, help="streaming strategy (default: adaptive)")
    parser.add_argument("--chunk-size", type=_byte_size, help="bytes per chunk read, e.g. 4MiB (default: metaextract.streaming.chunk-size, 8MiB)")
    parser.add_argument("--checksum", help="xxh3_128, sha256, blake2b or none (default: metaextract.streaming.checksum, xxh3_128)")
    parser.add_argument("--timeout", type=_positive_seconds, help="seconds allowed per file (default: metaextract.streaming.timeout, 300)")
    parser.add_argument("--references", action="store_true", default=None,
                        help="also make kerchunk references of HDF5, netCDF-4 and classic netCDF files, in the same pass; a catalog keeps them in "
                             "CATALOG.references/ (default: metaextract.streaming.references, off)")
    parser.add_argument("--thumbnails", action="store_true", default=None,
                        help="also make a PNG poster frame of each video with ffmpeg (at most 160 pixels wide, 10%% into it); a "
                             "catalog keeps them in CATALOG.thumbnails/, named by the row's thumbnail "
                             "(default: metaextract.streaming.thumbnails, off)")
    parser.add_argument("--metadata-only", action="store_true", default=None,
                        help="read structure and attributes only: no statistics of the data and no checksum, so a remote "
                             "archive costs a few requests per file (default: metaextract.streaming.metadata-only, off)")
    parser.add_argument("--storage-options", type=_storage_options, metavar="JSON",
                        help="fsspec storage options for s3://, https://, gs://... paths, as a JSON object or @FILE holding one, "
                             "e.g. '{\"anon\": true}' or '{\"client_kwargs\": {\"endpoint_url\": \"http://127.0.0.1:9000\"}}' "
                             "(default: metaextract.storage-options, {}; credentials also come from the store's usual environment "
                             "variables and files)")


def _config(args: argparse.Namespace) -> StreamingConfig:
    """How files are read, from the options this command has (the rest take their defaults)."""
    return ScanOptions.from_values(vars(args), strict=False).reading


def _storage_options(text: str) -> dict[str, Any]:
    """--storage-options: a JSON object (or @FILE holding one, so secrets stay off the command line)."""
    if text.startswith("@"):
        try:
            with open(text[1:]) as f:
                text = f.read()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]!r}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"anon\": true}'")
    return value


def cmd_info(args: argparse.Namespace) -> int:
    """Print each file's metadata, parsed in a sandbox that ``--timeout`` bounds (the parser is killed at the deadline).

    One file: its record (``--json``: an object). Several: ``--json`` gives a
    JSON array with one object per file, a failure as ``{"path", "error",
    "error_type"}``; exit 1 when any failed.
    """
    from .core.settings import setting
    from .execution.batch import extract_metadata, structure_after_crash
    from .sandbox import Sandbox
    from .storage.urls import local_path

    config = _config(args)
    args.files = [local_path(p) for p in args.files]
    box = Sandbox(args.memory_limit or setting("sandbox.memory-limit"))
    out: list[dict[str, Any]] = []
    failed = False
    try:
        for path in args.files:
            try:
                try:
                    out.append(box.call(path, config.timeout, extract_metadata, path, config))
                except MetaExtractError as crash:
                    out.append(structure_after_crash(box.call, path, crash, config, config.timeout))
            except MetaExtractError as exc:
                failed = True
                out.append({"path": path, "error": str(exc), "error_type": type(exc).__name__})
                if not args.json:
                    print(f"metaextract: {for_terminal(exc)}", file=sys.stderr)
    finally:
        box.kill()
    if args.json:
        from .catalog.schema import json_value

        print(json.dumps(out[0] if len(args.files) == 1 and not failed else out, indent=2, default=json_value))
    else:
        print("\n\n".join(_human(r) for r in out if "error_type" not in r))
    return EXIT_FAILED if failed else EXIT_OK


def _scan_options(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("where it runs")
    run.add_argument("-j", "--workers", type=_count(1), help="worker threads (or processes with --processes); default: one per core")
    run.add_argument("--local", dest="execution", action="store_const", const="local",
                     help="threads in this process, each parsing in its own sandbox process, on Dask's local scheduler: no cluster, "
                          "no dashboard (default when no dashboard is served: the fastest start, measured)")
    run.add_argument("--threads", dest="execution", action="store_const", const="thread_pool",
                     help="the same threads on an in-memory distributed cluster with its dashboard (default for scans expected to take "
                          "metaextract.cluster.dashboard-min-seconds, 10 s, or more, or with --dashboard-address)")
    run.add_argument("--processes", dest="execution", action="store_const", const="process_pool",
                     help="one single-threaded worker process per core (for --no-isolate or your own Python-heavy work)")
    run.add_argument("--hybrid", dest="execution", action="store_const", const="hybrid", help="processes with two threads each")
    run.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    run.add_argument("--dashboard-address", type=_host_port, default=None,
                     help="where the embedded cluster's dashboard listens; given, it always starts (default 127.0.0.1:8787, started "
                          "for scans expected to take at least metaextract.cluster.dashboard-min-seconds, 10)")
    tls = parser.add_argument_group("TLS between client, scheduler and workers (shared machines)")
    tls.add_argument("--tls-ca-file", help="CA certificate that signed the certificates below")
    tls.add_argument("--tls-cert", help="certificate (PEM) for client, scheduler and workers")
    tls.add_argument("--tls-key", help="private key of --tls-cert, if not in the same file")
    hpc = parser.add_argument_group("batch systems (dask-jobqueue; defaults from jobqueue.yaml)")
    hpc.add_argument("--cluster", dest="batch_system", choices=["slurm", "pbs", "sge", "lsf"], help="run the workers as batch jobs, speaking TLS with keys made for the run; the keys and the "
                          "jobs' logs go to CATALOG.jobs/ (private; on a file system the nodes share)")
    hpc.add_argument("--jobs", type=_count(1), default=1, help="batch jobs to start (default 1)")
    hpc.add_argument("--adapt", metavar="MIN:MAX", type=_adapt_range, help="scale between MIN and MAX jobs with the work instead of --jobs")
    hpc.add_argument("--cores", type=_count(1), help="cores per job")
    hpc.add_argument("--memory", help="memory per job, e.g. 8GB")
    hpc.add_argument("--walltime", help="walltime per job, e.g. 01:00:00")
    hpc.add_argument("--queue", help="queue / partition")
    hpc.add_argument("--account", help="account / project to charge")
    hpc.add_argument("--interface", help="network interface of scheduler and workers, e.g. ib0")
    hpc.add_argument("--lifetime", help="retire each worker gracefully after this long (before its walltime), e.g. 55m")
    work = parser.add_argument_group("how files are extracted")
    _streaming_options(work)
    work.add_argument("--retries", type=_count(0), default=None,
                      help="retries of transient errors, with exponential backoff (default: metaextract.parallel.retry-limit, 3)")
    work.add_argument("--no-isolate", dest="isolate", action="store_false", help="parse in the worker itself, not in a sandbox process")
    work.add_argument("--memory-limit", type=_byte_size, default=None, metavar="SIZE",
                      help="address-space limit of each parser sandbox, e.g. 8GiB (default: metaextract.sandbox.memory-limit, 4GiB; "
                           "lowered to the environment's own limit, ulimit -v, when that is lower)")
    work.add_argument("--load-balancing", default="size_aware", choices=[s.value for s in LoadBalancingStrategy],
                      help="how files are ordered and grouped onto workers (default: size_aware)")
    pick = parser.add_argument_group("which files")
    pick.add_argument("--include", action="append", default=[], metavar="GLOB", help="only names or relative paths matching (repeatable)")
    pick.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip names or relative paths matching (repeatable)")
    pick.add_argument("--hidden", action="store_true", help="include hidden files and folders")
    pick.add_argument("--follow-symlinks", action="store_true", help="walk into symlinked folders (loops are detected)")
    pick.add_argument("--from-list", metavar="FILE",
                      help="read the files this listing names instead of walking the folders (one path per line, NUL-separated, "
                           "find -printf '%%s %%T@ %%p\\0' records or dwalk --text lines; - for standard input): the listing your site's parallel "
                           "walker already made. Only listed files under the PATHs are read; rows of unlisted files stay "
                           "(default: walk the PATHs)")
    pick.add_argument("--into-archives", action="store_true",
                      help="each .zip and .tar file's members become rows of their own (zip://MEMBER::ARCHIVE), read in place "
                           "through the archive, never extracted to disk; the archive's own row lists them (default: off)")
    out = parser.add_argument_group("the catalog")
    out.add_argument("--format", default="parquet", choices=list(FORMATS), help="catalog part format (default parquet)")
    out.add_argument("--force", action="store_true", help="redo every file, replacing the catalog")
    out.add_argument("--learn-from", action="append", metavar="CATALOG",
                     help="learn each file's cost from this catalog's rows (or a saved CATALOG.costs.json), to start the "
                          "costliest files first and batch by predicted time; repeatable. The catalog being resumed always "
                          "teaches too; the model is saved as CATALOG.costs.json (default: none, order by size)")
    out.add_argument("--retry-failed", action="store_true",
                     help="extract again the files whose row is a failure (default: a failed file is remembered with its reason "
                          "and skipped until it changes)")
    out.add_argument("--dry-run", action="store_true",
                     help="list what would be extracted and why (new, changed, reader upgraded, previously failed), one "
                          "'REASON<TAB>PATH' line each; nothing is read or written")
    from .catalog.exports import EXPORTS, NEEDS_REFERENCES

    out.add_argument("--export", action="append", choices=list(EXPORTS), metavar="FORMAT",
                     help="after the scan, in the same process, export the catalog as `metaextract export CATALOG --to FORMAT` "
                          f"would, to its default place ({', '.join(EXPORTS)}; repeatable; {' and '.join(sorted(NEEDS_REFERENCES))} "
                          "turn --references on; default: none)")
    out.add_argument("--flush-every", type=_count(1), default=20000, help="write a catalog part every N results and every 10 s (default: %(default)s)")
    out.add_argument("-q", "--quiet", action="store_true",
                     help="no progress bar, no dashboard link, no Dask log lines: the summary lines only (failures are in the catalog)")


def _quiet_logs() -> None:
    """No Dask log lines (cluster start, worker notices, shutdown races), here and in the worker processes."""
    import logging
    import os

    import dask.config

    # critical, not error: a worker's heartbeat racing the scheduler's shutdown logs an ERROR with a traceback;
    # the environment variable reaches worker processes, which set up logging before they get any config
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "critical"
    dask.config.set({"logging.distributed": "critical"})
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _batch_cluster(args: argparse.Namespace, output: str) -> Any:
    """The batch jobs' cluster, started and waited for: its credentials and the jobs' logs in CATALOG.jobs/ (private),
    what the jobs are doing printed until the first worker joins, then the dashboard's link and the tunnel to it."""
    import dataclasses
    import socket

    from .execution.hpc import BatchJobs, jobs_folder, make_jobqueue_cluster, wait_for_workers

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(BatchJobs) if f.name not in ("kind", "folder") and hasattr(args, f.name)}
    cluster = make_jobqueue_cluster(BatchJobs(args.batch_system, folder=jobs_folder(output), **given))
    say = (lambda text: None) if args.quiet else (lambda text: print(f"metaextract: {text}", file=sys.stderr, flush=True))
    say(f"scheduler {cluster.scheduler_address} (TLS: only this run's workers hold its key); job logs in "
        f"{for_terminal(cluster._job_kwargs.get('log_directory', ''))}")
    try:
        from distributed import Client

        with Client(cluster, set_as_default=False) as client:
            wait_for_workers(cluster, client, report=say)
    except BaseException:
        cluster.close()
        raise
    link = cluster.dashboard_link
    if link:
        port = link.split(":")[-1].split("/")[0]
        say(f"Dask dashboard: {link} (from your machine: ssh -L {port}:127.0.0.1:{port} {socket.gethostname()}, then open it)")
    return cluster


def _run_scan(paths: list[str], output: str, args: argparse.Namespace) -> int:
    import os

    from .catalog.exports import NEEDS_REFERENCES
    from .scanning import ScanSummary, scan

    if args.from_list not in (None, "-") and not os.path.isfile(args.from_list):
        print(f"metaextract: --from-list: no such file: {for_terminal(args.from_list)}", file=sys.stderr)
        return EXIT_USAGE

    exports = list(dict.fromkeys(getattr(args, "export", None) or ()))
    if set(exports) & NEEDS_REFERENCES and args.references is None:
        args.references = True
    summary = ScanSummary()
    if args.quiet:
        _quiet_logs()

    def show_dashboard(client) -> None:
        if not args.quiet and summary.dashboard:
            from tqdm import tqdm

            from .diagnostics.dashboard import page_link

            with tqdm.external_write_mode(file=sys.stderr):  # above the bar, which is drawn again below
                print(f"Dask dashboard: {summary.dashboard}  (extraction page: {page_link(summary.dashboard)})", file=sys.stderr, flush=True)
                if summary.watch:
                    print(f"follow it from another terminal: metaextract watch '{summary.watch}'", file=sys.stderr, flush=True)

    security = None
    if args.tls_ca_file or args.tls_cert:
        if not (args.tls_ca_file and args.tls_cert):
            print("metaextract: TLS needs both --tls-ca-file and --tls-cert", file=sys.stderr)
            return EXIT_USAGE
        from .execution.cluster import tls_security

        security = tls_security(args.tls_ca_file, args.tls_cert, args.tls_key)
    cluster, gone, unwatch = None, [], None

    def jobs_gone(why: str) -> None:
        import signal
        import threading

        gone.append(why)
        # the scan stops as on Ctrl-C, keeping what was extracted; the message says why. To the main thread itself:
        # a signal to the process may be taken by another thread, and the main one would wait on (a result) unwoken
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # type: ignore[arg-type]

    try:
        if getattr(args, "batch_system", None):
            from .execution.hpc import watch_jobs

            cluster = _batch_cluster(args, output)
            if not getattr(args, "lifetime", None):  # retiring jobs are replaced by design
                unwatch = watch_jobs(cluster, jobs_gone)
        options = ScanOptions.from_values({**vars(args), "cluster": cluster, "security": security}, strict=False)
        options.feedback = Feedback(progress=False if args.quiet else None, on_client=show_dashboard, summary=summary, as_frame=False)
        scan(paths, output, **{group: getattr(options, group) for group in GROUPS})
    except BatchJobError as exc:
        print(f"metaextract: {for_terminal(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _notices(summary)
        if gone:  # not Ctrl-C: the batch jobs went away
            print(f"metaextract: {for_terminal(gone[0])}; {summary.extracted} results were saved in {for_terminal(output)}: "
                  "run the same command to go on", file=sys.stderr)
            return EXIT_FAILED
        print(f"metaextract: interrupted; {summary.extracted} results were saved in {for_terminal(output)}" if summary.extracted
              else "metaextract: interrupted before any file was extracted", file=sys.stderr)
        return 128 + _INTERRUPTED[0]
    except CatalogWriteError as exc:
        _notices(summary)
        print(f"metaextract: {for_terminal(exc.args[-1])}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if unwatch is not None:
            unwatch()
        if cluster is not None:
            cluster.close()
    _notices(summary)
    if args.dry_run:
        return _print_plan(summary)
    print(f"{summary.found} files found, {summary.skipped} already in the catalog, {summary.extracted} extracted "
          f"({summary.failed} failed) in {summary.seconds:.1f} s")
    for path, error in summary.failures[:10]:
        print(f"  failed: {for_terminal(error)}")
    if len(summary.failures) > 10:
        print(f"  ... and {len(summary.failures) - 10} more (see the catalog's error column)")
    if summary.links:
        print(f"  {summary.links} symbolic links recorded as links, not followed (their targets are outside the scanned folders)")
    print(f"catalog: {for_terminal(output)} ({summary.rows} rows)")
    exported = [_export(output, to, None, args.storage_options) for to in exports]
    return max([EXIT_FAILED if summary.failed else EXIT_OK, *exported])


def _print_plan(summary: Any) -> int:
    """A dry run's answer: one line per file that would be extracted, then the counts by reason."""
    from collections import Counter

    from .catalog.index import REASONS

    for path, reason in summary.plan:
        print(f"{reason}\t{for_terminal(path)}")
    counts = Counter(reason for _, reason in summary.plan)
    why = ", ".join(f"{counts[r]} {r}" for r in REASONS if counts[r])
    print(f"would extract {len(summary.plan)} of {summary.found} files{f' ({why})' if why else ''}; "
          f"{summary.skipped} up to date", file=sys.stderr)
    return EXIT_OK


def _notices(summary: Any) -> None:
    for note in summary.notices:
        print(f"metaextract: note: {for_terminal(note)}", file=sys.stderr)


def _check_output(paths: list[str], output: str) -> None:
    """The catalog may not be a scanned folder or hold one (it would scan itself, or hide the data)."""
    import os

    from .storage.urls import is_url

    out = os.path.realpath(output)
    for p in paths:
        if is_url(p):
            continue
        real = os.path.realpath(p)
        if os.path.isdir(p) and (real == out or real.startswith(out.rstrip(os.sep) + os.sep)):
            raise ValueError(f"the catalog folder {output} would hold the scanned folder {p}; choose another -o")


def _check_scheduler(address: str, timeout: float = 10.0) -> None:
    """A --scheduler that does not answer is a usage error, said in one line within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls", "ws", "wss") or not parts.hostname:
        raise ValueError(f"--scheduler {address!r}: give an address such as tcp://HOST:8786")
    try:
        port = parts.port or 8786
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ValueError(f"--scheduler {address}: no Dask scheduler answers there ({getattr(exc, 'strerror', None) or exc})") from None


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan paths into a catalog."""
    import os

    from .storage.urls import is_url, local_path

    args.paths = [p if is_url(p) else local_path(p) for p in args.paths]
    missing = [p for p in args.paths if not is_url(p) and not os.path.lexists(p)]  # a URL's absence is its own error row
    if missing:
        print(f"metaextract: no such file or directory: {for_terminal(', '.join(missing))}", file=sys.stderr)
        return EXIT_USAGE
    _check_output(args.paths, args.output)
    if args.scheduler:
        _check_scheduler(args.scheduler)
    return _run_scan(args.paths, args.output, args)


def cmd_watch(args: argparse.Namespace) -> int:
    """Follow a running scan's event stream until it ends."""
    from .diagnostics.watch import WatchError, watch

    try:
        end = watch(args.url, enabled=False if args.quiet else None)
    except WatchError as exc:
        print(f"metaextract: {for_terminal(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if end else EXIT_FAILED


def cmd_alerts(args: argparse.Namespace) -> int:
    """Print (or write) the Prometheus alerting rules over the metaextract_* series."""
    from .diagnostics.alerts import rules_yaml

    text = rules_yaml()
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
        print(f"alerts: {for_terminal(args.output)}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Write the catalog's HTML report."""
    import os

    from .catalog.read import part_files
    from .catalog.report import write_report

    if not os.path.isdir(args.catalog) or not part_files(args.catalog):
        print(f"metaextract: {for_terminal(args.catalog)} is not a catalog (no part-*.parquet or part-*.jsonl in it)", file=sys.stderr)
        return EXIT_USAGE
    from .catalog.report import rows_folder

    try:
        output = write_report(args.catalog, args.output, args.title, args.group_by)
    except ValueError as exc:  # a --group-by column the catalog lacks
        print(f"metaextract: {for_terminal(exc)}", file=sys.stderr)
        return EXIT_USAGE
    print(f"report: {for_terminal(output)}\nthe rows behind it: {for_terminal(rows_folder(output))}/")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Export a catalog for intake-esm, as a STAC Collection or as kerchunk references."""
    if args.check:
        return _check_export(args.catalog, args.storage_options)
    if args.to is None:
        print("metaextract: export: say what to write (--to esm, stac, kerchunk or icechunk), or --check", file=sys.stderr)
        return EXIT_USAGE
    return _export(args.catalog, args.to, args.output, args.storage_options)


def _export(catalog: str, to: str, output: str | None, storage_options: dict[str, Any] | None) -> int:
    """One export of a catalog (``export --to``, ``scan --export``): its notices, then what it wrote, one line each."""
    import warnings

    from .catalog.exports import export

    def hashed(done: int, total: int) -> None:  # file:checksum reads every file: say how far
        if sys.stderr.isatty():
            print(f"\rmetaextract: hashed {done}/{total} files for file:checksum", end="" if done < total else "\n",
                  file=sys.stderr, flush=True)

    try:
        with warnings.catch_warnings(record=True) as notices:
            warnings.simplefilter("always", RuntimeWarning)
            written = export(catalog, to, output, progress=hashed, storage_options=storage_options)
    except ValueError as exc:
        print(f"metaextract: {for_terminal(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    for notice in notices:
        print(f"metaextract: {for_terminal(str(notice.message))}", file=sys.stderr)
    print(f"{to}: {for_terminal(written)}")
    return EXIT_OK


def _check_export(catalog: str, storage_options: dict[str, Any] | None) -> int:
    """``export --check``: the datasets a virtual (Icechunk) export would write, and its notes."""
    from .catalog.read import part_files
    from .catalog.virtual import check
    from .storage.remote import using

    if not part_files(catalog):
        print(f"metaextract: {for_terminal(catalog)} is not a catalog (no part-*.parquet or part-*.jsonl in it)", file=sys.stderr)
        return EXIT_USAGE
    with using(storage_options):
        datasets, notes = check(catalog)
    for ds in datasets:
        first, last = ds.members[0].path, ds.members[-1].path
        print(f"{for_terminal(ds.name)}\t{len(ds.members)} files along {for_terminal(ds.dim)}\t{for_terminal(first)} .. {for_terminal(last)}")
    for note in notes:
        print(f"metaextract: {for_terminal(note)}", file=sys.stderr)
    return EXIT_FAILED if notes else EXIT_OK


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
    cols = ["path", "format", "reader", "success", "n_datasets", "n_variables", "time_start", "lat_min", "lat_max", "codec",
            "media_duration", "error_type"]
    frame = frame.assign(path=[os.path.relpath(p, data) for p in frame["path"]], time_start=frame["time_start"].dt.strftime("%Y-%m"))
    print()
    print(frame[cols].sort_values("path").to_string(index=False, na_rep=""))
    shown = for_terminal(output)
    print(f"\nThe files are in {for_terminal(data)} and the catalog in {shown}; the folder {for_terminal(folder)} is kept "
          f"(rm -r it when done). Next:\n"
          f"  metaextract report {shown}          # one HTML page: formats, time coverage with its gap, the map, failures\n"
          f"  metaextract scan {for_terminal(data)} -o {shown} --force --dashboard-address 127.0.0.1:8787\n"
          "                                      # again, on the Dask dashboard: http://127.0.0.1:8787/metaextract\n"
          f"  python -c \"import metaextract_dask as me; print(me.open({output!r}, me.query_catalog({output!r}, bbox=(-180, -90, 180, 90))"
          ".query('lat_max - lat_min > 100')))\"\n"
          "                                      # the global run's four years as one dataset\n"
          f"  pandas.read_parquet({output!r})     # the catalog itself")
    # the two corrupt files are meant to fail: the demo succeeded if everything else did
    expected = sum(os.path.basename(p).startswith("corrupt_") for p in paths)
    return EXIT_OK if code == EXIT_OK or int((~frame["success"]).sum()) == expected else code


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (and exit 2), not a usage block."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="metaextract", description="Metadata from large scientific, video and binary files, on Dask.")
    sub = parser.add_subparsers(dest="command", required=True)
    parser.add_argument("--version", action="version", version=f"metaextract {__version__}")
    info = sub.add_parser("info", help="print the metadata of one or more files")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="machine-readable JSON (an array for several files, failures as error objects)")
    _streaming_options(info)
    info.add_argument("--memory-limit", type=_byte_size, default=None, metavar="SIZE", help="address-space limit of the parser (default 4GiB)")
    info.set_defaults(func=cmd_info)

    sc = sub.add_parser("scan", help="extract every file under PATHs into a catalog",
                        description="Extract every file under PATHs into a crash-safe, resumable catalog: on this machine's threads "
                                    "(a short scan), an in-memory Dask cluster with its dashboard (a long one), your scheduler "
                                    "(--scheduler) or batch jobs (--cluster). Exit status: 0 all files succeeded, 1 some failed "
                                    "(the catalog is still written), 2 usage error, 130 stopped by Ctrl-C, 143 by SIGTERM, 129 by "
                                    "SIGHUP (what was extracted is kept in the catalog).")
    sc.add_argument("paths", nargs="+", metavar="PATH")
    sc.add_argument("-o", "--output", required=True, metavar="CATALOG", help="catalog folder (created; reruns resume it)")
    _scan_options(sc)
    sc.set_defaults(func=cmd_scan)

    watch = sub.add_parser("watch", help="follow a running scan from another terminal or machine: its bar, failures and summary",
                           description="Follow a scan running on a Dask scheduler (the embedded cluster of a long scan, --cluster, "
                                       "--scheduler) through the scheduler's event stream. The scan prints the URL (with its "
                                       "token: keep it to yourself). Exit status: 0 the scan ended, 1 the stream could not be "
                                       "followed or ended first.")
    watch.add_argument("url", metavar="URL", help="http://HOST:PORT/metaextract/events?token=... as the scan printed it")
    watch.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only the summary")
    watch.set_defaults(func=cmd_watch)

    alerts = sub.add_parser("alerts", help="print Prometheus alerting rules for the metaextract_* series (thresholds: "
                                           "dask.config metaextract.alerts.*)")
    alerts.add_argument("-o", "--output", help="write the rules to this file (default: standard output)")
    alerts.set_defaults(func=cmd_alerts)

    rep = sub.add_parser("report", help="write a catalog's report: one self-contained HTML page of plots",
                         description="Files and bytes by format; time coverage by folder (or --group-by a column) with gaps and "
                                     "overlaps marked; the files' latitude/longitude boxes; the largest, slowest, failed and duplicate "
                                     "files, the variables and the folders: one HTML file that works offline, its size the same for "
                                     "100 files or millions. The rows behind each part go to CSV files in a folder beside it "
                                     "(report.html -> report.rows/).")
    rep.add_argument("catalog", metavar="CATALOG")
    rep.add_argument("-o", "--output", metavar="HTML", help="where to write it (default: CATALOG/_report.html)")
    rep.add_argument("--title", help="the page's title (default: the catalog's path)")
    rep.add_argument("--group-by", default="folder", metavar="COLUMN",
                     help="what the time coverage is grouped by: folder, or a catalog column such as format or calendar (default: folder)")
    rep.set_defaults(func=cmd_report)

    exp = sub.add_parser("export", help="export a catalog: an intake-esm collection, a STAC Collection, every file's "
                                        "kerchunk references, or an Icechunk repository of virtual datasets")
    exp.add_argument("catalog", help="the catalog folder")
    from .catalog.exports import EXPORTS

    exp.add_argument("--to", choices=list(EXPORTS), help="; ".join(f"{name}: {what}" for name, (what, _fn) in EXPORTS.items()))
    exp.add_argument("--check", action="store_true",
                     help="write nothing: list the datasets the icechunk export would write, and every file it would split off "
                          "or leave out and why (exit status 1 when there is one)")
    exp.add_argument("-o", "--output", help="the folder to write (default: CATALOG.esm, CATALOG.stac, CATALOG.kerchunk or "
                                            "CATALOG.icechunk beside the catalog)")
    exp.add_argument("--storage-options", type=_storage_options, metavar="JSON",
                     help="how to reach the objects of a catalog of a bucket (the scan's --storage-options: a JSON object or @FILE "
                          "holding one); the icechunk export reads their coordinates and writes the endpoint, never the credentials "
                          "(default: none)")
    exp.set_defaults(func=cmd_export)

    demo = sub.add_parser("demo", help="make a small mixed corpus in a temporary folder and scan it",
                          description="Make a small corpus (netCDF files with time and latitude/longitude coverage, HDF5, video, "
                                      "binary and a few broken files) in a folder, scan it into a catalog and say where both are, "
                                      "and what to try next (the report, the dashboard, open). The folder is kept.")
    demo.add_argument("--folder", help="where to make it (default: a new temporary folder)")
    demo.add_argument("-o", "--output", help="catalog folder (default: FOLDER/catalog)")
    _scan_options(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


#: the signal that interrupted a scan (SIGINT unless SIGTERM or SIGHUP arrived)
_INTERRUPTED = [2]


def _stop_like_ctrl_c(signum: int, _frame: Any) -> None:
    """SIGTERM and SIGHUP save what was extracted, exactly as Ctrl-C does."""
    _INTERRUPTED[0] = signum
    raise KeyboardInterrupt


def _handle_signals() -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_like_ctrl_c)


def _warnings_in_one_line() -> None:
    """Warnings (a catalog part left out, a notice of an export) as one ``metaextract:`` line each, not file:line and source."""
    import warnings

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
        kind = "" if issubclass(category, RuntimeWarning) else f"{category.__name__}: "
        print(f"metaextract: {kind}{for_terminal(str(message))}", file=file or sys.stderr)

    warnings.showwarning = show


#: open files a scan needs at least (a cluster, sandboxes, libraries' own); the soft limit is raised towards WANTED_FILES
MIN_FILES, WANTED_FILES = 64, 4096


def _file_descriptors() -> str | None:
    """Raise the soft open-files limit towards the hard one; why it is too low to work with, or None."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WANTED_FILES if hard == resource.RLIM_INFINITY else min(hard, WANTED_FILES)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < MIN_FILES:
        return f"this process may open only {soft} files (ulimit -n); metaextract needs at least {MIN_FILES}: raise it (ulimit -n 4096)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    import os

    from .core.settings import native_environment

    # before any HDF5 or netCDF library loads here or in a process started from here: no plugins at all, until a path
    # that opens HDF5 points them at the trusted folders (``readers.guard.restrict_plugins``, which reads the
    # configuration: a command that opens no HDF5 file, an export, a query, does not import dask to read it), and no
    # libnetcdf configuration file from the working folder
    os.environ.update(native_environment(()))
    _handle_signals()
    _warnings_in_one_line()
    short = _file_descriptors()
    if short:
        print(f"metaextract: {short}", file=sys.stderr)
        return EXIT_FAILED
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    except ValueError as exc:  # bad option values found when building the config, a locked or unusable catalog
        print(f"metaextract: {for_terminal(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped to head: stop quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        import errno

        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        print(f"metaextract: too many open files: this process may open {soft} (ulimit -n); a scan needs a few dozen "
              "and more with more workers: raise it (ulimit -n 4096)", file=sys.stderr)
        return EXIT_FAILED


def run() -> None:
    """The ``metaextract`` command: ``main()``, then an exit without Python's teardown when nothing needs it.

    Tearing down the interpreter (every module of NumPy, pyarrow and Dask
    cleared, one by one) took 0.1 to 0.15 s after each scan here: a tenth of a
    short scan. Everything this project opened is closed by then (the catalog
    written and fsynced, sandbox children ended, and they die with this process
    anyway). A run that used distributed (a cluster, a dashboard, HPC jobs)
    exits normally, so the cluster libraries' own exit handlers still run.
    """
    import logging
    import os

    code = main()
    if "distributed" in sys.modules:
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): nothing more can be said there
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
