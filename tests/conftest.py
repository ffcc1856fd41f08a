"""Shared fixtures: real files on disk and real distributed clusters."""

from __future__ import annotations

import os

import pytest

GiB = 1024**3
MiB = 1024**2


def write_random(path, size: int, seed: int = 0) -> str:
    """A file of ``size`` pseudo-random bytes (reproducible)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            left -= n
    return os.fspath(path)


def write_sparse(path, size: int) -> str:
    """A sparse file: ``size`` bytes that cost no disk and read as zeros."""
    with open(path, "wb") as f:
        f.truncate(size)
    return os.fspath(path)


@pytest.fixture
def random_file(tmp_path):
    return lambda size, name="data.bin", seed=0: write_random(tmp_path / name, size, seed)


@pytest.fixture
def sparse_file(tmp_path):
    return lambda size, name="sparse.bin": write_sparse(tmp_path / name, size)


@pytest.fixture(scope="session")
def process_client():
    """A real LocalCluster with two worker processes on 127.0.0.1."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        with Client(cluster, set_as_default=False) as client:
            yield client


@pytest.fixture(scope="session")
def thread_client():
    """A real LocalCluster with one worker of four threads, in this process."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=4, processes=False, protocol="tcp://", host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        with Client(cluster, set_as_default=False) as client:
            yield client


#: lines the reliability tests add; printed at the end of the run
RELIABILITY_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter):
    if RELIABILITY_SUMMARY:
        terminalreporter.section("reliability: hostile files and faults")
        for line in RELIABILITY_SUMMARY:
            terminalreporter.write_line(line)
