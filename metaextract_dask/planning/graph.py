"""Plan -> a low-level Dask task dictionary (pure: no Dask call, tested without a scheduler).

Graphs are plain dicts of tuples: no HighLevelGraph, no optimisation pass,
because per-task scheduling cost dominates (benchmarks/RESULTS.md). Keys are
named so the dashboard groups them: ``read-chunk``, ``merge-chunks``,
``finalize-file``. The functions the tasks run are in ``planning/tasks.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Hashable

from ..core.model import ChunkSpec, Shape
from ..core.settings import StreamingConfig
from ..readers.base import StreamChunkReader
from ..sandbox import Isolation
from .plan import MERGE_FANIN, Plan
from .tasks import finalize_task, merge_states, run_chunk, run_single_task

#: a chunk that runs in the worker itself (pure Python reads: bytes, ffprobe's own process)
IN_PROCESS = Isolation.off()


@dataclass
class FileGraph:
    """One file's task dictionary and the keys a client asks for."""

    dsk: dict[Hashable, Any]
    final_key: str
    read_keys: dict[Hashable, ChunkSpec]
    reader: StreamChunkReader

    @property
    def longest_path(self) -> int:
        """Tasks on the longest chain of dependencies: how many must run one after another however many workers there
        are (a SEQUENTIAL chain: every read; WINDOWED: its reads divided by the window; SAMPLE_BASED: two)."""
        from dask.core import get_dependencies, toposort

        dsk: Any = self.dsk
        depth: dict[Hashable, int] = {}
        for key in toposort(dsk):  # type: ignore[no-untyped-call]  # each task after its inputs
            depth[key] = 1 + max((depth[d] for d in get_dependencies(dsk, key)), default=0)
        return max(depth.values(), default=0)


def build_graph(plan: Plan, reader: StreamChunkReader, config: StreamingConfig, deadline: float | None = None,
                isolation: Isolation = IN_PROCESS) -> FileGraph:
    """The task dictionary for one file's plan.

    With ``isolation`` on, the tasks that run a native library (every chunk of
    a native reader but its fixity blocks) run in the worker thread's sandbox.
    """
    token = uuid.uuid4().hex[:16]
    final_key = f"finalize-file-{token}"
    described = plan.describe()
    native = isolation if isolation.enabled and reader.native else IN_PROCESS
    dsk: dict[Hashable, Any] = {}
    if plan.shape is Shape.SINGLE:
        dsk[final_key] = (run_single_task, native, reader, plan.info, config, described, plan.specs, deadline)
        return FileGraph(dsk, final_key, {}, reader)

    read = f"read-chunk-{token}"
    read_keys: dict[Hashable, ChunkSpec] = {}
    lag = {Shape.CHAIN: 1, Shape.WINDOW: plan.window}.get(plan.shape)
    for i, spec in enumerate(plan.specs):
        key = (read, i)
        after = ((read, i - lag),) if lag and i >= lag else ()
        where = native if reader.native_spec(spec) else IN_PROCESS
        dsk[key] = (run_chunk, where, reader, spec, config, deadline, *after)
        read_keys[key] = spec

    leaves: list[Hashable] = list(read_keys)
    if plan.shape is not Shape.STAR:
        leaves = _tree_reduce(dsk, leaves, reader, f"merge-chunks-{token}")
    dsk[final_key] = (finalize_task, reader, plan.info, config, described, leaves)
    return FileGraph(dsk, final_key, read_keys, reader)


def _tree_reduce(dsk: dict[Hashable, Any], keys: list[Hashable], reader: StreamChunkReader, name: str) -> list[Hashable]:
    """Add merge levels until at most MERGE_FANIN keys remain; return them."""
    level = 0
    while len(keys) > MERGE_FANIN:
        merged: list[Hashable] = []
        for j in range(0, len(keys), MERGE_FANIN):
            key = (name, level, j // MERGE_FANIN)
            dsk[key] = (merge_states, reader, keys[j : j + MERGE_FANIN])
            merged.append(key)
        keys, level = merged, level + 1
    return keys


def run_local(fg: FileGraph, callbacks: list[Any] | None = None, pool: Any = None) -> Any:
    """Run a file's graph here: a one-task graph directly, larger ones on Dask's threaded scheduler.

    One thread per core (Dask's default): more threads measured slower, with
    four times the context switches (benchmarks/bench_stream.py). Files run
    side by side share one ``pool`` (a ``concurrent.futures`` executor) so the
    machine still has one reading thread per core, not one per core per file.
    """
    if len(fg.dsk) == 1 and not callbacks:
        fn, *args = fg.dsk[fg.final_key]
        return fn(*args)
    import dask.threaded

    return dask.threaded.get(fg.dsk, fg.final_key, callbacks=callbacks, pool=pool)
