"""One settings tree: a value set in dask's config reaches scan(), the CLI and ParallelExtractor alike.

The first build's scan() and CLI hard-coded a 300 s timeout while
StreamingConfig read dask's config: with the timeout set to 60 s there,
StreamingConfig said 60 and a scan used 300.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

h5py = pytest.importorskip("h5py")

SETTINGS = {"DASK_METAEXTRACT__STREAMING__TIMEOUT": "1", "DASK_METAEXTRACT__STREAMING__CHUNK_SIZE": "2 MiB",
            "DASK_METAEXTRACT__STREAMING__CHECKSUM": "sha256"}


@pytest.fixture
def files(tmp_path):
    """A file that takes seconds to extract (20,000 groups), and a quick one."""
    data = tmp_path / "data"
    data.mkdir()
    slow = str(data / "slow.h5")
    with h5py.File(slow, "w") as f:
        for i in range(20_000):
            f.create_group(f"g{i:05d}").attrs["i"] = i
    quick = str(data / "quick.bin")
    with open(quick, "wb") as f:
        f.write(os.urandom(5 * 2**20))
    return str(data), slow, quick


SCRIPT = textwrap.dedent("""
    import json, sys
    from metaextract_dask import ParallelExtractionConfig, ParallelExtractor, StreamingConfig, scan
    data, slow, quick = sys.argv[1:4]
    c = StreamingConfig()
    print("CONFIG", json.dumps([c.timeout, c.chunk_size, c.checksum, ParallelExtractionConfig().timeout_per_file]))
    frame = scan(data, workers=1, dashboard_address="127.0.0.1:0", progress=False).set_index("path")
    print("SCAN", json.dumps([frame.loc[slow, "error_type"], json.loads(frame.loc[quick, "metadata"])["checksum"]["algorithm"]]))
    results, _ = ParallelExtractor(ParallelExtractionConfig(max_workers=1, dashboard_address="127.0.0.1:0")).extract([slow, quick])
    by = {r.file_path: r for r in results}
    print("PARALLEL", json.dumps([by[slow].error_type, by[quick].metadata["checksum"]["algorithm"]]))
""")


def test_dask_config_reaches_scan_the_cli_and_parallel_extractor(files, tmp_path):
    data, slow, quick = files
    env = dict(os.environ, **SETTINGS)
    out = subprocess.run([sys.executable, "-c", SCRIPT, data, slow, quick], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines() if " " in line}
    assert lines["CONFIG"] == [1.0, 2 * 2**20, "sha256", 1.0]
    assert lines["SCAN"] == ["ExtractionTimeout", "sha256"]
    assert lines["PARALLEL"] == ["ExtractionTimeout", "sha256"]
    cli = subprocess.run(["metaextract", "scan", data, "-o", str(tmp_path / "cat"), "-j", "1", "--dashboard-address", "127.0.0.1:0", "-q"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert cli.returncode == 1, cli.stderr[-2000:]  # the slow file timed out
    frame = pd.read_parquet(tmp_path / "cat").set_index("path")
    assert frame.loc[slow, "error_type"] == "ExtractionTimeout"
    # the configured 1 s, not the 300 s default: the parser was killed within at most 1 s, or a later step found the time spent
    error = frame.loc[slow, "error"]
    assert re.search(r"within (0\.\d+|1) s|took longer than its timeout", error), error
    assert frame.loc[slow, "duration"] < 30
    assert json.loads(frame.loc[quick, "metadata"])["checksum"]["algorithm"] == "sha256"
    # the option still wins over the config
    again = subprocess.run(["metaextract", "scan", data, "-o", str(tmp_path / "cat2"), "-j", "1", "--dashboard-address", "127.0.0.1:0",
                            "-q", "--timeout", "120"], capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0, again.stdout + again.stderr[-2000:]
