"""The scheduler plugin's state is bounded and survives a restart without counters going down (no cluster needed)."""

from __future__ import annotations

import pytest

from metaextract_dask.diagnostics.plugin import EVENT_TOPIC, MAX_RUNS, MetricsPlugin

pytestmark = pytest.mark.unit


def _run(plugin: MetricsPlugin, name: str, n_files: int, failed: int = 0) -> None:
    files = [{"path": f"/{name}/{i}.h5", "type": "hdf5", "success": i >= failed, "bytes": 100, "chunks": 1, "duration": 0.02,
              "error_type": None if i >= failed else "CorruptFileError"} for i in range(n_files)]
    plugin.log_event(EVENT_TOPIC, {"kind": "run-start", "run": name, "files": n_files})
    plugin.log_event(EVENT_TOPIC, {"kind": "files", "run": name, "batch": f"b-{name}", "files": files})
    plugin.log_event(EVENT_TOPIC, {"kind": "run-end", "run": name})


def test_old_finished_runs_are_folded_into_totals():
    plugin = MetricsPlugin()
    for i in range(3 * MAX_RUNS):
        _run(plugin, f"run{i}", 10, failed=1)
    assert len(plugin.runs) <= MAX_RUNS and plugin.order[-1] == f"run{3 * MAX_RUNS - 1}"
    totals = plugin.totals()
    assert totals.files[("hdf5", "success")] == 3 * MAX_RUNS * 9 and totals.files[("hdf5", "failed")] == 3 * MAX_RUNS
    assert totals.bytes["hdf5"] == 3 * MAX_RUNS * 1000 and totals.errors["CorruptFileError"] == 3 * MAX_RUNS
    assert sum(totals.buckets) == 3 * MAX_RUNS * 10
    assert plugin.snapshot()["files"] == 10  # the latest run keeps its details


def test_a_running_run_is_never_pruned():
    plugin = MetricsPlugin()
    plugin.log_event(EVENT_TOPIC, {"kind": "run-start", "run": "long", "files": 5})
    for i in range(2 * MAX_RUNS):
        _run(plugin, f"short{i}", 1)
    assert "long" in plugin.runs


def test_restart_clears_runs_and_keeps_counters():
    plugin = MetricsPlugin()
    _run(plugin, "a", 7)
    before = plugin.totals().files[("hdf5", "success")]
    plugin.restart(None)
    assert plugin.runs == {} and plugin.snapshot() is None
    assert plugin.totals().files[("hdf5", "success")] == before == 7
    _run(plugin, "b", 3)
    assert plugin.totals().files[("hdf5", "success")] == 10
