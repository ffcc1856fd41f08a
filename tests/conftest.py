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


# --- test layers -------------------------------------------------------------------------------
#
# Each test says its layer with a marker (a module's ``pytestmark``, or a decorator where a module mixes
# layers); a test with none, or with two, is a collection error.
# unit: plain data and rules (plans, graph shapes, detection, errors, readers on files in this
#       process; a peer tool such as ffprobe may run): no cluster; `pytest -m unit` runs in well
#       under a minute.
# integration: a real LocalCluster, the parser sandbox, the CLI as a process.
# system: SLURM, a browser, notebooks, whole-scan kills and attacks run as another user.

LAYERS = {"unit": "no cluster, no subprocess: plans, shapes, detection, readers in this process",
          "integration": "a real LocalCluster, the sandbox or the CLI as a process",
          "system": "SLURM, a browser, notebooks, attacks as another user, whole-scan kills"}


def pytest_configure(config):
    for layer, text in LAYERS.items():
        config.addinivalue_line("markers", f"{layer}: {text}")


def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        layers = sorted({m.name for m in item.iter_markers() if m.name in LAYERS})
        if len(layers) != 1:
            wrong.append(f"{item.nodeid}: {', '.join(layers) or 'no layer marker'}")
    if wrong:
        pytest.exit("each test needs exactly one layer marker (unit, integration or system):\n" + "\n".join(wrong), returncode=4)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_cluster(request, monkeypatch):
    """A unit test that starts a cluster is misfiled: it fails, saying so."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*_a, **_k):
        raise AssertionError(f"{request.node.nodeid} is in the unit layer but started a LocalCluster")

    import distributed

    monkeypatch.setattr(distributed.LocalCluster, "__init__", refuse)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without running native library destructors once pytest has reported.

    netCDF4's bundled libhdf5 and h5py's libhdf5 both live in this process
    (tests/test_references.py compares kerchunk, xarray and h5py reads):
    their teardown at interpreter exit segfaulted after every test had
    passed and been reported (exit 139). The exit status is pytest's own.
    """
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(getattr(config, "_me_exitstatus", 0)))


def pytest_sessionfinish(session, exitstatus):
    session.config._me_exitstatus = int(exitstatus)
