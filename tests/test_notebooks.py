"""The notebooks run top to bottom, and the repository keeps them without outputs."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.system

NOTEBOOKS = os.path.join(os.path.dirname(__file__), "..", "notebooks")


def execute(name: str, cwd) -> nbformat.NotebookNode:
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text_of(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


@pytest.mark.parametrize("name", ["quickstart.ipynb", "hpc.ipynb"])
def test_stored_without_outputs(name):
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_quickstart_builds_the_catalog(tmp_path):
    nb = execute("quickstart.ipynb", tmp_path)
    text = text_of(nb)
    assert "CATALOG_ROWS 28 SUCCEEDED 26 FAILED 2" in text
    assert "chain" in text and "window" in text and "star" in text  # the four shapes table
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images  # the plot of sizes and durations by type
    assert "28 28" in text  # pandas and dask.dataframe read the same catalog
    # the scan's progress widget (tqdm.auto) drew and ended full, and the dashboard link is a link
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel"]
    assert bars and bars[-1]["value"] == bars[-1]["max"] == 28
    html = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any('<a href="http://127.0.0.1:' in h and "Dask dashboard" in h for h in html)


def test_hpc_notebook_explains_itself_without_a_batch_system(tmp_path, monkeypatch):
    """Where no SLURM answers (sbatch may be installed), the notebook says so and skips its cluster cells.

    tests/test_hpc.py runs the same notebook on a real (private) SLURM.
    """
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))  # this machine's SLURM, if any, is not asked
    text = text_of(execute("hpc.ipynb", tmp_path))
    assert "No SLURM on this machine" in text and "Skipped: no batch system here" in text
