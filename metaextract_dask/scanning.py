"""``scan``: folders in, a catalog out, on a Dask cluster. What the CLI runs."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .catalog import CatalogWriter, read_catalog, to_row
from .catalog.read import variables_folder
from .catalog.schema import block_columns, catalog_columns
from .core.model import ExtractionResult, RowBlock, differs_from_walk, same_as_walked
from .core.options import CatalogOptions, Feedback, Running, ScanOptions, Selection
from .core.settings import StreamingConfig
from .diagnostics.progress import Phase, Progress
from .execution.discovery import split_links
from .execution.walk import discover


@dataclass
class ScanSummary:
    """What a scan did, for the CLI's last lines and exit status."""

    found: int = 0
    skipped: int = 0
    extracted: int = 0
    failed: int = 0
    seconds: float = 0.0
    dashboard: str | None = None
    #: where ``metaextract watch`` follows this scan from another terminal or machine (the scheduler's event stream,
    #: with the run's token: keep it to yourself), when the scan runs on a scheduler with an HTTP server
    watch: str | None = None
    #: ``time.perf_counter()`` when the scan started
    started: float = 0.0
    #: what the catalog writer had to tell (a lock taken over, parts quarantined, rows of deleted files dropped)
    notices: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    #: symbolic links recorded as links (their targets are outside the scanned folders)
    links: int = 0
    #: rows in the catalog after the scan
    rows: int = 0
    #: a dry run's answer: (path, reason) for each file that would be extracted
    plan: list[tuple[str, str]] = field(default_factory=list)
    #: the most catalog rows the client held at once before writing them (the writer's row group: memory stays flat)
    most_rows_held: int = 0


def catalog_folders(output: str | os.PathLike | None) -> list[str]:
    """The catalog and what lies beside it (variables, references, thumbnails, cost model, batch jobs' logs): never
    scanned as data."""
    if not output:
        return []
    from .catalog.references import references_folder
    from .catalog.writer import THUMBNAILS
    from .execution.hpc import jobs_folder
    from .planning.costs import model_path

    out = os.fspath(output)
    return [out, variables_folder(out), references_folder(out), os.path.normpath(out) + THUMBNAILS, model_path(out), jobs_folder(out)]


def why_extract(paths: list[str], stats: Mapping[str, tuple[Any, Any]], writer: CatalogWriter | None, read_only: Any,
                retry_failed: bool, asked: frozenset[str] = frozenset(), etags: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """path -> why it is extracted (``catalog.index.REASONS``), None when its row stands.

    The index is the writer's, or for a dry run the folder ``read_only``
    read without its lock; with neither, every file is new. ``asked``: the
    extras this scan makes ("references", "thumbnail"); rows without them
    are extracted again.
    """
    from .catalog.index import NEW, CatalogIndex
    from .readers.registry import available_readers, loaded_reader, reader_versions

    index = writer.index if writer is not None else CatalogIndex.from_folder(os.fspath(read_only)) if read_only is not None else None
    if index is None or not len(index):
        return dict.fromkeys(paths, NEW)
    versions = reader_versions()
    wanted = {}
    for name in available_readers() if asked else ():
        reader = loaded_reader(name)
        if reader is not None and getattr(reader, "extras", frozenset()) & asked:
            wanted[name] = reader.extras & asked
    etags = etags or {}
    return dict(zip(paths, index.reasons(paths, _Each(paths, stats.__getitem__), versions, retry_failed, wanted,
                                         _Each(paths, etags.get))))


class _Each:
    """``fn(path)`` for each of ``paths``, made as it is read (each time it is iterated): no list of a million stats."""

    def __init__(self, paths: Sequence[str], fn: Callable[[str], Any]):
        self.paths, self.fn = paths, fn

    def __iter__(self) -> Iterator[Any]:
        return map(self.fn, self.paths)

    def __len__(self) -> int:
        return len(self.paths)


class WalkedSizes(Mapping):
    """The walk's sizes as the run asks for them (path -> bytes, where the walk had one): a view of its stats, not a
    second dict of every file."""

    def __init__(self, stats: Mapping[str, tuple[Any, Any]]):
        self.stats = stats

    def __getitem__(self, path: str) -> int:
        size = self.stats[path][0]
        if size is None:
            raise KeyError(path)
        return int(size)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.get(path) is not None

    def get(self, path: str, default: Any = None) -> Any:
        size = self.stats.get(path, (None, None))[0]
        return default if size is None else int(size)

    def __iter__(self) -> Iterator[str]:
        return (p for p, (size, _) in self.stats.items() if size is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Stopped(Exception):
    """The consumer of ``scan_iter`` stopped reading: the scan ends, keeping what was extracted."""


def scan_iter(paths: str | os.PathLike | Sequence[str | os.PathLike], output: str | os.PathLike | None = None,
              **options: Any) -> Iterator[dict[str, Any]]:
    """``scan``, yielding each file's catalog row (a dict) as the file finishes, not at the end.

    The scan runs in a thread (on whatever execution ``options`` choose:
    Dask's local threads, the embedded cluster, a ``client=``); rows come in
    the order files finish. With ``output`` the catalog is written as by
    ``scan``. Leaving the loop early (``break``, an exception) stops the scan;
    what was extracted stays in the catalog. An error of the scan itself is
    raised here. At most ``buffer`` rows (default 10,000) wait for the
    reader: a slower reader slows the scan down rather than filling memory.
    """
    import queue
    import threading

    rows: queue.Queue = queue.Queue(maxsize=int(options.pop("buffer", 10_000)))
    options.pop("as_frame", None)
    stop = threading.Event()
    end = object()

    def put(item: Any) -> bool:
        """Hand ``item`` to the reader, waiting while the queue is full; False once the reader has stopped."""
        while not stop.is_set():
            try:
                rows.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def deliver(row: dict[str, Any]) -> None:
        if not put(row):
            raise _Stopped

    def run() -> None:
        outcome: Any = end
        try:
            scan(paths, output, on_result=deliver, as_frame=False, **options)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised in its thread
            outcome = exc
        put(outcome)

    worker = threading.Thread(target=run, name="metaextract-scan", daemon=True)
    worker.start()
    try:
        while True:
            item = rows.get()
            if item is end:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def link_record(path: str, target: str) -> ExtractionResult:
    """A symbolic link recorded as such: its target named, nothing behind it read."""
    now = time.time()
    why = "its target is a folder (not walked without --follow-symlinks)" if os.path.isdir(target) else \
        "its target is outside the scanned folders (not followed without --follow-symlinks)"
    metadata = {"path": path, "format": "symlink", "reader": None, "link": {"target": target, "followed": False, "reason": why}}
    return ExtractionResult("link", path, True, metadata, start_time=now, end_time=now, file_format="symlink")


def scan(paths: str | os.PathLike | Sequence[str | os.PathLike], output: str | os.PathLike | None = None, *,
         reading: StreamingConfig | None = None, running: Running | None = None, selection: Selection | None = None,
         catalog: CatalogOptions | None = None, feedback: Feedback | None = None, client: Any = None, **options: Any) -> Any:
    """Extract every file under ``paths``; return the catalog as a pandas DataFrame.

    Options come in the groups ``metaextract scan --help`` shows:
    ``reading`` (a ``StreamingConfig``: strategy, chunk_size, checksum,
    timeout, references, thumbnails, metadata_only, storage_options),
    ``running`` (``Running``: execution, workers, scheduler, cluster,
    dashboard_address, security, retries, isolate, memory_limit,
    load_balancing, learn_from), ``selection`` (``Selection``: include,
    exclude, hidden, follow_symlinks, into_archives), ``catalog``
    (``CatalogOptions``: format, force, retry_failed, dry_run, flush_every)
    and ``feedback`` (``Feedback``: progress, on_client, summary,
    as_frame); any of their fields may also be given as a keyword
    (``scan(p, out, workers=4, checksum="sha256")``). Each is described
    with its default in ``core/options.py`` and docs/python-api.md.

    With ``output`` the catalog is also written there (crash-safe, resumable:
    files already in it with the same size and mtime are skipped unless
    ``force``). The default execution (``"auto"``) is threads in this
    process, each with its own parser sandbox process: on Dask's local
    threads (``"local"``, no cluster) when no dashboard is served, else on
    an in-memory distributed cluster (``"thread_pool"``);
    ``execution="process_pool"`` for worker processes. The embedded
    cluster's dashboard starts when ``dashboard_address`` is given or the
    scan is expected to take at least
    ``metaextract.cluster.dashboard-min-seconds`` (``expected_seconds``).
    ``as_frame=False`` returns None (the CLI: no pandas import).

    Re-scans are make-like: a file is extracted again when it is new, its
    size or mtime changed, or the reader that made its row has another
    version; a failed file is skipped until it changes, unless
    ``retry_failed``. ``dry_run`` reads and writes nothing and returns
    (path, reason) for each file that would be extracted. ``references``
    makes kerchunk references of HDF5 and netCDF-4 files in the same pass
    (kept in ``output + ".references"``; ``open`` reads through them).
    ``thumbnails`` makes a PNG poster frame of each video (at most 160
    pixels wide, 10% into it) with ffmpeg, kept in ``output + ".thumbnails"``
    and named by the row's ``thumbnail``. A re-scan asking for either
    extracts again the rows that lack it. ``learn_from``: catalogs (or
    saved cost models) whose rows teach each file's cost
    (``planning.costs``); the catalog being resumed always teaches too.
    With a model, work goes costliest first and batches hold equal predicted
    time; the model is saved as ``output + ".costs.json"``. Without history,
    work is ordered by size.

    ``paths`` may be fsspec URLs (``s3://bucket/prefix``, ``https://host/file.nc``,
    ``simplecache::s3://...``): a prefix is listed with its objects' sizes and
    ETags in one paginated listing, and each object is read with ranged
    requests. ``storage_options`` (credentials, ``endpoint_url``, ``anon``)
    are fsspec's, passed to ``fsspec.url_to_fs`` where each task runs.
    ``metadata_only`` reads structure and attributes only (no statistics, no
    checksum). ``into_archives``: each zip and tar file's members become rows
    of their own (``zip://member::archive.zip``), read in place through the
    container (never extracted to disk) and in parallel; the container's own
    row lists them.
    """
    opts = ScanOptions.from_values(options, {"reading": reading, "running": running, "selection": selection, "catalog": catalog,
                                             "feedback": feedback})
    tell = opts.feedback.summary is None  # called from Python: notices become warnings (the CLI prints its own)
    summary = opts.feedback.summary = opts.feedback.summary if not tell else ScanSummary()
    summary.started = time.perf_counter()
    from .storage.urls import is_url, local_path

    given = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    roots = [os.fspath(p) if is_url(os.fspath(p)) else local_path(p) for p in given]
    config = parallel_config(opts)
    writer = None
    if output is not None and not opts.catalog.dry_run:
        writer = CatalogWriter(os.fspath(output), opts.catalog.format, flush_every=opts.catalog.flush_every, force=opts.catalog.force)
        writer.add_roots(roots)
    try:
        return _scan(roots, output, writer, opts, config, client)
    finally:
        if writer is not None:
            writer.lock.release()
            summary.notices.extend(writer.notices)
        if tell:
            import warnings

            for note in summary.notices:
                warnings.warn(note, RuntimeWarning, stacklevel=2)


def parallel_config(opts: ScanOptions) -> Any:
    """The run's ``ParallelExtractionConfig`` from the scan's groups (a notice when the sandbox gets less memory than asked)."""
    from .core.settings import LoadBalancingStrategy
    from .execution.api import ParallelExtractionConfig
    from .execution.cluster import ExecutionModel

    run = opts.running
    retry: dict[str, Any] = {"retry_limit": run.retries, "retry_failed": run.retries > 0} if run.retries is not None else {}
    config = ParallelExtractionConfig(
        max_workers=run.workers, execution_model=ExecutionModel.THREAD_POOL if run.execution == "auto" else ExecutionModel.parse(run.execution),
        **retry, isolate=run.isolate, load_balancing=LoadBalancingStrategy.parse(run.load_balancing), scheduler_address=run.scheduler,
        dashboard_address=run.dashboard_address, security=run.security, streaming=opts.reading,
        **({"memory_limit": run.memory_limit} if run.memory_limit is not None else {}),  # type: ignore[arg-type]
    )
    if run.isolate:
        from .sandbox import allowed_memory_limit

        allowed = allowed_memory_limit(int(config.memory_limit))
        if allowed < int(config.memory_limit):
            opts.feedback.summary.notices.append(f"parsers get {allowed / 2**30:.2f} GiB of address space, not "
                                                 f"{int(config.memory_limit) / 2**30:.2f} GiB: this environment's limit (ulimit -v) is lower")
    return config


def cost_model(learn_from: Sequence[str | os.PathLike], output: str | os.PathLike | None, writer: CatalogWriter | None,
               config: Any, summary: ScanSummary) -> Any:
    """The cost model this scan orders work by (``planning.costs``), saved beside the catalog; None: order by size."""
    from .core.settings import LoadBalancingStrategy
    from .planning import costs

    sources = [os.fspath(s) for s in learn_from]
    if writer is not None and writer.rows_written:
        sources.append(os.fspath(output))  # type: ignore[arg-type]  # a writer has an output
    if not sources or config.load_balancing is not LoadBalancingStrategy.SIZE_AWARE:
        return None
    model, warnings = costs.learn(sources)
    summary.notices.extend(warnings)
    if model is not None and writer is not None:
        try:
            costs.save(model, costs.model_path(os.fspath(output)))  # type: ignore[arg-type]
        except OSError as exc:
            summary.notices.append(f"the cost model could not be saved beside the catalog ({exc.strerror or exc})")
    return model


#: what one worker thread does (seconds a file, bytes a second): a small file's probe, record and checksum
#: (benchmarks/RESULTS-scale.md: 100,000 tiny files in 8.8 s on two threads with ``--local``, 0.18 ms a file each; on a slow disk
#: ``expected_seconds`` scales it by the walk's own pace), and a file a native library parses for its structure and
#: statistics (benchmarks/RESULTS-cli.md: 3 to 9 ms a small netCDF file in the page cache; statistics at a cold
#: disk's 200 MB/s: real archives took 60 to 140 ms a file, which one rate of 5 ms a file and 1 GB/s predicted as
#: seconds, issue 31)
PLAIN_COST, PARSED_COST = (0.00018, 1e9), (0.008, 2e8)
#: reading a file's bytes costs at least this many times what the walk took to find and stat it (a cold disk's seeks)
WALK_FACTOR = 2.0


def expected_seconds(names: Sequence[str], size: int, workers: int, metadata_only: bool = False,
                     walk_seconds: float = 0.0, walked: int = 0) -> float:
    """A rough duration of a scan of the files ``names`` (``size`` bytes in all), before it starts: enough to tell
    seconds from minutes (whether a dashboard is worth it). The first 5,000 names tell the share a native library
    parses (by extension); ``metadata_only`` reads headers only (benchmarks/RESULTS-cli.md: 940 netCDF files in
    under 3 s), as cheap as a plain file's. ``walk_seconds`` to list ``walked`` files tells the disk's pace: a plain
    file costs at least ``WALK_FACTOR`` times its share of the walk (10,000 tiny files in the page cache are seconds,
    and no dashboard starts for them; on a cold disk whose walk took a millisecond a file, they are a minute)."""
    from .readers.registry import native_extensions

    plain = max(PLAIN_COST[0], WALK_FACTOR * walk_seconds / walked if walked else 0.0)
    if metadata_only:
        return len(names) * plain / max(1, workers)
    sample, parsed = names[:5000], native_extensions()
    share = sum(os.path.splitext(p)[1].lower() in parsed for p in sample) / max(1, len(sample))
    per_file = share * PARSED_COST[0] + (1 - share) * plain
    per_byte = share / PARSED_COST[1] + (1 - share) / PLAIN_COST[1]
    return (len(names) * per_file + size * per_byte) / max(1, workers)


def parses_in_sandbox(path: str, size: int | None, config: Any) -> bool:
    """Whether this file will likely need a sandbox child: every small file does (its batch parses there), a large one
    when its name says HDF5 or netCDF. A guess only decides what starts early; a wrong one costs overlap, not safety."""
    from .readers.registry import native_extensions

    small = size is None or size < config.streaming.streaming_threshold
    return small or os.path.splitext(path)[1].lower() in native_extensions()


def _start_early(config: Any, client: Any, cluster: Any, files: int, writing: bool, frame: bool) -> None:
    """Work the scan will need, started now so it overlaps the cluster's start.

    On the threaded default the parser sandboxes run on this machine: their
    children start now (one per worker thread, at most one per file that
    will parse in one: ``files``) and import while this process imports
    distributed. The catalog writer's
    pyarrow imports in a background thread while the first files are parsed
    elsewhere; pandas only when a DataFrame is returned (the CLI never needs
    it: it costs more than half a second of this process's time).
    """
    import threading

    from .execution.cluster import ExecutionModel

    local = client is None and cluster is None and config.scheduler_address is None
    if local and config.isolate and config.execution_model in (ExecutionModel.THREAD_POOL, ExecutionModel.LOCAL):
        from .sandbox import prestart

        prestart(min(files, config.max_workers or os.cpu_count() or 1), int(config.memory_limit))
    if writing or frame:
        threading.Thread(target=_import_catalog_libraries, args=(frame,), name="metaextract-warm-imports", daemon=True).start()


def _import_catalog_libraries(frame: bool) -> None:
    from .readers.registry import available_readers

    available_readers()  # the reader plugins' entry points, read once before the first worker thread needs them
    try:
        import pyarrow.parquet  # noqa: F401

        if frame:
            import pandas  # noqa: F401
    except ImportError:  # the writer reports it when it needs them
        pass


def _scan(paths: list[str], output: str | os.PathLike | None, writer: CatalogWriter | None, opts: ScanOptions, config: Any,
          client: Any) -> Any:
    """The scan itself, with the catalog's lock held: list, skip what is done, record links, extract the rest."""
    from .storage.remote import using

    pick, summary, as_frame = opts.selection, opts.feedback.summary, opts.feedback.as_frame
    follow_symlinks, force = pick.follow_symlinks, opts.catalog.force
    phase = Phase(opts.feedback.progress)
    walk_seconds = 0.0  # a listing read from a file says nothing of the disk's pace
    if pick.from_list is not None:  # a site's own walker made the listing: no folder is listed here
        from .execution.walk import from_listing, read_listing

        phase.show(f"reading the listing {pick.from_list}")
        found, outside = from_listing(read_listing(pick.from_list), paths, pick.include, pick.exclude, pick.hidden,
                                      skip=catalog_folders(output))
        if outside:
            summary.notices.append(f"{outside} listed paths are outside the scanned folders ({', '.join(paths)}) and were not read")
    else:
        from .execution.walk import Listed

        before, walk_started = Listed.count, time.perf_counter()
        phase.follow(f"walking {', '.join(paths) if len(paths) < 4 else f'{len(paths)} folders'}", lambda: Listed.count - before)
        try:
            with using(config.streaming.storage_options, config.streaming.timeout):  # remote prefixes are listed here, with the scan's credentials
                found = discover(paths, pick.include, pick.exclude, pick.hidden, follow_symlinks, skip=catalog_folders(output), client=client)
        finally:
            phase.stop()
        walk_seconds = time.perf_counter() - walk_started
        own = {os.path.abspath(f) for f in catalog_folders(output)}
        others = sorted(c for c in found.catalogs if os.path.abspath(c) not in own)
        if others:
            summary.notices.append(f"{len(others)} catalog folders (holding a _manifest.json) or files beside them inside the scanned "
                                   f"folders were left out, not data: {', '.join(others[:3])}{' ...' if len(others) > 3 else ''}")
    files = found.files
    explicit = {os.fspath(p) for p in paths if not os.path.isdir(p)}  # named on the command line: the user's choice
    walked, links = split_links([f for f in files if f not in explicit], [p for p in paths if os.path.isdir(p)], follow_symlinks,
                                linked=found.links)
    files = [f for f in files if f in explicit] + walked
    stats = found.stats  # packed (walk.WalkedStats): a scan of millions holds one value a file, not a second dict of tuples
    if pick.into_archives:
        from .storage.archives import add_members

        with using(config.streaming.storage_options, config.streaming.timeout):
            add_members(files, stats, found.etags, config.streaming.storage_options, pick, found.errors)
    stats.update({p: found.link_stats[p] for p in links})
    if writer is not None and not force and pick.from_list is None:  # a listing need not name every file: no row is dropped for it
        from .storage.urls import is_url

        listed = [os.fspath(p) for p in paths if is_url(os.fspath(p)) and os.fspath(p) not in found.errors]
        writer.forget_missing([os.fspath(p) for p in paths if os.path.isdir(p)], [*files, *links], listed, members=pick.into_archives)
    retry_failed, dry_run = opts.catalog.retry_failed, opts.catalog.dry_run
    asked = frozenset(name for name, on in (("references", config.streaming.references), ("thumbnail", config.streaming.thumbnails)) if on)
    reasons = why_extract([*files, *links], stats, writer, output if dry_run and not force else None, retry_failed, asked, found.etags)
    todo = [p for p in files if reasons[p]]
    link_todo = [p for p in links if reasons[p]]
    if dry_run:
        summary.plan = [(p, str(reasons[p])) for p in [*todo, *link_todo]]
    del reasons  # what is extracted is known: the run holds its own work, a window at a time
    summary.found = len(files) + len(links)
    summary.skipped = summary.found - len(todo) - len(link_todo)
    summary.links = len(links)
    if dry_run:
        summary.seconds = time.perf_counter() - summary.started
        if not as_frame:
            return None
        import pandas as pd

        return pd.DataFrame(summary.plan, columns=["path", "reason"])

    rows: list[dict[str, Any]] = []
    from .core.settings import setting

    bar = Progress.for_output(len(todo) + len(link_todo), opts.feedback.progress, interval=float(setting("progress.interval")))
    if todo:
        bar.phase("starting")

    def arrived(result: ExtractionResult) -> None:
        result = same_as_walked(result, found.etags.get(result.file_path))
        size, mtime = stats.get(result.file_path, (None, None))
        summary.extracted += 1
        if not result.success:
            summary.failed += 1
            summary.failures.append((result.file_path, result.error or ""))
        row = writer.add(result, size, mtime) if writer is not None else to_row(result, size, mtime)
        if writer is None and as_frame:
            rows.append(row)
        bar.update(size or 0, not result.success)
        if opts.feedback.on_result is not None:
            opts.feedback.on_result(row)

    def arrived_block(block: RowBlock) -> None:
        walked = found.etags
        odd = [i for i, (p, e) in enumerate(zip(block.paths, block.column("etag"))) if differs_from_walk(e, walked.get(p))]
        if odd:  # replaced since the walk: its own result says so (``arrived``)
            for i in odd:
                arrived(block.result(i))
            block = block.keep(sorted(set(range(len(block))) - set(odd)))
        got = [stats.get(p, (None, None)) for p in block.paths]
        sizes, mtimes = [g[0] for g in got], [g[1] for g in got]
        summary.extracted += len(block)
        if writer is not None:
            cols = writer.add_block(block, sizes, mtimes)
        else:
            cols = block_columns(block, sizes, mtimes)
        if (writer is None and as_frame) or opts.feedback.on_result is not None:
            names, every = list(cols), dict.fromkeys(name for name, _ in catalog_columns())  # rows as ``to_row`` makes them
            for values in zip(*cols.values()):
                row = {**every, **dict(zip(names, values))}
                if writer is None and as_frame:
                    rows.append(row)
                if opts.feedback.on_result is not None:
                    opts.feedback.on_result(row)
        bar.update(sum(s or 0 for s in sizes), files=len(block))

    def started(c: Any) -> None:
        from .diagnostics.stream import watch_url
        from .execution.cluster import dashboard_url

        summary.dashboard = dashboard_url(c)
        summary.watch = watch_url(summary.dashboard, config.watch_token)
        bar.phase(None)
        if summary.dashboard:
            bar.link(summary.dashboard)
        if opts.feedback.on_client is not None:
            opts.feedback.on_client(c)

    for link in link_todo:
        arrived(link_record(link, links[link]))
    for root, why in found.errors.items():  # a prefix that could not be listed: one error row, the rest goes on
        from .core.errors import FileAccessError
        from .core.model import failure

        summary.found += 1
        arrived(failure("list", root, FileAccessError(root, why.removeprefix(f"{root}: ")), time.time()))
    try:
        if todo:
            import secrets

            from .execution.cluster import ExecutionModel

            config.cost_model = cost_model(opts.running.learn_from, output, writer, config, summary)
            config.watch_token = secrets.token_urlsafe(16)
            expected = expected_seconds(todo, sum(stats[p][0] or 0 for p in todo), config.max_workers or os.cpu_count() or 1,
                                        config.streaming.metadata_only, walk_seconds, len(files) + len(links))
            if config.dashboard_address is None and expected < float(setting("cluster.dashboard-min-seconds")) \
                    and not opts.running.keep_cluster:
                config.dashboard_address = False  # over in seconds: not worth Bokeh's start
            cluster = opts.running.cluster
            if opts.running.execution == "auto" and config.dashboard_address is False and client is None and cluster is None \
                    and config.scheduler_address is None:
                config.execution_model = ExecutionModel.LOCAL  # nothing to show on a dashboard: no cluster to start either
            if opts.running.keep_cluster and client is None and cluster is None and config.scheduler_address is None:
                from .execution.cluster import kept_client

                model = ExecutionModel.THREAD_POOL if config.execution_model is ExecutionModel.LOCAL else config.execution_model
                client = kept_client(model, config.max_workers, config.dashboard_address, config.security)
            children = config.max_workers or os.cpu_count() or 1  # parser children worth starting now: files that will parse, at most one per worker
            parsing = sum(itertools.islice((1 for p in todo if parses_in_sandbox(p, stats[p][0], config)), children))
            _start_early(config, client, cluster, parsing, writer is not None, as_frame)
            from .execution.api import ParallelExtractor
            extractor = ParallelExtractor(config, client=client, cluster=cluster)
            extractor.on_client = started
            extractor.extract(todo, progress=arrived, keep_results=False, sizes=WalkedSizes(stats), blocks=arrived_block)
    finally:
        from .sandbox import discard_spares

        discard_spares()
        bar.close()
        summary.seconds = time.perf_counter() - summary.started
        if writer is not None:
            writer.close(found=summary.found, skipped=summary.skipped, extracted=summary.extracted, failed=summary.failed)
            summary.rows, summary.most_rows_held = writer.rows_written, writer.most_held
    if not as_frame:
        return None
    if writer is not None:
        return read_catalog(writer.folder)
    import pandas as pd

    return pd.DataFrame(rows, columns=[c for c, _ in catalog_columns()])
