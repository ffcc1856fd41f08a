"""Outgrowing the laptop: a real SLURM through dask-jobqueue, and separate scheduler/worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import pytest

from metaextract_dask import ParallelExtractionConfig, ParallelExtractor, scan
from metaextract_dask.demo import mixed_corpus

pytestmark = pytest.mark.system

ROOT = os.path.join(os.path.dirname(__file__), "..")
VOLATILE = ["duration", "worker", "extracted_at", "started_at", "finished_at", "attempts"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A private single-node SLURM, all of it in a temporary folder (.ci/slurm/start.sh), stopped afterwards.

    Nothing outside that folder changes: its config, munge key and socket
    live there and it listens on free ports, so a SLURM the machine already
    runs is left alone. ``SLURM_CONF`` points this process (and the
    notebook's kernel, and dask-jobqueue's ``sbatch``) at it.
    """
    missing = [cmd for cmd in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch") if not _has(cmd)]
    if missing:
        pytest.skip(f"SLURM is not installed here ({', '.join(missing)} missing: apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        pytest.skip("a private SLURM needs root here (slurmd starts the jobs)")
    folder = str(tmp_path_factory.mktemp("slurm"))
    start = subprocess.run(["bash", os.path.join(ROOT, ".ci", "slurm", "start.sh"), folder], capture_output=True, text=True, timeout=300)
    assert start.returncode == 0, start.stdout + start.stderr
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLURM_CONF", os.path.join(folder, "slurm.conf"))
        try:
            yield folder
        finally:
            subprocess.run(["bash", os.path.join(ROOT, ".ci", "slurm", "stop.sh"), folder], timeout=120)


def _has(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd) is not None


def comparable(folder: str) -> pd.DataFrame:
    frame = pd.read_parquet(folder).drop(columns=VOLATILE).sort_values("path").reset_index(drop=True)
    return frame


def test_scan_on_slurm_through_the_hpc_notebook(tmp_path, slurm, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    files = mixed_corpus(tmp_path / "data", n_h5=8, n_nc=8, n_video=3, n_bin=6, n_corrupt=2)
    total = sum(len(v) for v in files.values())
    monkeypatch.setenv("METAEXTRACT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("METAEXTRACT_CATALOG", str(tmp_path / "slurm-catalog"))
    monkeypatch.setenv("METAEXTRACT_INTERFACE", "lo")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "hpc.ipynb"), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    jobs = next(line.split()[1:] for line in text.splitlines() if line.startswith("WORKER_JOBS"))
    queued = next(line.split()[1:] for line in text.splitlines() if line.startswith("SQUEUE"))
    assert len(jobs) == 2 and set(jobs) <= set(queued)  # the workers ran as SLURM jobs
    assert f"CATALOG_ROWS {total}" in text

    scan(str(tmp_path / "data"), str(tmp_path / "local-catalog"), workers=2, dashboard_address="127.0.0.1:0", progress=False)
    pd.testing.assert_frame_equal(comparable(str(tmp_path / "slurm-catalog")), comparable(str(tmp_path / "local-catalog")))
    slurm_workers = set(pd.read_parquet(tmp_path / "slurm-catalog")["worker"].dropna())
    assert slurm_workers and all(w.startswith("tls://127.0.0.1:") for w in slurm_workers)  # the run's own TLS


def test_separate_scheduler_and_workers_survive_a_killed_worker(tmp_path):
    from distributed import Client
    from servers import separate_scheduler

    corpus = mixed_corpus(tmp_path / "d", n_h5=80, n_nc=80, n_video=2, n_bin=338, n_corrupt=0)
    assert sum(len(v) for v in corpus.values()) == 500
    files = sorted(p for v in corpus.values() for p in v)
    with separate_scheduler(workers=2, nthreads=1) as (address, dash, workers):
        killed = {}

        def progress(result):
            killed.setdefault("seen", 0)
            killed["seen"] += 1
            if killed["seen"] == len(files) // 3 and "pid" not in killed:
                killed["pid"] = workers[0].pid
                os.kill(workers[0].pid, signal.SIGKILL)

        with Client(address, timeout=30) as client:
            config = ParallelExtractionConfig(batch_size=10)
            results, metrics = ParallelExtractor(config, client=client).extract(files, progress=progress)
            page = urllib.request.urlopen(f"http://127.0.0.1:{dash}/metaextract", timeout=10).read().decode()
        assert "pid" in killed and workers[0].wait(timeout=10) == -signal.SIGKILL
    assert [r.file_path for r in results] == files  # every file exactly once
    assert all(r.success for r in results), [r.error for r in results if not r.success][:3]
    assert metrics.total_files == len(files)
    assert "bokeh" in page.lower()  # the preload put our page on the standalone scheduler's dashboard


def test_walltime_retirement_on_slurm_replaces_jobs(tmp_path, slurm):
    """--lifetime below the walltime: workers retire, their jobs end, new jobs take over, no file is lost."""
    from distributed import Client

    from metaextract_dask.demo import make_bin
    from metaextract_dask.execution.hpc import BatchJobs, make_jobqueue_cluster

    files = [make_bin(str(tmp_path / f"f{i:04d}.bin"), 512, i) for i in range(500)]

    def which_job(path):
        time.sleep(0.05)  # 25 s of work in all: several lifetimes of one worker
        return {"job": os.environ.get("SLURM_JOB_ID"), "size": os.path.getsize(path)}

    jobs = BatchJobs("slurm", jobs=2, cores=1, memory="1GB", walltime="00:10:00", interface="lo", lifetime="8s", lifetime_stagger="2s",
                     folder=str(tmp_path / "jobs"))
    cluster = make_jobqueue_cluster(jobs, log_directory=str(tmp_path / "logs"),
                                    scheduler_options={"dashboard_address": ":0"})
    with cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=300)
        # the jobs' workers and the scheduler keep as few of a run's messages as the embedded cluster (cluster.LOG_LENGTH)
        kept = client.run(lambda dask_worker: dask_worker.batched_stream.recent_message_log.maxlen)
        assert kept and set(kept.values()) == {50}, kept
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_log.maxlen) == 50
        results, metrics = ParallelExtractor(ParallelExtractionConfig(), extraction_fn=which_job, client=client).extract(files)
    assert [r.file_path for r in results] == files  # every file exactly once
    assert all(r.success for r in results), [r.error for r in results if not r.success][:3]
    assert metrics.total_files == len(files)
    jobs = {r.metadata["job"] for r in results}
    assert None not in jobs and len(jobs) >= 3  # the two first jobs retired and were replaced


def _squeue() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split()


def _as_nobody(code: str) -> subprocess.CompletedProcess:
    """``code`` run by another local user (nobody), as a neighbour on a login node would."""
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", code], cwd="/",
                          env={"HOME": "/tmp", "PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=120)


def test_a_slurm_scan_is_private_says_what_it_waits_for_and_stops_on_ctrl_c(tmp_path, slurm):
    """--cluster slurm with every core taken by another job: the scheduler speaks TLS with the run's own credentials
    (another local user cannot connect, in plain TCP nor with a certificate of their own), the pending job and SLURM's
    reason are printed, Ctrl-C exits 130 leaving no job of the scan in squeue, and nothing is written to the working
    folder (the job logs go to CATALOG.jobs/logs). A job SLURM refuses ends the scan at once, with one line, exit 1."""
    import re

    from metaextract_dask.demo import make_bin

    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    work.mkdir()
    for i in range(5):
        make_bin(str(data / f"f{i}.bin"), 512, i)
    cores = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, check=True).stdout.split()[0]
    blocker = subprocess.run(["sbatch", "--parsable", "-c", cores, "-o", "/dev/null", "--wrap", "sleep 600"], capture_output=True,
                             text=True, check=True).stdout.strip()
    try:
        command = ["metaextract", "scan", str(data), "-o", str(tmp_path / "cat"), "--cluster", "slurm", "--cores", "1", "--memory",
                   "1GB", "--interface", "lo"]
        scan = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        while not any("PENDING: Resources" in line for line in lines):
            line = scan.stderr.readline()
            assert line, f"the scan ended before saying what it waits for: {lines}"
            lines.append(line)
        address = re.search(r"scheduler (tls://\S+)", "".join(lines)).group(1)
        ours = [job for job in _squeue() if job != blocker]
        assert len(ours) == 1 and f"job {ours[0]} PENDING: Resources" in "".join(lines)

        plain = _as_nobody(f"from distributed import Client\nClient({address.replace('tls://', 'tcp://')!r}, timeout=10)\nprint('CONNECTED')")
        own_key = _as_nobody("from distributed import Client, Security\n"
                             f"Client({address!r}, security=Security.temporary(), timeout=10)\nprint('CONNECTED')")
        for attempt in (plain, own_key):
            assert attempt.returncode != 0 and "CONNECTED" not in attempt.stdout, attempt.stdout + attempt.stderr[-500:]

        scan.send_signal(signal.SIGINT)
        out, err = scan.communicate(timeout=120)
        assert scan.returncode == 130, out + err
        assert "interrupted" in err
        for _ in range(30):  # scancel is asynchronous
            if _squeue() == [blocker]:
                break
            time.sleep(1)
        assert _squeue() == [blocker]
        assert os.listdir(work) == [] and (tmp_path / "cat.jobs" / "logs").is_dir()  # where the job would have logged
    finally:
        subprocess.run(["scancel", blocker])

    refused = subprocess.run([*command[:-4], "--memory", "100000GB", "--interface", "lo"], cwd=work, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and refused.stderr.startswith("metaextract: SLURM refuses the job: "), \
        refused.stderr


def test_a_slurm_scan_whose_jobs_end_stops_with_one_line_and_keeps_what_it_extracted(tmp_path, slurm):
    """The job under a running scan ends (scancel here; a walltime too short ends it the same way): the scan stops
    within seconds with exit 1 and one line that says so and names the job's log, instead of waiting for workers
    that will never come; what was extracted is in the catalog and a rerun goes on from there."""
    import re

    from metaextract_dask.demo import make_bin

    data = tmp_path / "data"
    data.mkdir()
    for i in range(30_000):  # more than its one worker finishes in the seconds before the cancel
        make_bin(str(data / f"f{i:05d}.bin"), 256, i)
    scan = subprocess.Popen(["metaextract", "scan", str(data), "-o", str(tmp_path / "cat"), "--cluster", "slurm", "--cores", "1",
                             "--memory", "1GB", "--interface", "lo"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    while "Dask dashboard" not in (line := scan.stderr.readline()):
        assert line, "the scan ended before its workers joined"
    time.sleep(2)  # some files done
    subprocess.run(["scancel", *_squeue()], check=True)
    try:
        out, err = scan.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        scan.kill()
        pytest.fail(f"the scan went on waiting for workers: {scan.communicate()[1][-2000:]}")
    assert scan.returncode == 1, out + err
    said = [line for line in err.replace("\r", "\n").splitlines() if "batch jobs ended" in line]
    assert len(said) == 1 and re.search(r"its log: \S+dask-worker-\d+\.\w+", said[0]), err[-1500:]
    saved = int(re.search(r"; (\d+) results were saved", said[0]).group(1))
    assert 0 < saved < 30_000 and len(pd.read_parquet(tmp_path / "cat")) == saved
    for _ in range(30):  # a replacement dask-jobqueue submitted is cancelled with the cluster (scancel is asynchronous)
        if not _squeue():
            break
        time.sleep(1)
    assert _squeue() == []


def test_a_slurm_job_that_dies_at_start_ends_the_scan_with_its_log_line(tmp_path, slurm):
    """A job whose script fails before the worker starts (a module that does not load, a venv that is not there: here
    jobqueue.yaml's prologue exits 3): the scan ends with exit 1 and one line naming the job's log and its last line."""
    from metaextract_dask.demo import make_bin

    data = tmp_path / "data"
    data.mkdir()
    make_bin(str(data / "f.bin"), 256, 0)
    done = subprocess.run(["metaextract", "scan", str(data), "-o", str(tmp_path / "cat"), "--cluster", "slurm", "--cores", "1",
                           "--memory", "1GB", "--interface", "lo"], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, DASK_JOBQUEUE__SLURM__JOB_SCRIPT_PROLOGUE='["echo no such module: python/9.9", "exit 3"]'))
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "ended before its worker started" in last and "no such module: python/9.9" in last, done.stderr
    assert sorted(os.listdir(tmp_path)) == ["cat.jobs", "data"] and _squeue() == []
