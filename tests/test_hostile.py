"""Hostile files and faults: nothing crashes, nothing hangs, nothing is lost, nothing escapes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import conftest
import pandas as pd
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metaextract_dask import MetaExtractError, extract_metadata
from metaextract_dask.core.text import safe_text
from metaextract_dask.demo import make_bin, make_h5, make_nc, make_video

pytestmark = pytest.mark.integration

REGRESSIONS = os.path.join(os.path.dirname(__file__), "fuzz_regressions")
MKV_SEED_FRAMES = 0
DROP_ROOT_POWERS = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def hostile_corpus(folder: str) -> tuple[dict[str, list[str]], list[str]]:
    """{kind: paths that must fail with a clear record}, plus valid controls."""
    os.makedirs(folder)
    seed_dir = folder + "_seeds"
    os.makedirs(seed_dir)
    seeds = {
        "h5": make_h5(os.path.join(seed_dir, "seed.h5"), 40),
        "nc": make_nc(os.path.join(seed_dir, "seed3.nc"), 40),
        "nc4": make_nc(os.path.join(seed_dir, "seed4.nc"), 41),
        "mp4": make_video(os.path.join(seed_dir, "seed.mp4"), 1.0),  # ffmpeg's default: the moov index at the end
        "mkv": make_video(os.path.join(seed_dir, "seed.mkv"), 1.0),
    }
    global MKV_SEED_FRAMES
    packets = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v", "-show_entries",
                              "stream=nb_read_packets", "-of", "csv=p=0", seeds["mkv"]], capture_output=True, text=True, check=True)
    MKV_SEED_FRAMES = int(packets.stdout.strip())
    kinds: dict[str, list[str]] = {k: [] for k in ("truncated", "zero-byte", "random behind magic", "mutated header",
                                                   "enormous declarations", "special files", "links", "unreadable")}
    out = lambda name: os.path.join(folder, name)  # noqa: E731
    for ext, src in seeds.items():
        data = open(src, "rb").read()
        for frac in (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98):
            cut = max(1, int(len(data) * frac))
            open(out(f"trunc{int(frac * 100):02d}.{ext}"), "wb").write(data[:cut])
            kinds["truncated"].append(out(f"trunc{int(frac * 100):02d}.{ext}"))
        open(out(f"empty.{ext}"), "wb").close()
        kinds["zero-byte"].append(out(f"empty.{ext}"))
        open(out(f"magic_then_noise.{ext}"), "wb").write(data[:8] + os.urandom(len(data)))
        kinds["random behind magic"].append(out(f"magic_then_noise.{ext}"))
        mutated = bytearray(data)
        for i in range(4, min(64, len(mutated)), 3):
            mutated[i] ^= 0xA5
        open(out(f"mutated.{ext}"), "wb").write(bytes(mutated))
        kinds["mutated header"].append(out(f"mutated.{ext}"))
    # NetCDF headers declaring a 4 GB name and a dimension far beyond the file
    open(out("name4gb.nc"), "wb").write(b"CDF\x01" + struct.pack(">IIII", 0, 0x0A, 1, 0xFFFFFFF0) + b"abcd" * 4)
    shutil.copy(os.path.join(REGRESSIONS, "netcdf-huge-dimension-beyond-eof.nc"), out("hugedim.nc"))
    kinds["enormous declarations"] += [out("name4gb.nc"), out("hugedim.nc")]
    os.mkfifo(out("fifo.h5"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(out("socket.nc"))
    os.mknod(out("device.mp4"), 0o600 | 0o020000, os.makedev(1, 3))  # a character device (like /dev/null)
    kinds["special files"] += [out("fifo.h5"), out("socket.nc"), out("device.mp4")]
    os.symlink(out("gone.h5"), out("dangling.h5"))
    os.symlink(out("loop_b.nc"), out("loop_a.nc"))
    os.symlink(out("loop_a.nc"), out("loop_b.nc"))
    kinds["links"] += [out("dangling.h5"), out("loop_a.nc"), out("loop_b.nc")]
    shutil.copy(seeds["h5"], out("secret.h5"))
    os.chmod(out("secret.h5"), 0)
    kinds["unreadable"].append(out("secret.h5"))
    controls = [shutil.copy(seeds["nc4"], out("valid.nc")), shutil.copy(seeds["mp4"], out("valid.mp4"))]
    os.makedirs(out("looks_like.h5"))  # a directory named like a data file: walked, not read
    controls.append(make_bin(out("looks_like.h5/inside.bin"), 500, 3))
    weird = os.path.join(os.fsencode(folder), b"caf\xe9_latin1_name.h5")  # not UTF-8
    shutil.copy(seeds["h5"], weird)
    controls.append(os.fsdecode(weird))
    return kinds, controls


def test_hostile_corpus_scan_records_every_file_once(tmp_path):
    folder = str(tmp_path / "hostile")
    kinds, controls = hostile_corpus(folder)
    growing = os.path.join(folder, "growing.bin")
    make_bin(growing, 30 << 20, 1)  # above the streaming threshold: its own chunk graph, while it grows
    stop = threading.Event()

    def keep_growing():
        while not stop.is_set():
            with open(growing, "ab") as f:
                f.write(b"x" * 4096)
            time.sleep(0.005)

    out = str(tmp_path / "catalog")
    cmd = [*DROP_ROOT_POWERS, "metaextract", "scan", folder, "-o", out, "-j", "2", "--timeout", "20", "-q",
           "--dashboard-address", "127.0.0.1:0", "--strategy", "windowed"]
    grower = threading.Thread(target=keep_growing)
    grower.start()
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, peak_total, peak_single = psutil.Process(proc.pid), 0, 0
    while proc.poll() is None:
        try:
            rss = [p.memory_info().rss for p in [root, *root.children(recursive=True)]]
            peak_total, peak_single = max(peak_total, sum(rss)), max(peak_single, max(rss))
        except psutil.Error:
            pass
        time.sleep(0.05)
        assert time.time() - start < 600, "the scan hung"
    stop.set()
    grower.join()
    stdout, stderr = proc.communicate()
    assert proc.returncode == 1, stderr[-2000:]  # some files failed, the scan did not

    frame = pd.read_parquet(out)
    expected = {safe_text(p) for v in kinds.values() for p in v} | {safe_text(p) for p in controls} | {growing}
    assert frame["path"].is_unique and set(frame["path"]) == expected  # one record per file, none lost
    rows = frame.set_index("path")
    for path in controls:
        assert rows.loc[safe_text(path), "success"], rows.loc[safe_text(path), "error"]
    summary, crashes, hangs, truncated_but_readable = [], 0, 0, 0
    for kind, paths in kinds.items():
        failed = 0
        for path in paths:
            row = rows.loc[safe_text(path)]
            if kind == "mutated header" and row["success"]:
                continue  # a flipped byte may land where the format does not look
            if kind == "truncated" and row["success"] and path.endswith(".mkv"):
                # Matroska is streamable: a cut file still plays. If the cut cost frames the record must
                # say it looks truncated; if it cost none (only the index at the end), it is right as it is
                record = json.loads(row["metadata"])["video"]
                frames = sum(v["frames"] for v in record["frame_counts"].values())
                assert frames == MKV_SEED_FRAMES or "may be truncated" in " ".join(record["warnings"]), path
                truncated_but_readable += 1
                continue
            assert not row["success"], f"{kind}: {path} was accepted"
            assert row["error"].startswith(safe_text(path)) and f"[{row['error_type']}]" in row["error"]
            crashes += row["error_type"] == "ParserCrashError"
            hangs += row["error_type"] == "ExtractionTimeout"
            failed += 1
        summary.append(f"{kind:24s} tried {len(paths):3d}  error records {failed:3d}"
                       + (f"  still readable (streamable MKV, warned when frames were lost) {truncated_but_readable}" if kind == "truncated" else ""))
    grow_row = rows.loc[growing]
    assert grow_row["success"] or grow_row["error_type"] == "FileChangedError"
    assert rows.loc[safe_text(os.path.join(folder, "secret.h5")), "error"].endswith("permission denied (the file is not readable by this user) [FileAccessError]")
    assert "FIFO" in rows.loc[os.path.join(folder, "fifo.h5"), "error"]
    assert "symbolic link loop" in rows.loc[os.path.join(folder, "loop_a.nc"), "error"]
    assert peak_single < 1.5 * 2**30  # a header declaring 4 GB allocated nothing like it
    assert hangs == 0
    conftest.RELIABILITY_SUMMARY.extend([
        *summary,
        f"{'valid controls':24s} tried {len(controls):3d}  succeeded {len(controls):3d}; growing file: "
        f"{'read' if grow_row['success'] else 'FileChangedError'}",
        f"parser crashes contained {crashes}, scan crashes 0, hangs 0, lost records 0, duplicated records 0; "
        f"peak memory {peak_total / 2**20:.0f} MiB (process tree), {peak_single / 2**20:.0f} MiB (largest process)",
    ])


def test_external_targets_are_listed_and_never_opened(tmp_path):
    import h5py
    import numpy as np

    make_h5(tmp_path / "link_target.h5", 3)
    (tmp_path / "raw_storage.bin").write_bytes(np.arange(100, dtype="f8").tobytes())
    make_h5(tmp_path / "vds_source.h5", 3)
    main = tmp_path / "main.h5"
    with h5py.File(main, "w") as f:
        f["ext"] = h5py.ExternalLink("link_target.h5", "/data")
        f.create_dataset("raw", shape=(100,), dtype="f8", external=[("raw_storage.bin", 0, 800)])
        layout = h5py.VirtualLayout(shape=(31,), dtype="f8")
        layout[:] = h5py.VirtualSource("vds_source.h5", "data", shape=(31,))
        f.create_virtual_dataset("virtual", layout)
        f["inside"] = np.arange(10.0)
    log = tmp_path / "strace.log"
    code = f"from metaextract_dask import extract_metadata; import json; print(json.dumps(extract_metadata({str(main)!r})))"
    run = subprocess.run(["strace", "-f", "-e", "trace=open,openat,openat2,creat", "-o", str(log), sys.executable, "-c", code],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    import json

    record = json.loads(run.stdout)["hdf5"]
    opened = log.read_text()
    assert "main.h5" in opened  # the trace sees our own opens
    for target in ("link_target.h5", "raw_storage.bin", "vds_source.h5"):
        assert target not in opened, f"{target} was opened"
    datasets = {d["name"]: d for d in record["datasets"]}
    assert {"name": "/ext", "type": "external", "file": "link_target.h5", "target": "/data"} in record["links"]
    assert datasets["/raw"]["external_storage"][0]["file"] == "raw_storage.bin" and "never read" in datasets["/raw"]["stats_note"]
    assert datasets["/virtual"]["virtual_sources"] == [{"file": "vds_source.h5", "dataset": "data"}]
    assert datasets["/inside"]["stats"]["max"] == 9.0


# ---------------------------------------------------------------- fuzzing

_SEEDS: dict[str, bytes] = {}


def _seed(kind: str, tmp_dir: str) -> bytes:
    if kind not in _SEEDS:
        path = os.path.join(tmp_dir, "seed" + EXTENSIONS[kind])
        makers = {"h5": lambda p: make_h5(p, 20), "nc": lambda p: make_nc(p, 20), "nc4": lambda p: make_nc(p, 21),
                  "mp4": lambda p: make_video(p, 0.5), "bin": lambda p: make_bin(p, 3000, 1)}
        makers[kind](path)
        _SEEDS[kind] = open(path, "rb").read()
    return _SEEDS[kind]


@pytest.fixture(scope="module")
def sandbox():
    from metaextract_dask.sandbox import Sandbox

    box = Sandbox(memory_limit=2 * 2**30)
    yield box
    box.kill()


EXTENSIONS = {"h5": ".h5", "nc": ".nc", "nc4": ".nc", "mp4": ".mp4", "bin": ".bin"}
FUZZ_COUNTS: dict[str, int] = {}


@pytest.mark.parametrize("kind", ["h5", "nc", "nc4", "mp4", "bin"])
def test_fuzz_mutated_real_files(kind, tmp_path_factory, sandbox):
    tmp = str(tmp_path_factory.mktemp(f"fuzz-{kind}"))
    seed = _seed(kind, tmp)

    @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(edits=st.lists(st.tuples(st.integers(0, len(seed) - 1), st.integers(0, 255)), max_size=12),
           cut=st.one_of(st.none(), st.integers(1, len(seed))))
    def check(edits, cut):
        data = bytearray(seed)
        for pos, value in edits:
            data[pos] = value
        data = bytes(data[:cut] if cut else data)
        path = os.path.join(tmp, "case" + EXTENSIONS[kind])
        with open(path, "wb") as f:
            f.write(data)
        try:
            sandbox.call(path, 20, extract_metadata, path)
            outcome = "ok"
        except MetaExtractError as exc:  # a clear record: what we promise
            outcome = type(exc).__name__
        except Exception as exc:  # anything else escaped: keep the input as a regression file
            name = f"{kind}-{hashlib.sha1(data).hexdigest()[:12]}{EXTENSIONS[kind]}"
            with open(os.path.join(REGRESSIONS, name), "wb") as f:
                f.write(data)
            raise AssertionError(f"{type(exc).__name__} escaped on {name}: {exc}") from exc
        FUZZ_COUNTS[outcome] = FUZZ_COUNTS.get(outcome, 0) + 1

    check()
    if kind == "bin":
        conftest.RELIABILITY_SUMMARY.append(f"fuzzing: {sum(FUZZ_COUNTS.values())} mutated files, outcomes {dict(sorted(FUZZ_COUNTS.items()))}")


def test_regression_corpus_gives_clear_records(sandbox):
    files = sorted(os.listdir(REGRESSIONS))
    assert files
    for name in files:
        path = os.path.join(REGRESSIONS, name)
        try:
            sandbox.call(path, 20, extract_metadata, path)
        except MetaExtractError as exc:
            assert path in str(exc)


# ---------------------------------------------------------------- TLS


def make_certificate(folder) -> tuple[str, str]:
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls_between_client_scheduler_and_workers(tmp_path):
    from metaextract_dask import scan
    from metaextract_dask.execution.cluster import ClientScope, tls_security

    cert, key = make_certificate(tmp_path)
    data = tmp_path / "d"
    data.mkdir()
    make_h5(data / "a.h5", 3)
    security = tls_security(cert, cert, key)
    with ClientScope(model="process_pool", max_workers=1, dashboard="127.0.0.1:0", security=security) as client:
        assert client.scheduler.address.startswith("tls://127.0.0.1:")
        assert all(w.startswith("tls://127.0.0.1:") for w in client.scheduler_info()["workers"])
        frame = scan(str(data), client=client, progress=False)
    assert frame["success"].all()
    cli = subprocess.run(["metaextract", "scan", str(data), "-o", str(tmp_path / "cat"), "-q", "--dashboard-address", "127.0.0.1:0",
                          "--tls-ca-file", cert, "--tls-cert", cert, "--tls-key", key], capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert subprocess.run(["metaextract", "scan", str(data), "-o", str(tmp_path / "c2"), "--tls-cert", cert],
                          capture_output=True, text=True).returncode == 2
