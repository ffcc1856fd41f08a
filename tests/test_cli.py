"""The ``metaextract`` command in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import subprocess

from conftest import MiB

from metaextract_dask import reference_checksum


def run(*args, **kw):
    return subprocess.run(["metaextract", *args], capture_output=True, text=True, timeout=120, **kw)


def test_info_json_and_human(random_file):
    path = random_file(3 * MiB)
    out = run("info", "--json", "--strategy", "windowed", path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["checksum"]["value"] == reference_checksum(path)
    human = run("info", path)
    assert human.returncode == 0 and f"path: {path}" in human.stdout and "checksum:" in human.stdout


def test_exit_codes(tmp_path):
    missing = run("info", str(tmp_path / "gone.bin"))
    assert missing.returncode == 1 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    bad = run("info", "--strategy", "fastest", str(tmp_path))
    assert bad.returncode == 2
    bad_checksum = run("info", "--checksum", "md4", str(tmp_path))
    assert bad_checksum.returncode == 2 and "unknown checksum" in bad_checksum.stderr
