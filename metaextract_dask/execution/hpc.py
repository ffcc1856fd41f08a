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
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

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


def make_jobqueue_cluster(spec: BatchJobs | str, **kwargs: Any) -> Any:
    """A dask-jobqueue cluster of ``spec.kind`` with ``spec.jobs`` jobs (or adaptive between ``spec.adapt``); other
    ``kwargs`` go to the dask-jobqueue class. ``make_jobqueue_cluster("slurm", jobs=2, cores=4, ...)`` is the same as
    ``make_jobqueue_cluster(BatchJobs("slurm", jobs=2, cores=4), ...)``."""
    if isinstance(spec, str):
        own = {f.name for f in fields(BatchJobs)}
        spec = BatchJobs(spec, **{k: kwargs.pop(k) for k in list(kwargs) if k in own})
    kind, jobs, adapt, lifetime = spec.kind, spec.jobs, spec.adapt, spec.lifetime
    try:
        import dask_jobqueue
    except ImportError:
        raise ImportError("dask-jobqueue is not installed: pip install 'metaextract_dask[hpc]'") from None
    if kind not in KINDS:
        raise ValueError(f"unknown batch system {kind!r}; choose one of {', '.join(KINDS)}")
    options = {k: v for k in ("cores", "memory", "walltime", "queue", "account", "processes", "interface")
               if (v := getattr(spec, k)) is not None}
    if lifetime:
        extra = list(kwargs.pop("worker_extra_args", []))
        extra += ["--lifetime", lifetime, "--lifetime-stagger", spec.lifetime_stagger]
        kwargs["worker_extra_args"] = extra
        adapt = adapt or (jobs, jobs)  # adaptive, so retired jobs are replaced
    cluster = getattr(dask_jobqueue, KINDS[kind])(**options, **kwargs)
    if adapt:
        cluster.adapt(minimum_jobs=adapt[0], maximum_jobs=adapt[1])
    else:
        cluster.scale(jobs=jobs)
    return cluster
