"""Third-party readers through the entry-point group, installed as a real (temporary) distribution.

A plugin adds a format (its signature extends detection), fills catalog
columns it declares (the catalog code names no reader), cannot silently take
a built-in's name, and a plugin that fails to import is skipped with a
warning while every other file still extracts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from metaextract_dask.demo import make_h5, make_nc

XYZ_READER = textwrap.dedent('''
    """A reader for "XYZ1" files: a 4-byte magic, then a count of records of 8 bytes."""
    import struct
    from metaextract_dask.core.model import ChunkSpec, ChunkType
    from metaextract_dask.readers.base import StreamChunkReader

    class XYZReader(StreamChunkReader):
        name = "xyz"
        formats = frozenset({"xyz"})
        signatures = (("xyz", 0, b"XYZ1", "XYZ record file"),)
        columns = (("xyz_records", "int64"), ("xyz_format_version", "string"))

        def layout(self, info, chunk_size):
            return [ChunkSpec(info.path, 0, ChunkType.HEADER, 0, min(info.size, 8), "header")]

        def summarize(self, spec, config):
            with open(spec.path, "rb") as f:
                head = f.read(8)
            return {"records": struct.unpack(">I", head[4:8])[0]}

        def merge(self, a, b):
            return a or b

        def finalize(self, state, info, config):
            return {"records": state["records"], "version": "1"}

        def catalog_row(self, record):
            return {"xyz_records": record["records"], "xyz_format_version": record["version"]}
''')

#: the same format, declared whole in its one module: names, media type, intake-esm format, how it opens as xarray
XYZ_FORMAT_MODULE = XYZ_READER.replace("class XYZReader(StreamChunkReader):\n", """class XYZReader(StreamChunkReader):
    extensions = {".xyz": "xyz"}
    media_types = {"xyz": "application/x-xyz"}
    esm_formats = {"xyz": "xyz"}

    def open_dataset(self, path, fmt, **kwargs):
        import numpy as np
        import xarray as xr

        with open(path, "rb") as f:
            data = f.read()
        n = struct.unpack(">I", data[4:8])[0]
        return xr.Dataset({"value": ("record", np.frombuffer(data[8:8 + 8 * n], dtype=">f8"))}, attrs={"source": "xyz"})

""")
assert "open_dataset" in XYZ_FORMAT_MODULE

BROKEN_READER = "raise ImportError('this plugin needs a library that is not installed')\n"

SHADOWING_READER = textwrap.dedent('''
    from metaextract_dask.readers.binary import BinaryChunkReader

    class Shadow(BinaryChunkReader):
        name = "hdf5"
        formats = frozenset({"hdf5", "netcdf4"})
''')


def make_distribution(site) -> str:
    """A distribution in ``site`` (a folder put on sys.path) with three reader entry points."""
    site.mkdir()
    (site / "xyzreader.py").write_text(XYZ_READER)
    (site / "brokenreader.py").write_text(BROKEN_READER)
    (site / "shadowreader.py").write_text(SHADOWING_READER)
    info = site / "xyzreader-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xyzreader\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [metaextract_dask.readers]
        xyz = xyzreader:XYZReader
        broken = brokenreader:Reader
        hdf5 = shadowreader:Shadow
    """))
    return str(site)


@pytest.mark.integration
def test_a_third_party_reader_fills_its_columns_and_a_broken_one_is_skipped(tmp_path):
    site = make_distribution(tmp_path / "site")
    data = tmp_path / "data"
    data.mkdir()
    for i, n in enumerate((3, 7, 11)):
        (data / f"r{i}.xyz").write_bytes(b"XYZ1" + n.to_bytes(4, "big") + bytes(8 * n))
    h5, nc = make_h5(str(data / "a.h5"), 4), make_nc(str(data / "b.nc"), 4)
    env = dict(os.environ, PYTHONPATH=site + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(["metaextract", "scan", str(data), "-o", str(tmp_path / "cat"), "--dashboard-address", "127.0.0.1:0", "-q"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "reader 'broken'" in out.stderr and "could not be loaded and is skipped" in out.stderr
    assert "reader plugin 'hdf5'" in out.stderr and "is ignored" in out.stderr
    frame = pd.read_parquet(tmp_path / "cat").set_index("path")
    assert frame["success"].all()
    xyz = frame[frame["format"] == "xyz"]
    assert sorted(xyz["xyz_records"]) == [3, 7, 11] and set(xyz["reader"]) == {"xyz"}
    assert set(xyz["xyz_format_version"]) == {"1"}
    assert frame.loc[h5, "reader"] == "hdf5" and frame.loc[h5, "n_datasets"] > 0  # the built-in kept its name
    assert frame.loc[nc, "reader"] == "netcdf" and pd.isna(frame.loc[nc, "xyz_records"])


OPEN_XYZ = """
import json, sys
import metaextract_dask as me
ds = me.open(sys.argv[1], sys.argv[2])
print(json.dumps({"values": ds["value"].values.tolist(), "attrs": ds.attrs}))
"""


@pytest.mark.integration
def test_a_format_added_in_one_module_is_detected_cataloged_exported_and_opened(tmp_path):
    """One module and its entry point, nothing else: detection, catalog columns, STAC and ESM exports and ``open`` ask the reader."""
    import json

    site = tmp_path / "site"
    site.mkdir()
    (site / "xyzformat.py").write_text(XYZ_FORMAT_MODULE)
    info = site / "xyzformat-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xyzformat\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[metaextract_dask.readers]\nxyz = xyzformat:XYZReader\n")
    data = tmp_path / "data"
    data.mkdir()
    import numpy as np

    values = (np.arange(5) * 1.5).astype(">f8")
    (data / "r.xyz").write_bytes(b"XYZ1" + (5).to_bytes(4, "big") + values.tobytes())
    (data / "fake.xyz").write_bytes(b"not an xyz file at all")
    make_nc(str(data / "b.nc"), 4)
    env = dict(os.environ, PYTHONPATH=str(site) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run(list(args), capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr[-3000:]
        return out

    cat = str(tmp_path / "cat")
    run("metaextract", "scan", str(data), "-o", cat, "-q")
    frame = pd.read_parquet(cat).set_index("path")
    real, fake = str(data / "r.xyz"), str(data / "fake.xyz")
    assert frame.loc[real, "format"] == "xyz" and frame.loc[real, "xyz_records"] == 5  # detected by its signature, its columns
    assert frame.loc[fake, "format"] == "unknown" and "named .xyz but has no xyz signature" in frame.loc[fake, "metadata"]

    run("metaextract", "export", cat, "--to", "stac", "-o", str(tmp_path / "stac"))
    items = [json.loads(p.read_text()) for p in (tmp_path / "stac").rglob("*.json") if p.name != "collection.json"]
    types = {os.path.basename(i["assets"]["data"]["href"]): i["assets"]["data"]["type"] for i in items}
    assert types["r.xyz"] == "application/x-xyz" and types["b.nc"] == "application/netcdf"

    run("metaextract", "export", cat, "--to", "esm", "-o", str(tmp_path / "esm"))
    esm = pd.read_csv(tmp_path / "esm" / "collection.csv")
    assert dict(zip(esm["path"].map(os.path.basename), esm["format"])) == {"r.xyz": "xyz", "b.nc": "netcdf"}

    opened = json.loads(run(sys.executable, "-c", OPEN_XYZ, cat, real).stdout)
    assert opened == {"values": values.tolist(), "attrs": {"source": "xyz"}}


@pytest.mark.integration
def test_a_plugin_may_replace_a_builtin_when_told(tmp_path):
    site = make_distribution(tmp_path / "site")
    h5 = make_h5(str(tmp_path / "a.h5"), 4)
    env = dict(os.environ, PYTHONPATH=site + os.pathsep + os.environ.get("PYTHONPATH", ""),
               DASK_METAEXTRACT__READERS__REPLACE='["hdf5"]')
    script = f"from metaextract_dask import extract_metadata; print(extract_metadata({h5!r})['reader'], 'entropy' in extract_metadata({h5!r})['hdf5'])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["hdf5", "True"]  # the shadowing binary reader, under the hdf5 name


@pytest.mark.integration
def test_a_plugin_under_the_hdf5_name_does_not_escape_the_guard(tmp_path):
    """A replaced "hdf5" reader is a third party's: a file pointing outside itself still goes to this project's own."""
    import h5py

    site = make_distribution(tmp_path / "site")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOPSECRET" * 4)
    path = str(tmp_path / "x.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("b", shape=(4,), dtype="u1", external=[(str(secret), 0, 4)])
    env = dict(os.environ, PYTHONPATH=site + os.pathsep + os.environ.get("PYTHONPATH", ""),
               DASK_METAEXTRACT__READERS__REPLACE='["hdf5"]')
    script = f"from metaextract_dask import extract_metadata; r = extract_metadata({path!r}); print(r['reader'], 'datasets' in r['hdf5'])"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["hdf5", "True"]  # the project's HDF5 reader (it lists datasets), not the plugin


@pytest.mark.unit
def test_a_reader_cannot_overwrite_the_files_own_keys(tmp_path):
    """A reader's output sits under its own name: a container's ``size`` or a forged ``path`` cannot replace the file's."""
    from metaextract_dask import StreamingConfig, probe
    from metaextract_dask.planning.plan import plan_file
    from metaextract_dask.planning.tasks import run_single
    from metaextract_dask.readers.binary import BinaryChunkReader

    class Liar(BinaryChunkReader):
        name = "liar"

        def finalize(self, state, info, config):
            return {"size": 1, "path": "/elsewhere", "format": "hdf5", "reader": "hdf5", "streaming": None, "mine": True}

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 5000)
    config = StreamingConfig()
    info = probe(path)
    plan = plan_file(info, Liar(), config)
    record = run_single(Liar(), info, config, plan.describe(), plan.specs, None)
    assert (record["path"], record["size"], record["format"], record["reader"]) == (str(path), 5000, "unknown", "liar")
    assert record["streaming"]["shape"] == "single"
    assert record["liar"] == {"size": 1, "path": "/elsewhere", "format": "hdf5", "reader": "hdf5", "streaming": None, "mine": True}
