"""Small files grouped into batch tasks, ordered and prioritised by load-balancing strategy (pure: no Dask)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from ..core.model import ExtractionTask
from ..core.settings import LoadBalancingStrategy

#: the most files in one batch task: small enough that Dask's progress panel moves, large enough that task overhead vanishes
#: (64 cost an in-memory cluster's scan of 60,000 tiny files 3 s more than 256; 256 cost one of 100,000 tiny files
#: 1.4 to 1.7 s more than 1,024: the scheduler's and the run's per-task work, in the client's process)
MAX_BATCH = 1024
#: batches a window of files is split into per worker thread: few enough that task overhead vanishes, enough that the
#: last batches do not leave threads idle while one finishes (16 made a tiny file's batch about 12 ms of work, of which
#: an in-memory cluster's per-task work took a third; 4 changed nothing measurable for small netCDF files)
BATCHES_PER_THREAD = 4


@dataclass
class Batch:
    """One batch task: its files, Dask priority and a label for its key."""

    tasks: list[ExtractionTask]
    priority: int
    label: str


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _by_time(ordered: list[ExtractionTask], seconds: dict[str, float], nthreads: int, most: int) -> Iterable[list[ExtractionTask]]:
    """Consecutive files in batches of about equal predicted time (``BATCHES_PER_THREAD`` per thread), at most ``most``
    files each."""
    target = sum(seconds.get(t.task_id, 0.0) for t in ordered) / (BATCHES_PER_THREAD * max(nthreads, 1))
    batch: list[ExtractionTask] = []
    spent = 0.0
    for t in ordered:
        if batch and (spent + seconds.get(t.task_id, 0.0) > target or len(batch) >= most):
            yield batch
            batch, spent = [], 0.0
        batch.append(t)
        spent += seconds.get(t.task_id, 0.0)
    if batch:
        yield batch


def plan_batches(tasks: list[ExtractionTask], strategy: LoadBalancingStrategy, sizes: dict[str, int],
                 nthreads: int, batch_size: int | None = None, types: dict[str, str] | None = None,
                 seconds: dict[str, float] | None = None) -> list[Batch]:
    """Group small files into batch tasks, ordered and prioritised by strategy.

    ``seconds``: each file's predicted cost (``planning.costs``); under
    SIZE_AWARE the costliest go first and batches hold about equal predicted time.
    """
    if not tasks:
        return []
    per_batch = batch_size or max(1, min(MAX_BATCH, math.ceil(len(tasks) / (BATCHES_PER_THREAD * max(nthreads, 1)))))
    S = LoadBalancingStrategy
    if strategy is S.LEAST_LOADED:
        per_batch = batch_size or max(1, per_batch // 2)  # more, smaller tasks: stealing evens the load
        return [Batch(b, 0, "any") for b in _chunks(tasks, per_batch)]
    if strategy is S.FILE_TYPE_AWARE:
        groups: dict[str, list[ExtractionTask]] = {}
        for t in tasks:
            groups.setdefault((types or {}).get(t.task_id, "unknown"), []).append(t)
        out = [Batch(b, 0, kind) for kind, group in groups.items() for b in _chunks(group, per_batch)]
    elif strategy is S.PRIORITY:
        ordered = sorted(tasks, key=lambda t: t.sort_key)
        return [Batch(b, max(t.priority for t in b), "priority") for b in _chunks(ordered, per_batch)]
    elif strategy is S.SIZE_AWARE and seconds:
        ordered = sorted(tasks, key=lambda t: -seconds.get(t.task_id, 0.0))
        out = [Batch(b, 0, "cost") for b in _by_time(ordered, seconds, nthreads, batch_size or MAX_BATCH)]
    elif strategy is S.SIZE_AWARE:
        ordered = sorted(tasks, key=lambda t: -sizes.get(t.task_id, 0))
        out = [Batch(b, 0, "size") for b in _chunks(ordered, per_batch)]
    else:  # FIFO
        out = [Batch(b, 0, "fifo") for b in _chunks(tasks, per_batch)]
    for i, batch in enumerate(out):  # earlier batches first
        batch.priority = len(out) - i
    return out
