"""The strategies' graph shapes: task counts, dependencies, byte ranges."""

from __future__ import annotations

import threading

import dask.threaded
import pytest
from conftest import GiB, MiB
from dask.callbacks import Callback
from dask.core import get_dependencies

from metaextract_dask import ChunkType, StreamingConfig, StreamingExtractor, StreamingStrategy
from metaextract_dask.planning.plan import max_reads, merge_task_count

pytestmark = pytest.mark.unit

S = StreamingStrategy


def graph_for(path, **cfg):
    return StreamingExtractor(StreamingConfig(**cfg)).graph(path)


def read_deps(fg, key):
    """The read-chunk keys a read task waits for."""
    return sorted(k for k in get_dependencies(fg.dsk, key) if k in fg.read_keys)


def test_sequential_is_a_chain(random_file):
    path = random_file(10 * MiB + 123)
    plan, fg = graph_for(path, strategy=S.SEQUENTIAL, chunk_size=MiB)
    keys = list(fg.read_keys)
    assert len(keys) == 11 == plan.chunks_total
    assert read_deps(fg, keys[0]) == []
    for prev, key in zip(keys, keys[1:]):
        assert read_deps(fg, key) == [prev]


@pytest.mark.parametrize("window", [1, 3, 4])
def test_windowed_waits_on_chunk_i_minus_w(random_file, window):
    path = random_file(20 * MiB)
    plan, fg = graph_for(path, strategy=S.WINDOWED, chunk_size=MiB, window_size=window)
    keys = list(fg.read_keys)
    assert len(keys) == 20
    for i, key in enumerate(keys):
        assert read_deps(fg, key) == ([keys[i - window]] if i >= window else [])
    assert plan.task_count == len(fg.dsk)


def test_byte_ranges_tile_the_file(random_file):
    size = 7 * MiB + 5
    path = random_file(size)
    plan, fg = graph_for(path, strategy=S.WINDOWED, chunk_size=2 * MiB)
    specs = list(fg.read_keys.values())
    assert [(s.offset, s.size) for s in specs] == [(0, 2 * MiB), (2 * MiB, 2 * MiB), (4 * MiB, 2 * MiB), (6 * MiB, MiB + 5)]
    assert specs[0].chunk_type is ChunkType.HEADER
    assert specs[-1].chunk_type is ChunkType.FOOTER
    assert all(s.chunk_type is ChunkType.BLOCK for s in specs[1:-1])


def test_sample_based_is_a_star_of_header_footer_and_k(sparse_file):
    path = sparse_file(GiB)
    plan, fg = graph_for(path, strategy=S.SAMPLE_BASED, sample_count=8, chunk_size=MiB)
    specs = list(fg.read_keys.values())
    assert len(specs) == 10
    assert specs[0].offset == 0 and specs[-1].offset + specs[-1].size == GiB
    # a star: no read waits on another, the final task waits on all of them
    assert all(read_deps(fg, k) == [] for k in fg.read_keys)
    assert set(get_dependencies(fg.dsk, fg.final_key)) == set(fg.read_keys)
    gaps = {b.offset - a.offset for a, b in zip(specs[1:-1], specs[2:-1])}
    assert max(gaps) - min(gaps) <= MiB  # evenly spaced up to one chunk of rounding


def test_sample_based_cost_independent_of_size(sparse_file):
    small = graph_for(sparse_file(GiB, "one.bin"), strategy=S.SAMPLE_BASED)[0]
    huge = graph_for(sparse_file(20 * GiB, "twenty.bin"), strategy=S.SAMPLE_BASED)[0]
    assert len(small.specs) == len(huge.specs) == StreamingConfig().sample_count + 2
    assert small.task_count == huge.task_count
    assert huge.bytes_planned == small.bytes_planned


def test_adaptive_respects_the_task_cap_on_20_gib(sparse_file):
    path = sparse_file(20 * GiB)
    for strategy in (S.ADAPTIVE, S.WINDOWED, S.SEQUENTIAL):
        plan, fg = graph_for(path, strategy=strategy, large_file_threshold=100 * GiB)
        assert len(fg.dsk) == plan.task_count <= plan_cap()
        assert plan.chunk_size_grown and plan.describe()["chunk_size_grown"]
        assert plan.full_scan and sum(s.size for s in plan.specs) == 20 * GiB
    plan, fg = graph_for(path)  # default thresholds: sampled above 1 GiB
    assert plan.shape == "star" and len(fg.dsk) <= plan_cap()


def plan_cap() -> int:
    return StreamingConfig().max_tasks_per_file


@pytest.mark.parametrize("cap", [3, 10, 64, 256, 1000])
def test_cap_arithmetic(cap):
    n = max_reads(cap)
    assert n + merge_task_count(n) <= cap
    assert cap < 4 or n + 1 + merge_task_count(n + 1) > cap


def test_adaptive_picks_shape_by_size(random_file, sparse_file):
    cfg = dict(streaming_threshold=4 * MiB, large_file_threshold=64 * MiB)
    assert graph_for(random_file(MiB, "s.bin"), **cfg)[0].shape == "single"
    assert len(graph_for(random_file(MiB, "s.bin"), **cfg)[1].dsk) == 1
    assert graph_for(random_file(8 * MiB, "m.bin"), **cfg)[0].shape == "window"
    assert graph_for(sparse_file(128 * MiB), **cfg)[0].shape == "star"


def test_chunk_size_rounds_to_checksum_block(random_file):
    plan, _ = graph_for(random_file(4 * MiB), strategy=S.WINDOWED, chunk_size=1_500_000)
    assert plan.chunk_size == 2 * MiB


class _Concurrency(Callback):
    """Largest number of read-chunk tasks running at once."""

    def __init__(self):
        self.lock, self.now, self.peak = threading.Lock(), 0, 0

    def _pretask(self, key, dsk, state):
        if isinstance(key, tuple) and str(key[0]).startswith("read-chunk"):
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)

    def _posttask(self, key, result, dsk, state, id):
        if isinstance(key, tuple) and str(key[0]).startswith("read-chunk"):
            with self.lock:
                self.now -= 1


@pytest.mark.parametrize("strategy,window,limit", [(S.SEQUENTIAL, 4, 1), (S.WINDOWED, 2, 2), (S.WINDOWED, 3, 3)])
def test_chunks_in_flight_when_run(random_file, strategy, window, limit):
    path = random_file(24 * MiB)
    plan, fg = graph_for(path, strategy=strategy, window_size=window, chunk_size=256 * 1024)
    cb = _Concurrency()
    with cb:
        dask.threaded.get(fg.dsk, fg.final_key, num_workers=8)
    assert 1 <= cb.peak <= limit
