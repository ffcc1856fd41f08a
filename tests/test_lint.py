"""The code passes ruff and mypy with the project's configuration (pyproject.toml), as CI checks on every submission."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_ruff_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "metaextract_dask", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def test_mypy_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


#: the layers whose types are strict: plain data, planning and the catalog (what crosses processes and what users read)
STRICT = ["metaextract_dask/core", "metaextract_dask/planning", "metaextract_dask/catalog"]


def test_mypy_strict_finds_nothing_in_core_planning_and_catalog():
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", *STRICT], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]
