"""What runs on a worker for a batch of small files.

One task extracts many files in turn (per-task overhead is milliseconds, so
10,000 small files must not be 10,000 tasks), each with retries, a timeout
and, by default, inside this thread's sandbox process so a crashing or
hanging native parser costs only its own file. The worker reports each
file's outcome to the scheduler plugin in one event per batch.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

from .. import sandbox
from ..catalog.schema import path_key, record_columns, record_thumbnail, variable_rows
from ..core import pin
from ..core.errors import MetaExtractError, MisattributionError, ParserCrashError, is_transient
from ..core.model import ExtractionResult, RecordHead, RowBlock, check_record, failure
from ..core.settings import StreamingConfig, setting
from ..core.text import safe_dict, safe_text
from ..planning.graph import build_graph, run_local
from ..planning.plan import Shape, plan_file, plan_path
from ..planning.tasks import CHUNK_SUMMARIES, finalize_file, run_single, unwrap
from ..readers.arrays import one_open
from ..readers.probe import file_type, probe
from ..sandbox import Isolation

sandbox.preload(__name__)  # a parser child imports this project's extraction before its first request


@dataclass(frozen=True)
class BatchSettings:
    """What a batch task needs to know, sent once per batch."""

    timeout: float = field(default_factory=lambda: float(setting("streaming.timeout")))
    retry_limit: int = field(default_factory=lambda: int(setting("parallel.retry-limit")))
    retry_delay: float = field(default_factory=lambda: float(setting("parallel.retry-delay")))
    isolation: Isolation = field(default_factory=Isolation)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    run: str = ""
    #: the run writes a catalog and keeps no records (``Run``'s ``blocks``): a parsed file's sandbox call answers with
    #: its catalog columns and variables-table rows, not its record dict, and a batch's such files come back as one
    #: ``RowBlock`` (the client reads no record of theirs)
    columns: bool = False

    @property
    def retry(self) -> Retry:
        return Retry(self.retry_limit, self.retry_delay)


@dataclass(frozen=True)
class Retry:
    """Which failures are tried again, and after how long (exponential backoff, at most 30 s)."""

    limit: int
    delay: float

    def allows(self, error: BaseException, attempt: int) -> bool:
        """Whether a file that failed ``attempt`` times with ``error`` gets another attempt."""
        return attempt <= self.limit and is_transient(error)

    def wait(self, attempt: int) -> float:
        return min(self.delay * 2 ** (attempt - 1), 30.0)


def extract_metadata(path: str, config: StreamingConfig | None = None) -> dict[str, Any]:
    """This project's own extraction of one file, run right here (never on a cluster)."""
    config = config or StreamingConfig()
    deadline = time.time() + config.timeout
    with one_open():  # a small file's probe, layout and summaries share one open of the file
        plan, reader = plan_path(path, config)
        single = plan.shape is Shape.SINGLE
        if single:  # one task, in this thread: it uses the open file
            record = run_single(reader, plan.info, config, plan.describe(), plan.specs, deadline)
    if not single:  # chunk tasks run in other threads: each opens the file itself (the open one, and its lock, are released)
        record = unwrap(run_local(build_graph(plan, reader, config, deadline)))
    record.pop(CHUNK_SUMMARIES, None)
    return record


#: the share of a file's timeout that one call of ``extract_plain`` may take before it hands the rest back
PLAIN_SHARE = 0.5

#: the most files, and bytes, that ``extract_plain`` takes through its stages together (a group's files stay open,
#: and their bytes in memory, until the group's records are made)
PLAIN_GROUP, PLAIN_GROUP_BYTES = 32, 4 * 1024 * 1024


def extract_plain(items: list[tuple[str, str]], config: StreamingConfig) -> RowBlock:
    """In the sandbox: the block of the files of ``items`` (task id, path) that need no parser.

    A file that needs no parser (``registry.needs_no_parser``: the binary
    reader's, of at most one read piece, ``binary.READ_PIECE``) is read whole
    in its probe's one open (``probe.probe_whole``) and gets the record
    ``extract_metadata`` gives it: the same plan, the binary reader's summary
    of its bytes (``binary.whole_state``), the same finalizing (its identity
    checked again after the read). Its answer travels with the others', as
    columns. Every other file (another format, a larger file, any failure,
    or once half the file timeout has passed) is handed back to the batch's
    per-file calls, with their retries, timeouts and crash handling.

    Files go through in groups (``PLAIN_GROUP`` files or ``PLAIN_GROUP_BYTES``),
    each stage run for every file of a group before the next stage: one
    stage's code then stays in the processor's caches from file to file, where
    a file's way through every stage in turn evicted it (a tiny file: 111 us
    became 81 us). A group's time is shared equally among its files' records
    (``started_at``, ``duration``): they were read together.
    """
    ids: list[str] = []
    paths: list[str] = []
    rows: list[dict[str, Any]] = []
    starts: list[float] = []
    ends: list[float] = []
    stop = time.monotonic() + PLAIN_SHARE * config.timeout
    pending = iter(items)
    while time.monotonic() <= stop:
        start = time.time()
        with pin.session():  # each probe's descriptor pins its file until the group's records are made
            group, more = _plain_group(pending, config)
        share = (time.time() - start) / max(len(group), 1)
        for i, (task_id, path, columns) in enumerate(group):
            ids.append(task_id)
            paths.append(path)
            rows.append(columns)
            starts.append(start + i * share)
            ends.append(start + (i + 1) * share)
        if not more:
            break
    return RowBlock.of_rows(ids, paths, rows, starts, ends)


def _plain_group(pending: Iterator[tuple[str, str]], config: StreamingConfig) -> tuple[list[tuple[str, str, dict[str, Any]]], bool]:
    """(task id, path, catalog columns) of the next group of ``pending``'s files that need no parser, made a stage at a
    time for the whole group, and whether ``pending`` has more. A file leaves the group at the first stage that finds
    it is not such a file, or fails on it (its own call then says what went wrong)."""
    from ..readers.binary import READ_PIECE, whole_state
    from ..readers.detect import HEAD_BYTES
    from ..readers.probe import probe_whole
    from ..readers.registry import needs_no_parser, reader_for

    limit = min(READ_PIECE, config.streaming_threshold - 1)
    probed: list[Any] = []
    size, more = 0, False
    for task_id, path in pending:
        found = _stage(lambda: probe_whole(path, limit))
        if found is not None:
            probed.append((task_id, path, *found))
            size += found[0].size
        if len(probed) >= PLAIN_GROUP or size >= PLAIN_GROUP_BYTES:
            more = True
            break
    probed = [p for p in probed if _stage(lambda: needs_no_parser(p[2], p[3][:HEAD_BYTES]))]

    def planned(info: Any) -> Any:
        reader, note = reader_for(info)
        plan = plan_file(info, reader, config, note)
        return (reader, plan.describe()) if plan.shape is Shape.SINGLE and plan.bytes_planned == info.size else None

    plans = [_stage(lambda: planned(info)) for _, _, info, _ in probed]
    states = [_stage(lambda: whole_state(data, config)) if plan else None for (_, _, _, data), plan in zip(probed, plans)]
    records = [_stage(lambda: finalize_file(plan[0], info, config, plan[1], [state])) if state else None
               for (_, _, info, _), plan, state in zip(probed, plans, states)]
    made = [(task_id, path, _stage(lambda: _checked_columns(path, record))) if record else None
            for (task_id, path, _, _), record in zip(probed, records)]
    return [m for m in made if m is not None and m[2] is not None], more


def _stage(step: Callable[[], Any]) -> Any:
    """``step()``, or None when it fails: the file leaves ``extract_plain``'s group for its own call."""
    try:
        return step()
    except Exception:  # noqa: BLE001 - its own call says what went wrong, with its retries
        return None


def _checked_columns(path: str, record: dict[str, Any]) -> dict[str, Any]:
    check_record(path, record)
    return record_columns(record)


def plain_first(items: list[tuple[str, str]], settings: BatchSettings) -> tuple[RowBlock | None, list[tuple[str, str]]]:
    """(the block of this batch's files that needed no parser, the items left for their own calls).

    Files named like a format a native library parses are not tried; a plain
    call that fails as a whole (a timeout, a crash) leaves every file to its
    own call, so the lane costs a file at most one more try, never its record.
    """
    from ..readers.registry import native_extensions

    natives = native_extensions()
    tried = [item for item in items if os.path.splitext(item[1])[1].lower() not in natives]
    if len(tried) < 2:  # one file: its own call is the same round trip
        return None, items
    try:
        block = settings.isolation.call(tried[0][1], settings.timeout, extract_plain, tried, settings.streaming)
    except Exception:  # noqa: BLE001 - whatever went wrong, each file's own call says it for that file
        return None, items
    done = set(block.task_ids)
    return block, [item for item in items if item[0] not in done]


def extract_with_columns(path: str, config: StreamingConfig, as_columns: bool = False) -> tuple[dict[str, Any] | None, Any]:
    """``extract_metadata`` and the catalog columns its record fills, made here: in the sandbox, beside the other
    worker's, rather than on the client that writes every row. None when the catalog writer first moves something
    out of the record (a reference set, a poster frame).

    ``as_columns`` (``BatchSettings.columns``): (None, (columns, variables-table rows)) instead, the record checked
    here to be this file's (``check_record``) and sent only as its columns' JSON; a record the writer moves
    something out of comes whole, as without it."""
    record = extract_metadata(path, config)
    moved = isinstance(record.get("references"), dict) or (record_thumbnail(record) or {}).get("png") is not None
    if moved:
        return record, None
    columns = record_columns(record)
    if not as_columns:
        return record, columns
    check_record(path, record)
    return None, (columns, variable_rows({"success": True, "path": safe_text(path), "path_bytes": path_key(path)}, record))


def structure_after_crash(call: Callable[..., Any], path: str, crash: BaseException, config: StreamingConfig, timeout: float) -> dict[str, Any]:
    """The file's structure alone, read again through ``call`` (a sandbox's: a fresh child) after its native parser
    crashed on it (``crash``, a ``ParserCrashError``): a library that dies decoding values (a filter plugin, a
    malformed chunk) costs the file its statistics, not its row. The record says why in ``streaming.note`` and in its
    reader's warnings. Raises ``crash`` when that is no help: not a crash, a read already without values, or the
    structure's read failing too."""
    if not isinstance(crash, ParserCrashError):
        raise crash
    why = crash.message
    try:
        if config.metadata_only:
            raise crash
        record = call(path, timeout, extract_metadata, path, replace(config, metadata_only=True))
        note = f"structure only, no statistics: {why}; its structure alone was then read without a crash"
    except ParserCrashError:
        try:  # even the structure crashes the native library: the reader's pure-Python reading, if it has one
            record = call(path, timeout, structure_in_python, path, config)
        except MetaExtractError:
            raise crash from None
        note = f"structure only, no statistics: {why}, even without reading values; its structure was read in pure Python"
    except MetaExtractError:
        raise crash from None
    record.setdefault("streaming", {})["note"] = note
    section = record.get(str(record.get("reader")))
    if isinstance(section, dict):
        section.setdefault("warnings", []).append(note)
    return record


def structure_in_python(path: str, config: StreamingConfig) -> dict[str, Any]:
    """The file's record from its reader's pure-Python structure (``StreamChunkReader.structure_in_python``): no
    native library, no value read. A ``ParserCrashError`` when its reader has none."""
    from ..readers.registry import reader_of_format

    info = probe(path)
    reader = reader_of_format(info.format)
    section = reader.structure_in_python(path) if reader is not None else None
    if reader is None or section is None:
        raise ParserCrashError(path, f"no pure-Python reading of {info.format} files")
    streaming = {"requested_strategy": config.strategy.value, "strategy": None, "shape": None, "chunks_read": 0, "bytes_read": 0,
                 "exact": False, "note": None}
    return RecordHead(info.path, info.size, info.mtime, info.format, reader.name, str(getattr(reader, "version", "1")), info.etag,
                      info.version, streaming).record({reader.name: section})


def _failed(task_id: str, path: str, error: BaseException, fn: Callable | None, settings: BatchSettings, start: float,
            end: float | None = None, attempts: int = 1) -> ExtractionResult:
    """A file's failure; after a native crash of this project's own extraction, its structure alone when that reads."""
    if fn is None and settings.isolation.enabled and isinstance(error, ParserCrashError):
        try:
            record = structure_after_crash(settings.isolation.call, path, error, settings.streaming, settings.timeout)
            return _success(task_id, path, (record, record_columns(record)), fn, start, time.time(), attempts + 1)
        except MetaExtractError:
            pass
    return failure(task_id, path, error, start, end, attempts=attempts)


def _function(path: str, fn: Callable | None, settings: BatchSettings, as_columns: bool = False) -> tuple[Callable, tuple]:
    """What runs for one file: the user's function or this project's extraction (``as_columns``: answering with the
    file's columns, ``extract_with_columns``)."""
    if fn is None:
        return extract_with_columns, (path, settings.streaming, as_columns)
    return fn, (path,)


def _call(path: str, fn: Callable | None, settings: BatchSettings) -> Any:
    func, args = _function(path, fn, settings)
    return settings.isolation.call(path, settings.timeout, func, *args)


def _success(task_id: str, path: str, value: Any, fn: Callable | None, start: float, end: float, attempts: int) -> ExtractionResult:
    metadata, columns = value if fn is None else (value, None)
    try:
        check_record(path, metadata)
    except MisattributionError as exc:
        return failure(task_id, path, exc, start, end, attempts)
    if not isinstance(metadata, dict):
        metadata = {"value": metadata}
    return ExtractionResult(task_id, path, True, metadata, start_time=start, end_time=end, attempts=attempts, columns=columns)


def extract_one(task_id: str, path: str, fn: Callable | None, settings: BatchSettings,
                failed: BaseException | None = None, start: float | None = None) -> ExtractionResult:
    """One file with retries and exponential backoff; a failure is a result.

    ``failed`` is the error of a first attempt already made elsewhere (a
    batched sandbox run), so only the retries happen here.
    """
    start = time.time() if start is None else start
    attempt, error = (1, failed) if failed is not None else (0, None)
    retry = settings.retry
    while True:
        if error is not None:
            if not retry.allows(error, attempt):
                return _failed(task_id, path, error, fn, settings, start, attempts=attempt)
            time.sleep(retry.wait(attempt))
        attempt += 1
        try:
            return _success(task_id, path, _call(path, fn, settings), fn, start, time.time(), attempt)
        except Exception as exc:  # noqa: BLE001 - every failure becomes this file's record
            error = exc


def extract_many(items: list[tuple[str, str]], fn: Callable | None, settings: BatchSettings) -> Iterator[ExtractionResult | RowBlock]:
    """Files in turn; sandboxed, those that need no parser go to the child in one call and come back as one block
    (``plain_first``), the others in one message, a reply each (for a catalog, ``BatchSettings.columns``, the
    successes among them come back as one more block).

    Retries of transient failures wait until the child has answered the
    whole batch: a retry sent while replies are still owed would read one
    of them (the cause of rows carrying a neighbour's metadata).
    """
    if not settings.isolation.enabled:
        for task_id, path in items:
            yield extract_one(task_id, path, fn, settings)
        return
    if fn is None:
        block, items = plain_first(items, settings)
        if block is not None:
            yield block
    calls = [(path, *_function(path, fn, settings, settings.columns)) for _, path in items]
    replies = settings.isolation.call_many(calls, settings.timeout)
    retry: list[tuple[str, str, BaseException, float]] = []
    gathered: tuple[list, ...] = ([], [], [], [], [], [])  # parsed files that answered with their columns (``columns``)
    for (task_id, path), (ok, value, start, end) in zip(items, replies):
        if ok and fn is None and value[0] is None:
            for into, item in zip(gathered, (task_id, path, value[1][0], start, end, value[1][1])):
                into.append(item)
        elif ok:
            yield _success(task_id, path, value, fn, start, end, 1)
        elif settings.retry.allows(value, 1) or isinstance(value, ParserCrashError):  # a crash: its structure, after the batch
            retry.append((task_id, path, value, start))
        else:
            yield failure(task_id, path, value, start, end)
    if gathered[0]:
        yield RowBlock.of_rows(*gathered)
    for task_id, path, error, start in retry:
        yield extract_one(task_id, path, fn, settings, failed=error, start=start)


def outcome(result: ExtractionResult) -> dict[str, Any]:
    """What the scheduler plugin is told about one file."""
    md = result.metadata or {}
    head = RecordHead.of(md)
    streaming, io = head.streaming, head.io or {}
    size = head.size if head.size is not None else file_size(result.file_path)
    if result.file_format is None:
        result.file_format = file_type(result.file_path, md if result.success else None)
    return safe_dict({
        "path": result.file_path,
        "type": result.file_format,
        "success": result.success,
        "bytes": streaming.get("bytes_read", size if result.success else 0),
        "chunks": streaming.get("chunks_read", 1 if result.success else 0),
        "io_requests": io.get("requests", 0),
        "io_bytes": io.get("bytes_read", 0),
        "shape": streaming.get("shape"),
        "duration": result.duration,
        "error": result.error,
        "error_type": result.error_type,
        "worker": result.worker,
    })


def file_size(path: str) -> int:
    """The file's size, 0 when it cannot be stat-ed (its record will say why)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def current_worker() -> Any:
    """The distributed Worker running this task, or None (Dask's local scheduler: distributed is not even imported)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


def extract_batch(items: list[tuple[str, str]], fn: Callable | None, settings: BatchSettings,
                  failed: BaseException | None = None) -> list[ExtractionResult | RowBlock]:
    """A batch task: (task_id, path) pairs, one after another; ``failed``: the one file's first attempt failed so
    elsewhere (``extract_one``: only what comes after it runs here)."""
    from ..diagnostics.stats import EVENT_TOPIC

    worker = current_worker()
    results: list[ExtractionResult | RowBlock] = []
    done = [extract_one(*items[0], fn, settings, failed=failed)] if failed is not None else extract_many(items, fn, settings)
    for result in done:
        result.worker = worker.address if worker is not None else None
        results.append(result)
    if worker is not None and settings.run:
        # the batch key lets the plugin count a batch once, even when a lost worker makes Dask run it again
        batch = str(worker.get_current_task())
        worker.log_event(EVENT_TOPIC, {"kind": "files", "run": settings.run, "batch": batch, **outcomes(results)})
    return results


def outcomes(results: Sequence[ExtractionResult | RowBlock]) -> dict[str, Any]:
    """What the scheduler plugin is told about these files: ``files``, an outcome each, and ``blocks``, a block's
    outcomes as lists (``RowBlock.outcomes``)."""
    return {"files": [outcome(r) for r in results if not isinstance(r, RowBlock)],
            "blocks": [r.outcomes() for r in results if isinstance(r, RowBlock)]}
