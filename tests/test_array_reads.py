"""Section statistics read consecutive cells as whole boxes: exactly the cells asked for, in few reads."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metaextract_dask.core.model import ArrayCells
from metaextract_dask.readers.arrays import box_reads, cell_boxes, grid, section_stats

pytestmark = pytest.mark.unit


def cells_of(g, k0, k1):
    """The reference: cells k0..k1 in C order, one by one."""
    return [tuple(c) for c in itertools.islice(itertools.product(*map(range, g)), k0, k1)]


@settings(max_examples=300, deadline=None)
@given(g=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple), data=st.data())
def test_boxes_cover_exactly_the_cells_asked_for(g, data):
    n = math.prod(g)
    k0 = data.draw(st.integers(0, n - 1))
    k1 = data.draw(st.integers(k0 + 1, n))
    covered = [c for lo, hi in cell_boxes(g, k0, k1) for c in itertools.product(*(range(a, b) for a, b in zip(lo, hi)))]
    assert sorted(covered) == cells_of(g, k0, k1)  # each cell once, no other
    assert len(cell_boxes(g, k0, k1)) <= 2 * len(g) + 1  # a run is a few boxes, whatever its length


class CountingArray:
    """A NumPy array that counts the reads made of it (as an h5py Dataset or netCDF4 Variable would be read)."""

    def __init__(self, values):
        self.values, self.reads = values, 0
        self.shape = values.shape

    def __getitem__(self, slices):
        self.reads += 1
        return self.values[slices]


def test_a_record_variable_is_read_in_one_call_with_exact_statistics():
    values = np.random.default_rng(1).random((40, 64)).astype(np.float32)
    values[3, 5] = np.nan
    array = CountingArray(values)
    part = ArrayCells("tas", (1, 64), 0, 40)  # a storage chunk per record, as netCDF-4 writes unlimited dimensions
    stats = section_stats((part,), lambda name: (array, None))["tas"]
    assert array.reads == 1
    finite = values[~np.isnan(values)]
    assert stats["count"] == finite.size and stats["nan_count"] == 1 and stats["cells"] == 40 == stats["cells_total"]
    assert stats["min"] == finite.min() and stats["max"] == finite.max()
    assert math.isclose(stats["sum"], float(finite.sum(dtype=np.float64)), rel_tol=1e-9)


def test_part_of_a_grid_reads_only_its_cells():
    values = np.arange(6 * 8 * 10, dtype=np.int32).reshape(6, 8, 10)
    cell = (2, 4, 5)
    g = grid(values.shape, cell)
    part = ArrayCells("v", cell, 3, 10)
    read = np.zeros(values.shape, dtype=int)
    for slices, _ in box_reads(values.shape, part):
        read[slices] += 1
    expected = np.zeros(values.shape, dtype=int)
    for c in cells_of(g, 3, 10):
        expected[tuple(slice(i * w, (i + 1) * w) for i, w in zip(c, cell))] += 1
    assert (read == expected).all()


def test_one_open_does_not_hold_the_file_across_a_chunk_graph(tmp_path):
    """A small file under WINDOWED is a chunk graph run by threads: the open kept for the layout must not lock them out.

    The first version kept netCDF's open (and its library lock) for the whole
    extraction, so the chunk threads waited forever on it.
    """
    import threading

    from metaextract_dask import StreamingConfig, extract_metadata
    from metaextract_dask.demo import make_nc

    path = make_nc(str(tmp_path / "a.nc"), 5)
    got = []
    t = threading.Thread(target=lambda: got.append(extract_metadata(path, StreamingConfig(strategy="windowed"))), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the extraction deadlocked"
    assert got[0]["streaming"]["shape"] == "window" and got[0]["netcdf"]["variables"]["v"]["stats"]["count"] == 6
