"""Discovery as tasks: each lists a folder (and, without links to follow, its subtree up to a budget) with its
entries' stats; the client hands the folders a task left to new tasks as answers arrive.

On a parallel file system every listing and stat is a round trip, and other
nodes can make theirs at the same time: with a Client each folder is a task
on the workers; without one, threads of this process (``os.scandir`` and
``os.stat`` release the GIL). The rules are ``discovery``'s:
hidden names skipped unless asked for, include / exclude globs, folder
symlinks followed only on request and never twice, the catalog skipped.
Each file is stat-ed once, in the task that lists it: the scan needs no
second stat per file.
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..core.probe import file_stat
from .discovery import _wanted, kind

Stat = tuple[int | None, float | None]


@dataclass
class Listing:
    """One folder's answer: files (path, stat through links, is a link, the link's own stat) and subfolders (path, dev, ino)."""

    files: list[tuple[str, Stat, bool, Stat]] = field(default_factory=list)
    folders: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass
class Found:
    """What a walk found: files in walk order, their stats, which are links and the links' own stats."""

    files: list[str] = field(default_factory=list)
    stats: dict[str, Stat] = field(default_factory=dict)
    links: set[str] = field(default_factory=set)
    link_stats: dict[str, Stat] = field(default_factory=dict)
    #: remote objects' ETags (a re-scan extracts an object again when its ETag changed)
    etags: dict[str, str | None] = field(default_factory=dict)
    #: remote roots that could not be listed, with why
    errors: dict[str, str] = field(default_factory=dict)


def _entry_stat(entry: os.DirEntry) -> Stat:
    try:
        st = entry.stat()
        return st.st_size, st.st_mtime
    except OSError:
        return None, None


#: entries one task lists before it hands the folders it has not entered back to the client
TASK_ENTRIES = 20_000


def list_folder(folder: str, root: str, include: Sequence[str], exclude: Sequence[str], hidden: bool, follow: bool,
                skip_real: frozenset[str], budget: int | None = None) -> Listing:
    """The task: the wanted files under ``folder`` with their stats, and the subfolders it left for other tasks.

    Without ``follow`` a tree has no loops, so a task walks on into its
    subfolders until it has listed ``budget`` entries (a task per folder
    would cost more than the listing). With ``follow`` it lists one folder
    only: the client, which sees every task, keeps the walk from entering
    a folder twice. An unreadable folder lists nothing.
    """
    out = Listing()
    budget = TASK_ENTRIES if budget is None else budget
    stack, listed, entered = [folder], 0, set()
    while stack:
        current = stack.pop()
        if current != folder:  # a bind mount can loop without links: never enter a folder twice in one task
            ident = _identified(current)
            if ident is None or ident[1:] in entered:
                continue
            entered.add(ident[1:])
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError:
            continue
        listed += len(entries)
        deeper = []
        for entry in entries:
            what = kind(entry, hidden, follow)
            if what == "dir":
                if not (skip_real and os.path.realpath(entry.path) in skip_real):
                    deeper.append(entry.path)
            elif what == "file" and _wanted(entry.path, root, include, exclude) and not (
                    skip_real and entry.name.endswith(".json") and os.path.realpath(entry.path) in skip_real):  # the cost model
                link = entry.is_symlink()
                out.files.append((entry.path, _entry_stat(entry), link, file_stat(entry.path, follow=False) if link else (None, None)))
        stack.extend(deeper)
        if follow or listed >= budget:  # the rest for other tasks
            out.folders.extend(f for f in map(_identified, stack) if f is not None)
            break
    return out


def _identified(path: str) -> tuple[str, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return path, st.st_dev, st.st_ino


def walk_files(paths: Sequence[str | os.PathLike], include: Sequence[str] = (), exclude: Sequence[str] = (), hidden: bool = False,
               follow_symlinks: bool = False, skip: Sequence[str] = (), client: Any = None, workers: int | None = None) -> Found:
    """Every file under ``paths`` (files given directly are always listed), in tasks of ``list_folder``.

    Tasks run on ``client``'s workers when given, else on ``workers``
    threads here (``workers=0``: in this thread, one after another). Files come depth first, names
    sorted, whatever order the tasks finish in.
    """
    skip_real = frozenset(os.path.realpath(s) for s in skip)
    found = Found()
    seen: set[tuple[int, int]] = set()
    own: Any = None
    if client is None:
        own = _Inline() if workers == 0 else ThreadPoolExecutor(workers or os.cpu_count() or 1, thread_name_prefix="metaextract-walk")
    try:
        for top in (os.fspath(p) for p in paths):
            if not os.path.isdir(top):
                _add(found, top, file_stat(top), os.path.islink(top), file_stat(top, follow=False))
                continue
            _walk_root(top, include, exclude, hidden, follow_symlinks, skip_real, seen, found, client, own)
    finally:
        if own is not None:
            own.shutdown()
    return found


class _Inline:
    """An executor that runs each call at once, in this thread: the serial walk, through the same tasks."""

    def submit(self, fn: Any, *args: Any) -> Any:
        from concurrent.futures import Future

        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - the walk treats it as an unreadable folder
            fut.set_exception(exc)
        return fut

    def shutdown(self) -> None:
        pass


def _add(found: Found, path: str, stat: Stat, link: bool, link_stat: Stat) -> None:
    found.files.append(path)
    found.stats[path] = stat
    if link:
        found.links.add(path)
        found.link_stats[path] = link_stat


def _walk_root(root: str, include: Sequence[str], exclude: Sequence[str], hidden: bool, follow: bool, skip_real: frozenset[str],
               seen: set[tuple[int, int]], found: Found, client: Any, own: ThreadPoolExecutor | None) -> None:
    """Submit the root's task, then each new subfolder's as answers arrive; add the files in walk order."""
    try:
        st = os.stat(root)
    except OSError:
        return
    if (st.st_dev, st.st_ino) in seen or (skip_real and os.path.realpath(root) in skip_real):
        return
    done: queue.Queue = queue.Queue()
    pending = 0

    def submit(folder: str) -> None:
        nonlocal pending
        args = (folder, root, tuple(include), tuple(exclude), hidden, follow, skip_real)
        fut: Any = client.submit(list_folder, *args, pure=False) if client is not None else own.submit(list_folder, *args)  # type: ignore[union-attr]
        fut.add_done_callback(done.put)
        pending += 1

    seen.add((st.st_dev, st.st_ino))
    submit(root)
    files: list[tuple[str, Stat, bool, Stat]] = []
    while pending:
        fut = done.get()
        pending -= 1
        try:
            listing = fut.result()
        except Exception:  # noqa: BLE001 - a folder whose task failed lists nothing, like an unreadable one
            continue
        files.extend(listing.files)
        for folder, dev, ino in listing.folders:
            if (dev, ino) not in seen:
                seen.add((dev, ino))
                submit(folder)
    for path, stat, link, link_stat in sorted(files, key=lambda f: f[0].split(os.sep)):
        _add(found, path, stat, link, link_stat)


def discover(paths: Sequence[str | os.PathLike], include: Sequence[str] = (), exclude: Sequence[str] = (), hidden: bool = False,
             follow_symlinks: bool = False, skip: Sequence[str] = (), client: Any = None) -> Found:
    """The scan's files and their stats: ``list_folder`` tasks on ``client``'s workers, else the serial walk here.

    The serial walk runs the same tasks in this thread. Measured
    (benchmarks/RESULTS-discovery.md): on a local file system it is the
    fastest (listings and stats take microseconds, and threads share one
    interpreter); tasks on workers pay off where each round trip is slow
    and other nodes can make theirs at once.
    """
    from ..storage.urls import is_url, local_path

    remote = [os.fspath(p) for p in paths if is_url(os.fspath(p))]
    local = [local_path(p) for p in paths if not is_url(os.fspath(p))]
    found = walk_files(local, include, exclude, hidden, follow_symlinks, skip, client=client, workers=0 if client is None else None) \
        if local else Found()
    if remote:
        from ..storage.listing import list_remote

        listing = list_remote(remote, include, exclude, hidden, client=client)
        for url in listing.files:
            if url not in found.stats:
                st = listing.stats[url]
                found.files.append(url)
                found.stats[url] = (st.size, st.mtime)
                found.etags[url] = st.etag
        found.errors.update(listing.errors)
    return found
