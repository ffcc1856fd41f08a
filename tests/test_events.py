"""Live results: a running scan's events over a WebSocket on the scheduler, and ``metaextract watch``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time

import pytest

import metaextract_dask as me
from metaextract_dask.scanning import ScanSummary

pytestmark = pytest.mark.integration


def _files(folder, n: int, size: int) -> list[str]:
    folder.mkdir()
    for i in range(n):
        (folder / f"f{i:03d}.bin").write_bytes(os.urandom(size))
    return sorted(str(p) for p in folder.iterdir())


async def _messages(url: str) -> list[dict]:
    import websockets

    out = []
    async with websockets.connect(url.replace("http://", "ws://")) as ws:
        async for text in ws:
            out.append(json.loads(text))
            if out[-1]["type"] == "end":
                break
    return out


def test_a_real_websocket_client_follows_a_running_scan_and_a_wrong_token_is_refused(tmp_path):
    """The ``websockets`` package (not our client) on the route of a scan on a distributed Client: the state so far,
    then one message per file, then the end; state and messages together account for every row of the catalog,
    each file once. A wrong token is refused before the upgrade (HTTP 403)."""
    import websockets
    from distributed import Client, LocalCluster

    files = _files(tmp_path / "data", 40, 8 * 2**20)
    summary = ScanSummary()
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        worker = threading.Thread(target=me.scan, args=(str(tmp_path / "data"), str(tmp_path / "cat")),
                                  kwargs=dict(client=client, checksum="sha256", progress=False, summary=summary, as_frame=False))
        worker.start()
        while summary.watch is None and worker.is_alive():
            time.sleep(0.01)
        assert summary.watch and "token=" in summary.watch
        messages = asyncio.run(_messages(summary.watch))
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            asyncio.run(_messages(re.sub(r"token=[^&]+", "token=" + "A" * 22, summary.watch)))
        assert refused.value.response.status_code == 403
        worker.join()
    state, per_file, end = messages[0], [m for m in messages if m["type"] == "file"], messages[-1]
    assert state["type"] == "state" and end["type"] == "end" and state["files"] == len(files)
    assert per_file, "the socket joined after the scan had ended: nothing was streamed"
    rows = me.read_catalog(str(tmp_path / "cat"))
    streamed = [m["path"] for m in per_file]
    assert len(set(streamed)) == len(streamed) and set(streamed) <= set(rows["path"])
    assert state["done"] + len(per_file) == end["done"] == len(rows) == len(files)
    assert all(m["success"] for m in per_file) and end["failed"] == 0


def test_metaextract_watch_follows_a_scan_on_a_separate_scheduler(tmp_path):
    """``metaextract scan --scheduler`` prints the stream's URL; ``metaextract watch URL`` in another process shows the
    progress and ends with the scan's own counts."""
    from servers import separate_scheduler

    _files(tmp_path / "data", 30, 8 * 2**20)
    with separate_scheduler(workers=1, nthreads=2) as (address, _dash, _workers):
        scan = subprocess.Popen(["metaextract", "scan", str(tmp_path / "data"), "-o", str(tmp_path / "cat"), "--scheduler", address,
                                 "--checksum", "sha256"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        url = None
        while url is None:
            line = scan.stderr.readline()
            assert line, "the scan ended without printing where to watch it"
            found = re.search(r"metaextract watch '(\S+)'", line)
            url = found.group(1) if found else None
        watch = subprocess.run(["metaextract", "watch", url], capture_output=True, text=True, timeout=300)
        out, err = scan.communicate(timeout=300)
    assert scan.returncode == 0 and watch.returncode == 0, watch.stdout + watch.stderr + err
    counts = re.search(r"(\d+) extracted \((\d+) failed\)", out).groups()
    assert re.search(r"(\d+) extracted \((\d+) failed\)", watch.stdout).groups() == counts == ("30", "0")
    assert re.search(r"30/30 files", watch.stderr)  # the bar (timed lines when not a terminal) reached the end
