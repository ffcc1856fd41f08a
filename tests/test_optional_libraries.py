"""Without h5py, netCDF4 or ffmpeg-python the package imports, and says which extra to install."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.integration

# Makes the named libraries impossible to import, as on a machine without them.
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('h5py', 'netCDF4', 'ffmpeg'):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Block())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split('.')[0] in ('h5py', 'netCDF4', 'ffmpeg') else _find(name, *a)
"""


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_package_imports_and_falls_back(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(10)
    result = run(
        "import json, sys, metaextract_dask\n"
        "from metaextract_dask import UnsupportedFormatError, StreamingExtractor\n"
        # in this process: the blocker holds here only (a machine without h5py lacks it in the sandbox child too)
        "r = StreamingExtractor(isolate=False).extract(sys.argv[1])[0]\n"
        "try:\n"
        "    StreamingExtractor(reader='hdf5', isolate=False).extract(sys.argv[1]); forced = None\n"
        "except UnsupportedFormatError as exc:\n"
        "    forced = str(exc)\n"
        "print(json.dumps({'reader': r['reader'], 'note': r['streaming']['note'], 'forced': forced,\n"
        "                  'loaded': [m for m in ('h5py', 'netCDF4', 'ffmpeg') if m in sys.modules]}))",
        str(path),
    )
    assert result["loaded"] == []
    assert result["reader"] == "binary"
    assert "pip install 'metaextract_dask[hdf5]'" in result["note"]
    assert "pip install 'metaextract_dask[hdf5]'" in result["forced"] and str(path) in result["forced"]
