"""The notebooks run top to bottom, and the repository keeps them without outputs."""

from __future__ import annotations

import ast
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


def test_quickstart_builds_the_catalog(tmp_path, monkeypatch):
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # the kernel's temporary folder: the notebook must leave nothing there
    nb = execute("quickstart.ipynb", tmp_path)
    text = text_of(nb)
    assert "CATALOG_ROWS 29 SUCCEEDED 27 FAILED 2" in text
    # the strategies' table: SEQUENTIAL, WINDOWED and SAMPLE_BASED make three different graphs (tasks, tasks in a row, bytes),
    # and ADAPTIVE picks each of single, window and star by size (before: 6 reads, 7 tasks, 48 MiB for every strategy)
    graphs = ast.literal_eval(next(line for line in text.splitlines() if line.startswith("GRAPHS ")).split(" ", 1)[1])
    assert [g[0] for g in graphs] == ["sequential", "windowed", "sample_based", "windowed", "sequential", "sample_based"]
    assert len({tuple(g[1:]) for g in graphs[:3]}) == 3, graphs  # tasks, tasks in a row, MiB read: three different graphs
    assert graphs[0][1] == graphs[1][1] and graphs[0][2] > 2 * graphs[1][2] and graphs[2][3] < graphs[0][3], graphs
    assert graphs[3] == graphs[1] and graphs[4][1] == 1 and graphs[5][1:] == graphs[2][1:]  # ADAPTIVE's three picks by size
    assert "corr..." not in text and "the HDF5 library cannot open it: Unable to synchronously open file" in text  # whole errors
    assert "OPENED {'time': 48, 'lat': 6, 'lon': 8} from 4 files" in text
    assert os.listdir(temp) == [], os.listdir(temp)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images  # the plot of sizes and durations by type
    assert "29 29" in text  # pandas and dask.dataframe read the same catalog
    # the scan's progress widget (tqdm.auto) drew and ended full, and the dashboard link is a link
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "FloatProgressModel"]
    assert bars and bars[-1]["value"] == bars[-1]["max"] == 29
    html = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any('<a href="http://127.0.0.1:' in h and "Dask dashboard" in h for h in html)


def test_hpc_notebook_explains_itself_without_a_batch_system(tmp_path, monkeypatch):
    """Where no SLURM answers (sbatch may be installed), the notebook says so and skips its cluster cells.

    tests/test_hpc.py runs the same notebook on a real (private) SLURM.
    """
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))  # this machine's SLURM, if any, is not asked
    text = text_of(execute("hpc.ipynb", tmp_path))
    assert "No SLURM on this machine" in text and "Skipped: no batch system here" in text
