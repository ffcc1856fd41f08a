"""Batch-system clusters through dask-jobqueue (SLURM, PBS, SGE, LSF).

Nothing of our own: dask-jobqueue submits the workers as jobs, configured the
usual way through ``jobqueue.yaml``; keyword arguments here override it.
Workers that would reach their walltime retire gracefully when ``lifetime``
is set (``--lifetime`` / ``--lifetime-stagger``, a little below the
walltime): the worker hands its results to others and exits, its job ends,
its unfinished batches are rescheduled, and the cluster, kept adaptive, submits
a new job in its place (dask-jobqueue's advice for walltimes). Restarting the
worker inside the same job (``--lifetime-restart``) would not help: the
batch system still kills the job at its walltime.

Safe by default: the scheduler speaks TLS with credentials made for the run
(the workers' copies are written, readable by this user only, to the run's
private ``folder``, which compute nodes must share), the dashboard listens on
127.0.0.1 (reach it through ``ssh -L``), and the jobs' logs go to
``folder/logs``, not the working folder. ``wait_for_workers`` says what the
batch system is doing until the first worker joins, and ends a run whose
jobs are refused or die before starting with one ``BatchJobError``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, fields
from typing import Any, Callable

KINDS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}


@dataclass
class BatchJobs:
    """A batch-system cluster (``metaextract scan``: "batch systems"); None: jobqueue.yaml's value."""

    #: slurm, pbs, sge or lsf
    kind: str
    jobs: int = 1
    cores: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    processes: int | None = None
    #: retire each worker gracefully after this long (before its walltime), e.g. 55m
    lifetime: str | None = None
    lifetime_stagger: str = "2m"
    #: (min, max) jobs: scale with the work instead of ``jobs``
    adapt: tuple[int, int] | None = None
    #: network interface of scheduler and workers, e.g. ib0
    interface: str | None = None
    #: the run's private folder (mode 700) on a file system the compute nodes share: the workers' TLS credentials and
    #: the jobs' logs; None: a new folder under ~/.metaextract/jobs
    folder: str | None = None


def jobs_folder(catalog: str) -> str:
    """The CLI's run folder of a batch scan writing ``catalog``: beside it, as its thumbnails are."""
    return os.path.normpath(catalog) + ".jobs"


class BatchJobError(RuntimeError):
    """The batch system refused the jobs, or they ended before a worker joined: the run cannot start."""


def private_folder(folder: str | None) -> str:
    """``folder`` (or a new one under ~/.metaextract/jobs) made readable by this user only."""
    if folder is None:
        base = os.path.join(os.path.expanduser("~"), ".metaextract", "jobs")
        os.makedirs(base, mode=0o700, exist_ok=True)
        folder = tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=base)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def _jobqueue() -> Any:
    """dask_jobqueue, imported without its Ctrl-C handler: its ``runner`` module makes SIGINT call ``sys.exit()`` when
    imported (dask-jobqueue 0.9), so Ctrl-C ended a scan with status 0 and no word; the handler before the import
    (Python's KeyboardInterrupt, or a notebook kernel's) is put back."""
    import signal
    import threading

    before = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue
    except ImportError:
        raise ImportError("dask-jobqueue is not installed: pip install 'metaextract_dask[hpc]'") from None
    theirs = lambda handler: getattr(handler, "__module__", None) == "dask_jobqueue.runner"  # noqa: E731
    if theirs(signal.getsignal(signal.SIGINT)) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler if theirs(before) or not callable(before) else before)
    return dask_jobqueue


def make_jobqueue_cluster(spec: BatchJobs | str, **kwargs: Any) -> Any:
    """A dask-jobqueue cluster of ``spec.kind`` with ``spec.jobs`` jobs (or adaptive between ``spec.adapt``); other
    ``kwargs`` go to the dask-jobqueue class. ``make_jobqueue_cluster("slurm", jobs=2, cores=4, ...)`` is the same as
    ``make_jobqueue_cluster(BatchJobs("slurm", jobs=2, cores=4), ...)``."""
    if isinstance(spec, str):
        own = {f.name for f in fields(BatchJobs)}
        spec = BatchJobs(spec, **{k: kwargs.pop(k) for k in list(kwargs) if k in own})
    kind, jobs, adapt, lifetime = spec.kind, spec.jobs, spec.adapt, spec.lifetime
    dask_jobqueue = _jobqueue()
    if kind not in KINDS:
        raise ValueError(f"unknown batch system {kind!r}; choose one of {', '.join(KINDS)}")
    options = {k: v for k in ("cores", "memory", "walltime", "queue", "account", "processes", "interface")
               if (v := getattr(spec, k)) is not None}
    folder = private_folder(spec.folder)
    if "security" not in kwargs:
        from .cluster import run_security

        kwargs["security"] = run_security()  # None only when metaextract.cluster.temporary-tls is off
    import dask.config

    # jobqueue.yaml's folders when it names them (the key files are readable by this user only either way)
    kwargs.setdefault("shared_temp_directory", dask.config.get(f"jobqueue.{kind}.shared-temp-directory", None) or folder)
    kwargs.setdefault("log_directory", dask.config.get(f"jobqueue.{kind}.log-directory", None) or os.path.join(folder, "logs"))

    scheduler = dict(kwargs.pop("scheduler_options", None) or dask.config.get(f"jobqueue.{kind}.scheduler-options", None) or {})
    scheduler.setdefault("dashboard_address", "127.0.0.1:8787")
    kwargs["scheduler_options"] = scheduler
    from .cluster import LOG_LENGTH, own_log_length

    # the workers' batched streams keep as few of the run's messages as the embedded cluster's (cluster.LOG_LENGTH)
    prologue = list(kwargs.pop("job_script_prologue", None) or dask.config.get(f"jobqueue.{kind}.job-script-prologue", None) or [])
    variable = "DASK_" + LOG_LENGTH.upper().replace(".", "__").replace("-", "_")
    if not any(variable in line for line in prologue):
        prologue.append(f"export {variable}={own_log_length()}")
    kwargs["job_script_prologue"] = prologue
    if lifetime:
        extra = list(kwargs.pop("worker_extra_args", []))
        extra += ["--lifetime", lifetime, "--lifetime-stagger", spec.lifetime_stagger]
        kwargs["worker_extra_args"] = extra
        adapt = adapt or (jobs, jobs)  # adaptive, so retired jobs are replaced
    import warnings

    with warnings.catch_warnings():  # another scan's dashboard on 8787: this one takes a free port, and its line says which
        warnings.filterwarnings("ignore", message="Port .* is already in use")
        with dask.config.set({LOG_LENGTH: own_log_length()}):  # its scheduler, here
            cluster = getattr(dask_jobqueue, KINDS[kind])(**options, **kwargs)
    if kind == "slurm":
        try:
            test_submission(cluster, folder)
        except BaseException:
            cluster.close()
            raise
    if adapt:
        cluster.adapt(minimum_jobs=adapt[0], maximum_jobs=adapt[1])
    else:
        cluster.scale(jobs=jobs)
    return cluster


def test_submission(cluster: Any, folder: str) -> None:
    """``sbatch --test-only`` of the job script: a job SLURM would refuse (memory, cores, walltime, partition) is a
    ``BatchJobError`` now, with SLURM's own words, instead of a scan that waits for it forever."""
    script = os.path.join(folder, "job-test.sh")
    with open(script, "w") as f:
        f.write(cluster.job_script())
    try:
        done = subprocess.run([*shlex.split(cluster.job_cls.submit_command), "--test-only", script], capture_output=True, text=True,
                              timeout=60)
    finally:
        os.unlink(script)
    if done.returncode:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise BatchJobError(f"SLURM refuses the job: {lines[-1] if lines else f'sbatch exited {done.returncode}'}")


#: job states in which a job may still give a worker (SLURM's names; other systems' jobs say "submitted")
ALIVE = ("PENDING", "RUNNING", "CONFIGURING", "REQUEUED", "RESIZING", "SUSPENDED", "submitted", "unknown")


def alive(state: str) -> bool:
    """Whether a job in ``state`` (``job_states``) may still give a worker: not ended, cancelled, completing or failed."""
    return state.split(":")[0] in ALIVE


def job_states(cluster: Any) -> dict[str, str]:
    """{job id: state, with SLURM's reason when pending} of the cluster's submitted jobs (SLURM: ``squeue``; other
    systems: "submitted")."""
    ids = [job.job_id for job in list(cluster.workers.values()) if getattr(job, "job_id", None)]
    if not ids:
        return {}
    if getattr(cluster.job_cls, "submit_command", "") != "sbatch":
        return {i: "submitted" for i in ids}
    try:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {i: "unknown" for i in ids}
    found = {}
    for line in out.splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        found[job] = f"{state}: {reason}" if state == "PENDING" and reason and reason != "None" else state
    return {i: found.get(i, "ENDED") for i in ids}


def wait_for_workers(cluster: Any, client: Any, report: Callable[[str], None] = print, every: float = 2.0) -> None:
    """Until the first worker joins: report what the jobs are doing when it changes ("SLURM job 12 PENDING:
    Resources"); a job that ends before any worker joined is a ``BatchJobError`` naming its log."""
    said = ""
    while not client.scheduler_info().get("workers"):
        states = job_states(cluster)
        ended = [job for job, state in states.items() if not alive(state)]
        if ended and len(ended) == len(states):
            raise BatchJobError(f"batch job {ended[0]} ended before its worker started; {job_log(cluster, ended[0])}")
        text = ", ".join(f"job {job} {state}" for job, state in states.items()) or "submitting"
        if text != said:
            report(f"waiting for {len(states) or 'the'} batch job{'' if len(states) == 1 else 's'}: {text}")
            said = text
        time.sleep(every)


def job_log(cluster: Any, job: str) -> str:
    """Where one job's log is (dask-jobqueue's ``log_directory``: ``*-JOB.err`` and ``.out``), and its last line."""
    folder = getattr(cluster, "_job_kwargs", {}).get("log_directory")
    logs = sorted(os.path.join(folder, n) for n in os.listdir(folder) if f"-{job}." in n) if folder and os.path.isdir(folder) else []
    if not logs:
        return f"no log of it in {folder}" if folder else "its log is wherever jobqueue.yaml's log-directory says"
    last = ""
    for path in logs:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        last = lines[-1] if lines else last
    return f"its log: {logs[0]}" + (f" (last line: {last[:200]})" if last else "")


def workers_of(cluster: Any) -> int:
    """Workers connected now: the scheduler's own count when it runs here (dask-jobqueue's does), else the cluster's view."""
    scheduler = getattr(cluster, "scheduler", None)
    if scheduler is not None and hasattr(scheduler, "workers"):
        return len(scheduler.workers)
    return len(getattr(cluster, "scheduler_info", {}).get("workers") or {})


def watch_jobs(cluster: Any, gone: Callable[[str], None], every: float = 2.0) -> Callable[[], None]:
    """While a scan runs on ``cluster``: when no worker is left and none of its jobs is pending or running (a walltime
    too short, jobs cancelled or killed), ``gone`` is told why, once. Returns the function that stops watching.

    The jobs counted are those running when the watch starts: dask-jobqueue submits a job in place of one that
    ended (``scale`` keeps the number), and that replacement may wait in the queue for as long as the queue says,
    or die at its walltime again; the scan ends instead, and closing the cluster cancels it. A cluster whose jobs
    retire by design (``lifetime``: adaptive, its jobs replaced as they go) is not watched."""
    import threading

    stop = threading.Event()

    started = set(job_states(cluster))  # the jobs whose workers the scan starts with

    def loop() -> None:
        while not stop.wait(every):
            if not started or workers_of(cluster):
                continue
            states = job_states(cluster)  # a job that ended may be gone from the cluster's list: ended all the same
            if not any(alive(states.get(job, "ENDED")) for job in started):  # a replacement dask-jobqueue submits does not count
                job = sorted(started, key=lambda j: int(j) if j.isdigit() else 0)[-1]
                gone(f"the batch jobs ended (walltime reached, cancelled or killed) and no worker is left; {job_log(cluster, job)}")
                return

    threading.Thread(target=loop, name="metaextract-jobs", daemon=True).start()
    return stop.set
