"""Each benchmark runs once at a tiny size, so it keeps working (no timing asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.system

BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks")


@pytest.mark.parametrize("script", ["bench_stream.py", "bench_many_files.py", "run_all.py", "bench_costs.py"])
def test_benchmark_runs_quick(tmp_path, script):
    out = tmp_path / "results.md"
    run = subprocess.run([sys.executable, os.path.join(BENCH, script), "--quick", "--results", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text()
    assert "Command: `python" in text and "| " in text


def test_profile_scan_runs(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(BENCH, "profile_scan.py"), "--repeat", "2", "--size", str(16 << 20)],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, BENCH_DIR=str(tmp_path)))
    assert run.returncode == 0, run.stderr[-3000:]


def test_references_benchmark_runs_small_and_finds_identical_references(tmp_path):
    """bench_references.py at 3 files of 300 chunks: it exits non-zero when any reference set differs from kerchunk's."""
    out = tmp_path / "results.md"
    run = subprocess.run([sys.executable, os.path.join(BENCH, "bench_references.py"), "--files", "3", "--chunks", "300",
                          "--rounds", "1", "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "References identical for 3 of 3 files" in out.read_text()


def test_statistics_benchmark_runs_on_a_few_real_files(tmp_path):
    """bench_stats.py on the first real files of the corpus: a table row per file with both timings and the ratio."""
    out = tmp_path / "results.md"
    run = subprocess.run([sys.executable, os.path.join(BENCH, "bench_stats.py"), "--limit", "3", "--repeat", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and not line.startswith("| file")]
    assert len(rows) == 3 and all(line.count("|") == 8 for line in rows)
