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
# unit: plain data and rules (plans, graph shapes, detection, errors, readers on files in this
#       process; a peer tool such as ffprobe may run): no cluster; `pytest -m unit` runs in well
#       under a minute.
# integration: a real LocalCluster, the parser sandbox, the CLI as a process.
# system: SLURM, a browser, notebooks, whole-scan kills and attacks run as another user.

SYSTEM_MODULES = {"test_hpc", "test_dashboard", "test_notebooks", "test_attacks", "test_benchmarks_run"}
#: a test that uses one of these (fixture or name in its source) needs more than this process
INTEGRATION_FIXTURES = {"process_client", "thread_client", "slurm"}
INTEGRATION_WORDS = ("subprocess", "Sandbox", "LocalCluster", "ClientScope", "ParallelExtractor", "scan(", "extract_parallel",
                     "run_seed_example", "metaextract", "sandbox", "Isolation()", "public_corpus.build", "pty.fork")


def _helpers_source(module, body: str) -> str:
    """The source of this module's own functions that ``body`` calls (a ``run(...)`` helper that starts a process)."""
    import inspect

    out = []
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("test_") and f"{name}(" in body:
            try:
                out.append(inspect.getsource(obj))
            except (OSError, TypeError):
                pass
    return "\n".join(out)


def _layer(item) -> str:
    import inspect

    module = item.module.__name__.rsplit(".", 1)[-1]
    if module in SYSTEM_MODULES:
        return "system"
    if INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "integration"
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError):
        return "integration"
    body = source.split(":", 1)[1] if ":" in source else source  # the words inside the test, not its name
    body += _helpers_source(item.module, body)
    uses = [w for w in INTEGRATION_WORDS if w in body.replace("metaextract_dask", "")]
    for name in getattr(item, "fixturenames", ()):  # module fixtures that build on the integration layer
        fixture = item.module.__dict__.get(name)
        try:
            text = inspect.getsource(fixture) if fixture is not None else ""
        except (OSError, TypeError):
            text = ""
        text += _helpers_source(item.module, text)
        uses += [w for w in INTEGRATION_WORDS if w in text.replace("metaextract_dask", "")]
    return "integration" if uses else "unit"


def pytest_configure(config):
    for layer, text in (("unit", "no cluster, no subprocess: plans, shapes, detection, readers in this process"),
                        ("integration", "a real LocalCluster, the sandbox or the CLI as a process"),
                        ("system", "SLURM, a browser, notebooks, attacks as another user, whole-scan kills")):
        config.addinivalue_line("markers", f"{layer}: {text}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(getattr(pytest.mark, _layer(item)))


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
