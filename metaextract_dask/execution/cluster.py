"""ExecutionModel -> a distributed Client.

The embedded default is a LocalCluster on 127.0.0.1 (nothing to set up, and
nothing reachable from other machines); a user may instead pass a Client, a
cluster object (dask-jobqueue, ...) or a scheduler address.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ..core.settings import OptionEnum


class ExecutionModel(OptionEnum):
    """How work is executed (seed names, each mapped onto a distributed Client; and LOCAL, which needs none)."""

    THREAD_POOL = "thread_pool"  # threads in this process, each with its own parser sandbox process
    LOCAL = "local"  # the same threads and sandboxes on Dask's local threaded scheduler: no cluster, no dashboard
    PROCESS_POOL = "process_pool"  # one single-threaded worker process per core (CPU-bound)
    ASYNC_IO = "async_io"  # the same cluster as PROCESS_POOL, driven by an asynchronous Client
    HYBRID = "hybrid"  # processes with two threads each


ExecutionModel._aliases = {"threads": "thread_pool", "processes": "process_pool", "async": "async_io"}  # type: ignore[attr-defined]
ExecutionModel._label = "execution model"  # type: ignore[attr-defined]


def local_cluster_kwargs(model: ExecutionModel, max_workers: int | None, host: str = "127.0.0.1", dashboard: str | bool | None = None,
                         tls: bool = False) -> dict[str, Any]:
    """LocalCluster arguments for an execution model on this machine.

    ``dashboard``: HOST:PORT, None for 127.0.0.1:8787, False for none.
    THREAD_POOL is one worker of threads in this process, reached in memory
    (``inproc://``): no port at all, so no other local user can connect and
    no TLS is needed; native parsing still runs in one sandbox process per
    thread. Measured (benchmarks/bench_cli.py): it starts in 0.07 s where
    worker processes take 1.5 to 2 s, and it reads big files at the threaded
    path's speed.
    """
    cores = max_workers or os.cpu_count() or 1
    if model is ExecutionModel.LOCAL:  # a cluster was needed after all (an address, a Client): the threaded one
        model = ExecutionModel.THREAD_POOL
    # the scheduler always serves HTTP (/health, /metrics); without a dashboard on a free loopback port, and no Bokeh
    address = f"{host}:0" if dashboard is False else dashboard if dashboard is not None else f"{host}:8787"
    off = {"scheduler_kwargs": {"dashboard": False}} if dashboard is False else {}
    if model is ExecutionModel.THREAD_POOL and not tls:
        return dict(n_workers=1, threads_per_worker=cores, processes=False, protocol="inproc://", dashboard_address=address,
                    worker_class=loopback_worker_class(), **off)
    common = dict(host=host, dashboard_address=address, protocol="tls://" if tls else "tcp://", **off)
    if model is ExecutionModel.THREAD_POOL:  # with the user's TLS: threads behind an encrypted port
        return dict(n_workers=1, threads_per_worker=cores, processes=False, **common)
    if model is ExecutionModel.HYBRID:
        return dict(n_workers=max(1, cores // 2), threads_per_worker=2, processes=True, **common)
    return dict(n_workers=cores, threads_per_worker=1, processes=True, **common)


@functools.lru_cache(maxsize=1)
def loopback_worker_class() -> type:
    """A Worker whose HTTP server (/metrics, /health) listens on 127.0.0.1, without a Bokeh dashboard.

    An in-memory worker has no host of its own: distributed would bind its
    HTTP server to every interface.
    """
    from distributed import Worker

    class LoopbackWorker(Worker):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs["dashboard_address"] = "127.0.0.1:0"
            kwargs["dashboard"] = False
            super().__init__(*args, **kwargs)

    return LoopbackWorker


def dashboard_url(client: Any) -> str | None:
    """The dashboard's address as a browser reaches it, or None when the scheduler serves no dashboard.

    An in-memory (``inproc://``) cluster's address names this machine's
    external interface, but its HTTP server listens where it was told
    (127.0.0.1): the link is built from that.
    """
    try:
        info = client.scheduler_info()
    except Exception:  # noqa: BLE001 - a scheduler that does not say: fall back to the client's idea
        return getattr(client, "dashboard_link", None)
    port = (info.get("services") or {}).get("dashboard")
    if port is None:
        return None
    address = str(getattr(client.scheduler, "address", ""))
    if address.startswith("inproc://"):
        return f"http://127.0.0.1:{port}/status"
    return getattr(client, "dashboard_link", None)


def tls_security(ca_file: str, cert: str, key: str | None = None) -> Any:
    """distributed.Security requiring TLS between client, scheduler and workers."""
    from distributed import Security

    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, tls_scheduler_cert=cert,
                    tls_scheduler_key=key, tls_worker_cert=cert, tls_worker_key=key, require_encryption=True)


def run_security() -> Any:
    """TLS with certificates made for this run (``metaextract.cluster.temporary-tls``), or None when turned off.

    A LocalCluster on 127.0.0.1 is reachable by every user of the machine,
    and a Dask client can run any code on the workers: without TLS, any
    local user could act as the scanning user. The keys live only in this
    process and the workers it starts.
    """
    from ..core.settings import config_get

    if not config_get("cluster.temporary-tls", True):
        return None
    from distributed import Security

    return Security.temporary()


class main_not_reimported:
    """While worker processes start, hide the user's ``__main__`` from multiprocessing's spawn.

    A spawned worker re-runs the main script (as ``__mp_main__``) before it
    can work; a script without an ``if __name__ == "__main__":`` guard, like
    the seed's examples pasted into a file, would then start a cluster inside
    each worker ("An attempt has been made to start a new process before the
    current process has finished its bootstrapping phase"). Workers do not
    need it: functions defined in ``__main__`` travel by value (cloudpickle),
    as they do to ``dask worker`` processes. Only ``__spec__`` and
    ``__file__`` are hidden, and only for the duration of the start.
    """

    _HIDDEN = ("__spec__", "__file__")

    def __enter__(self) -> "main_not_reimported":
        import sys

        self.main = sys.modules.get("__main__")
        self.saved: dict[str, Any] = {}
        if self.main is None:
            return self
        self.saved = {k: self.main.__dict__[k] for k in self._HIDDEN if k in self.main.__dict__}
        for k in self.saved:
            if k == "__spec__":
                self.main.__spec__ = None
            else:
                del self.main.__dict__[k]
        return self

    def __exit__(self, *exc: Any) -> None:
        for k, v in self.saved.items():
            setattr(self.main, k, v)


def _with_dashboard_page() -> None:
    """Our page on the dashboard of a LocalCluster (its scheduler runs in this process)."""
    try:
        from ..diagnostics.dashboard import register_page
    except ImportError:  # bokeh missing: distributed serves no dashboard either
        return
    register_page()


class ClientScope:
    """A Client for the duration of a ``with`` block; closes only what it started."""

    def __init__(self, client: Any = None, cluster: Any = None, address: str | None = None,
                 model: ExecutionModel | str = ExecutionModel.PROCESS_POOL, max_workers: int | None = None,
                 dashboard: str | bool | None = None, security: Any = None):
        self.given = client
        self.cluster_arg = cluster
        self.address = address
        self.model = ExecutionModel.parse(model)
        self.max_workers = max_workers
        self.dashboard = dashboard
        self.security = security
        self.client: Any = None
        self._owned: list[Any] = []
        #: the workers' local directory of a cluster started here (distributed's dask-scratch-space would stay in /tmp)
        self._scratch: str | None = None

    def _kwargs(self) -> dict[str, Any]:
        return {"security": self.security} if self.security is not None else {}

    def _local_cluster_kwargs(self) -> dict[str, Any]:
        if self.dashboard is not False:
            _with_dashboard_page()
        if self.model in (ExecutionModel.THREAD_POOL, ExecutionModel.LOCAL) and self.security is None:
            return local_cluster_kwargs(self.model, self.max_workers, dashboard=self.dashboard)  # in memory: nothing to encrypt
        if self.security is None:
            self.security = run_security()
        return {**local_cluster_kwargs(self.model, self.max_workers, dashboard=self.dashboard, tls=self.security is not None), **self._kwargs()}

    def _existing_target(self) -> Any:
        """A cluster object or address to connect to; None means start a LocalCluster."""
        return self.cluster_arg if self.cluster_arg is not None else self.address or None

    def __enter__(self) -> Any:
        from distributed import Client, LocalCluster

        if self.given is not None:
            self.client = self.given
            return self.client
        import dask

        target = self._existing_target()
        with dask.config.set({LOG_LENGTH: own_log_length()}):
            if target is None:
                import tempfile

                self._scratch = tempfile.mkdtemp(prefix="metaextract-dask-")
                with main_not_reimported(), dask.config.set({"temporary-directory": self._scratch}):  # the scheduler's too
                    target = LocalCluster(**self._local_cluster_kwargs(), local_directory=self._scratch)
                self._owned.append(target)
            self.client = Client(target, set_as_default=False, **self._kwargs())
        self._owned.insert(0, self.client)
        return self.client

    def __exit__(self, *exc: Any) -> None:
        for thing in self._owned:
            thing.close()
        self._owned.clear()
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


#: distributed keeps the last ``distributed.admin.low-level-log-length`` (1,000) messages of each batched stream
#: (worker to scheduler, client to scheduler) and transitions, for debugging: a run's messages are its batches'
#: outcomes and submissions, up to ``planning.batches.MAX_BATCH`` files each, so a scan of 100,000 tiny files held
#: 117 MB more than one of 10,000 in the dashboard's in-memory cluster (batches of up to 256 files then). The clusters
#: and clients started here keep at most this many.
LOG_LENGTH, OWN_LOG_LENGTH = "distributed.admin.low-level-log-length", 50


def own_log_length() -> int:
    """What the clusters started here keep: ``OWN_LOG_LENGTH``, or the user's lower setting."""
    import dask.config

    return min(int(dask.config.get(LOG_LENGTH)), OWN_LOG_LENGTH)


#: embedded clusters kept after their scan (``Running.keep_cluster``), by (model, workers, dashboard): their scopes
_KEPT: dict[tuple[Any, ...], ClientScope] = {}


def kept_client(model: ExecutionModel, max_workers: int | None, dashboard: str | bool | None, security: Any = None) -> Any:
    """The Client of an embedded cluster that outlives its scan: started the first time, the same one after."""
    key = (model, max_workers, dashboard)
    scope = _KEPT.get(key)
    if scope is not None and scope.client is not None and scope.client.status == "running":
        return scope.client
    scope = _KEPT[key] = ClientScope(model=model, max_workers=max_workers, dashboard=dashboard, security=security)
    return scope.__enter__()


def close_kept() -> None:
    """End the clusters (and dashboards) that scans with ``keep_cluster`` left running."""
    for scope in list(_KEPT.values()):
        scope.__exit__(None, None, None)
    _KEPT.clear()
