"""A scan's options in the groups ``metaextract scan --help`` shows them in.

``StreamingConfig`` (how files are read) is one group; the others are here:
``Running`` (where it runs), ``Selection`` (which files), ``CatalogOptions``
(the catalog) and ``Feedback`` (what the caller sees). ``scan()`` takes the
groups, or their fields as keywords; the CLI's option names are the
fields' names, so ``ScanOptions.from_values`` maps either onto the groups
without a list of keys anywhere. A value left None means "the default"
(read from ``dask.config`` where the setting lives there).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from .settings import StreamingConfig


@dataclass
class Running:
    """Where a scan runs and how work is ordered (``metaextract scan``: "where it runs", "how files are extracted")."""

    #: auto (threads here; a cluster only when a dashboard is served), local, thread_pool, process_pool, hybrid
    execution: str = "auto"
    #: worker threads (or processes); None: one per core
    workers: int | None = None
    #: address of a running Dask scheduler
    scheduler: str | None = None
    #: a cluster object (dask-jobqueue, ...) to run on
    cluster: Any = None
    #: HOST:PORT of the embedded cluster's dashboard; None: 127.0.0.1:8787 when the scan is expected to be long
    dashboard_address: str | None = None
    #: a ``distributed.Security`` (TLS between client, scheduler and workers)
    security: Any = None
    #: retries of transient errors; None: ``metaextract.parallel.retry-limit``
    retries: int | None = None
    #: parse in a sandbox process per worker thread
    isolate: bool = True
    #: address-space limit of each sandbox; None: ``metaextract.sandbox.memory-limit``
    memory_limit: int | str | None = None
    load_balancing: str = "size_aware"
    #: catalogs (or saved cost models) whose rows teach each file's cost
    learn_from: Sequence[Any] = ()
    #: the embedded cluster and its dashboard stay up after the scan (a notebook's link keeps working) and the next
    #: scan of this process with the same settings runs on them; ``execution.cluster.close_kept()`` ends them
    keep_cluster: bool = False


@dataclass
class Selection:
    """Which files a scan reads (``metaextract scan``: "which files")."""

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    hidden: bool = False
    follow_symlinks: bool = False
    #: each zip and tar file's members become rows of their own
    into_archives: bool = False
    #: read the files a listing names (``execution.walk.read_listing``; "-": standard input) instead of walking the
    #: folders; only listed files under the scanned folders are read, and rows of unlisted files are kept
    from_list: str | None = None


@dataclass
class CatalogOptions:
    """How the catalog is written (``metaextract scan``: "the catalog")."""

    format: str = "parquet"
    #: redo every file, replacing the catalog
    force: bool = False
    #: extract again the files whose row is a failure
    retry_failed: bool = False
    #: read and write nothing: return (path, reason) for each file that would be extracted
    dry_run: bool = False
    #: write a catalog part every N results and every 10 s (a killed scan loses at most that much work; few large
    #: parts keep resumes and queries fast)
    flush_every: int = 20000


@dataclass
class Feedback:
    """What the caller sees while and after a scan runs."""

    #: a progress bar; None: when the output is a terminal
    progress: bool | None = None
    #: called with the Client once it is up
    on_client: Callable[[Any], Any] | None = None
    #: called with each file's catalog row (a dict, as the returned DataFrame's rows) as the file finishes, in the
    #: thread that runs the scan; an exception it raises stops the scan (what was extracted is kept)
    on_result: Callable[[dict[str, Any]], Any] | None = None
    #: a ``scanning.ScanSummary`` to fill (the CLI's last lines); None: notices become warnings
    summary: Any = None
    #: return the catalog as a pandas DataFrame (False: None, and pandas is never imported)
    as_frame: bool = True


GROUPS: dict[str, type] = {"reading": StreamingConfig, "running": Running, "selection": Selection, "catalog": CatalogOptions,
                           "feedback": Feedback}


@dataclass
class ScanOptions:
    """Every group of a scan's options."""

    reading: StreamingConfig = field(default_factory=StreamingConfig)
    running: Running = field(default_factory=Running)
    selection: Selection = field(default_factory=Selection)
    catalog: CatalogOptions = field(default_factory=CatalogOptions)
    feedback: Feedback = field(default_factory=Feedback)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], groups: Mapping[str, Any] | None = None, strict: bool = True) -> "ScanOptions":
        """The groups given (``groups``: name -> object or None), with ``values`` (field name -> value) set in the group owning
        each field; a None value keeps the group's. ``strict``: an unknown name is a TypeError (the CLI passes its others)."""
        owner = {f.name: name for name, kind in GROUPS.items() for f in dataclasses.fields(kind)}
        given: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
        for key, value in values.items():
            if key not in owner:
                if strict:
                    raise TypeError(f"scan() got an unexpected keyword argument {key!r}")
                continue
            if value is not None:
                given[owner[key]][key] = value
        made = {}
        for name, kind in GROUPS.items():
            base = (groups or {}).get(name)
            made[name] = dataclasses.replace(base, **given[name]) if base is not None else kind(**given[name])
        return cls(**made)
