"""The ``metaextract`` command in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from conftest import MiB

from metaextract_dask import reference_checksum

pytestmark = pytest.mark.integration


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


def test_info_human_shows_dates_empty_sections_and_what_the_statistics_read(tmp_path):
    """Before: mtime as a Unix float, an empty 'compression:' line, 'cells_read: 1 / cells_total: 1' for 365 values."""
    import netCDF4
    import numpy as np

    path = str(tmp_path / "year.nc")
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", 365)
        ds.createVariable("t", "f8", ("time",))[:] = np.arange(365.0)
    human = run("info", path)
    assert human.returncode == 0, human.stderr
    assert re.search(r"^mtime: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(", human.stdout, re.M)
    assert re.search(r"^\s+compression: none$", human.stdout, re.M) and not re.search(r":\n\s*\n", human.stdout)
    assert "storage chunks read: 1 of 1 (a contiguous array is one)" in human.stdout and "cells_total" not in human.stdout


def test_exit_codes(tmp_path):
    missing = run("info", str(tmp_path / "gone.bin"))
    assert missing.returncode == 1 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    bad = run("info", "--strategy", "fastest", str(tmp_path))
    assert bad.returncode == 2
    bad_checksum = run("info", "--checksum", "md4", str(tmp_path))
    assert bad_checksum.returncode == 2 and "unknown checksum" in bad_checksum.stderr


def test_info_takes_several_files_and_reports_failures_as_objects(tmp_path, random_file):
    from metaextract_dask.demo import make_h5

    good, h5 = random_file(MiB), make_h5(str(tmp_path / "a.h5"), 3)
    corrupt = tmp_path / "bad.h5"
    corrupt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)
    out = run("info", "--json", good, str(corrupt), h5)
    assert out.returncode == 1  # one failed
    records = json.loads(out.stdout)
    assert [r["path"] for r in records] == [good, str(corrupt), h5]
    assert records[0]["checksum"]["value"] == reference_checksum(good) and records[2]["reader"] == "hdf5"
    assert records[1]["error_type"] == "CorruptFileError" and str(corrupt) in records[1]["error"]
    human = run("info", good, h5)
    assert human.returncode == 0 and f"path: {good}" in human.stdout and f"path: {h5}" in human.stdout


def test_version():
    from metaextract_dask import __version__

    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"metaextract {__version__}"


def test_progress_lines_in_a_log_at_the_interval(tmp_path):
    """Output to a file (a batch job's log): one plain status line every interval, and a last one at the end."""
    import os

    from metaextract_dask.demo import make_bin, make_h5

    data = tmp_path / "data"
    data.mkdir()
    for i in range(30):
        make_bin(data / f"f{i}.bin", 2000 + i, i)
    make_h5(str(data / "g.h5"), 3)
    log = tmp_path / "scan.log"
    env = dict(os.environ, DASK_METAEXTRACT__PROGRESS__INTERVAL="0.01")
    with open(log, "w") as out:
        done = subprocess.run(["metaextract", "scan", str(data), "-o", str(tmp_path / "cat"), "-j", "1", "--dashboard-address", "127.0.0.1:0"],
                              stdout=out, stderr=subprocess.STDOUT, timeout=300, env=env)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    lines = [line for line in text.splitlines() if line.startswith("metaextract: ") and " files, " in line]
    assert len(lines) >= 2, text[-2000:]  # more than the closing one: lines came while it ran
    assert lines[-1].startswith("metaextract: 31/31 files, ") and "files/s" in lines[-1] and "0 errors" in lines[-1] and "ETA 0:00" in lines[-1]
    assert "\r" not in text and "\x1b[" not in text  # no bar drawing in a log


def _in_a_terminal(command: list[str], cwd, env: dict[str, str] | None = None) -> tuple[str, int]:
    """What ``command`` draws on a real pseudo-terminal (120 x 30), and its exit status."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, close_fds=True, env=env)
    os.close(slave)
    out = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not data:
                break
            out += data
        elif proc.poll() is not None:
            break
    os.close(master)
    return out.decode("utf-8", "replace"), proc.wait(timeout=60)


def test_a_scan_in_a_terminal_says_what_it_does_first_and_never_promises_too_long(tmp_path):
    """On a real terminal: the first thing drawn names the phase (walking), before the bar; the dashboard's lines,
    when printed, stand above the bar, not inside it; and no ETA the bar shows is above 10x the scan's own
    duration (the first files pay for the start: an ETA from them once said 56 minutes for a 23-second scan)."""
    import re

    data = tmp_path / "data"
    for d in range(160):
        (data / f"d{d:03d}").mkdir(parents=True)
        for i in range(250):
            (data / f"d{d:03d}" / f"f{i:03d}.bin").write_bytes(os.urandom(256))
    # the dashboard's cluster asked for (40,000 tiny files alone are a 4-second scan that starts none, over about
    # when an ETA is first drawn, 3 s in): its start is what the first files pay for
    env = dict(os.environ, DASK_METAEXTRACT__CLUSTER__DASHBOARD_MIN_SECONDS="0")
    text, status = _in_a_terminal(["metaextract", "scan", str(data), "-o", str(tmp_path / "cat")], tmp_path, env)
    assert status == 0, text[-2000:]
    first = text.lstrip("\r").split("\r")[0]
    assert first.startswith("metaextract: walking "), text[:300]
    assert text.index("walking") < text.index("files [")
    for line in ("Dask dashboard:", "follow it from another terminal:"):
        if line in text:  # printed on a line of its own, the bar drawn again under it
            assert re.search(r"[\r\n]" + re.escape(line), text), text[:2000]
    took = float(re.search(r"extracted \(0 failed\) in ([\d.]+) s", text).group(1))
    etas = [sum(int(x) * 60 ** i for i, x in enumerate(reversed(eta.split(":")))) for eta in re.findall(r"<(\d+:\d\d(?::\d\d)?)", text)]
    assert etas, "no ETA was ever shown: the check above would say nothing"
    assert max(etas) <= 10 * max(took, 1.0), (max(etas), took)
