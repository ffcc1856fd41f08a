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

import math
import os
import queue
import re
import stat as stat_module
import struct
from collections.abc import MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from ..core.pin import identity_of, identity_parts, identity_text
from ..readers.probe import file_stat
from ..storage.folders import folder_stat
from .discovery import _wanted, kind

Stat = tuple[int | None, float | None]
#: a local file's identity as ``pin.identity_of`` gives it: (device, inode, change time)
Identity = tuple[int, int, int]


@dataclass
class Listing:
    """One folder's answer: files (path, stat through links, is a link, the link's own stat, identity) and subfolders
    (path, dev, ino)."""

    files: list[tuple[str, Stat, bool, Stat, Identity | None]] = field(default_factory=list)
    folders: list[tuple[str, int, int]] = field(default_factory=list)
    #: folders that could not be listed, with why (each an error row: nothing is left out unsaid)
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: another catalog's folders and what lies beside them, left out (``_catalog_entries``)
    catalogs: list[str] = field(default_factory=list)


#: one file's (size, mtime) and identity (device, inode, change time), packed; -1 and NaN say "none"
_PACKED = struct.Struct("<qdqqq")


class WalkedStats(MutableMapping):
    """path -> (size, mtime) of every file a walk found, and (``etags``) its identity: one packed 40-byte value per
    file, where a tuple, its two numbers and an identity string took about 250 bytes (a scan of millions holds them
    all). A remote object's ETag, or anything that is not a local identity, is kept as it is beside them."""

    def __init__(self) -> None:
        self._packed: dict[str, bytes] = {}
        self.etags = WalkedEtags(self)

    def __getitem__(self, path: str) -> Stat:
        size, mtime, _dev, _ino, _ns = _PACKED.unpack(self._packed[path])
        return (None if size < 0 else size, None if mtime != mtime else mtime)

    def get(self, path: str, default: Any = None) -> Any:  # one dict lookup (``Mapping.get`` tries and catches)
        packed = self._packed.get(path)
        if packed is None:
            return default
        size, mtime, _dev, _ino, _ns = _PACKED.unpack(packed)
        return (None if size < 0 else size, None if mtime != mtime else mtime)

    def put(self, path: str, stat: Stat, ident: Identity | None) -> None:
        """A file's stat and identity (``pin.identity_of``: what its identity string is made of), packed."""
        try:  # the walk's common case: an int size, a float mtime, an identity
            self._packed[path] = _PACKED.pack(*stat, *ident)  # type: ignore[misc]
        except (struct.error, TypeError):
            packable = ident is not None and _packable(*ident)
            self._packed[path] = _pack(stat, ident if packable else _NONE)  # type: ignore[arg-type]
            if ident is not None and not packable:  # an inode past 2**63 (some network file systems): kept as text
                self.etags._other[path] = identity_text(*ident)

    def __setitem__(self, path: str, stat: Stat) -> None:
        old = self._packed.get(path)
        ident = _PACKED.unpack(old)[2:] if old is not None else _NONE
        self._packed[path] = _pack(stat, ident)

    def __delitem__(self, path: str) -> None:
        del self._packed[path]
        self.etags._other.pop(path, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)

    def __contains__(self, path: object) -> bool:
        return path in self._packed


_NONE = (-1, -1, -1)


def _packable(dev: int, ino: int, ctime_ns: int) -> bool:
    return 0 <= dev < 2**63 and 0 <= ino < 2**63 and -(2**63) <= ctime_ns < 2**63


def _pack(stat: Stat, ident: tuple[int, int, int]) -> bytes:
    size, mtime = stat
    size = size if isinstance(size, int) and 0 <= size < 2**63 else -1
    return _PACKED.pack(size, float(mtime) if isinstance(mtime, (int, float)) else math.nan, *ident)


class WalkedEtags(MutableMapping):
    """path -> identity or ETag of the files of a ``WalkedStats`` (a local identity lives in its packed value)."""

    def __init__(self, stats: WalkedStats) -> None:
        self._stats = stats
        self._other: dict[str, str | None] = {}

    def __getitem__(self, path: str) -> str | None:
        if path in self._other:
            return self._other[path]
        packed = self._stats._packed.get(path)
        if packed is not None:
            dev, ino, ctime_ns = _PACKED.unpack(packed)[2:]
            if ino >= 0:
                return identity_text(dev, ino, ctime_ns)
        raise KeyError(path)

    def __setitem__(self, path: str, value: str | None) -> None:
        parts = identity_parts(value)
        packed = self._stats._packed.get(path)
        if parts is not None and packed is not None:
            self._stats._packed[path] = _pack(self._stats[path], parts)
            self._other.pop(path, None)
        else:
            self._other[path] = value

    def __delitem__(self, path: str) -> None:
        if path in self._other:
            del self._other[path]
            return
        packed = self._stats._packed.get(path)
        if packed is None or _PACKED.unpack(packed)[3] < 0:
            raise KeyError(path)
        self._stats._packed[path] = _pack(self._stats[path], _NONE)

    def __iter__(self) -> Iterator[str]:
        yield from self._other
        for path, packed in self._stats._packed.items():
            if path not in self._other and _PACKED.unpack(packed)[3] >= 0:
                yield path

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class Found:
    """What a walk found: files in walk order, their stats, which are links and the links' own stats."""

    files: list[str] = field(default_factory=list)
    stats: WalkedStats = field(default_factory=WalkedStats)
    links: set[str] = field(default_factory=set)
    link_stats: dict[str, Stat] = field(default_factory=dict)
    #: remote objects' ETags and local files' identities (``pin.identity``): a re-scan extracts a file again when it changed,
    #: and a record of another file than the walk saw is refused (``batch.same_as_walked``); kept in ``stats``
    etags: WalkedEtags = field(init=False)
    #: folders and remote roots that could not be listed, with why (an error row each)
    errors: dict[str, str] = field(default_factory=dict)
    #: catalogs found inside the scanned folders (a folder holding a ``_manifest.json``) and what lies beside them
    #: (``CATALOG.variables/``, ``CATALOG.references/``...): left out, not data
    catalogs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.etags = self.stats.etags


def _entry_stat(entry: os.DirEntry) -> tuple[Stat, Identity | None]:
    """(size, mtime) and identity of an entry, through links; (None, None) and None when it cannot be stat-ed."""
    try:
        st = entry.stat()
        return (st.st_size, st.st_mtime), identity_of(st)
    except OSError:
        return (None, None), None


#: entries one task lists before it hands the folders it has not entered back to the client
TASK_ENTRIES = 20_000


def list_folder(folder: str, root: str, include: Sequence[str], exclude: Sequence[str], hidden: bool, follow: bool,
                skip_ids: frozenset[tuple[int, int]], budget: int | None = None) -> Listing:
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
        try:
            if current != folder:  # a bind mount can loop without links: never enter a folder twice in one task
                st = os.stat(current)
                if (st.st_dev, st.st_ino) in entered:
                    continue
                entered.add((st.st_dev, st.st_ino))
            with os.scandir(current) as it:
                entries = list(it)
        except OSError as exc:
            out.errors.append((current, unlistable(exc)))
            continue
        listed += len(entries)
        catalogs = _catalog_entries(current, entries)
        if catalogs:
            out.catalogs.extend(catalogs)
            if current in catalogs:  # a catalog itself: nothing in it is data
                continue
            entries = [e for e in entries if e.path not in catalogs]
        if _is_one_file(entries):  # a Zarr store: one entry, never walked as files
            if _wanted(current, root, include, exclude):
                try:
                    size, mtime, inside = folder_stat(current)
                    listed += inside
                    out.files.append((current, (size, mtime), False, (None, None), identity_of(os.stat(current, follow_symlinks=False))))
                except OSError as exc:
                    out.errors.append((current, unlistable(exc)))
            continue
        deeper = []
        for entry in entries:
            what = kind(entry, hidden, follow)
            if what == "dir":
                if not _skipped(entry, skip_ids):
                    deeper.append(entry.path)
            elif what == "file" and _wanted(entry.path, root, include, exclude) and not (
                    entry.name.endswith(".json") and _skipped(entry, skip_ids)):  # the cost model
                link = entry.is_symlink()
                stat, found_as = _entry_stat(entry)
                out.files.append((entry.path, stat, link, file_stat(entry.path, follow=False) if link else (None, None), found_as))
        stack.extend(deeper)
        if follow or listed >= budget:  # the rest for other tasks
            for path in stack:
                try:
                    st = os.stat(path)
                except OSError as exc:
                    out.errors.append((path, unlistable(exc)))
                    continue
                out.folders.append((path, st.st_dev, st.st_ino))
            break
    return out


def _is_one_file(entries: list[os.DirEntry]) -> bool:
    """Whether a folder holding these entries is one file to a reader (``registry.folder_formats``: a Zarr store's
    ``zarr.json`` or ``.zgroup``, a regular file, hidden names included)."""
    from ..readers.registry import folder_formats

    markers = folder_formats()
    return bool(markers) and any(e.name in markers and e.is_file(follow_symlinks=False) for e in entries)


def _catalog_entries(folder: str, entries: list[os.DirEntry]) -> list[str]:
    """A catalog among a folder's entries: ``[folder]`` when it holds a ``_manifest.json`` (it is one); else the entries
    named ``X.anything`` beside a subfolder ``X`` that is a catalog (its variables, references, thumbnails, exports, cost
    model, batch jobs' folder). One stat per subfolder whose name starts another entry's, none otherwise."""
    from ..catalog.trust import MANIFEST

    if any(e.name == MANIFEST for e in entries):
        return [folder]
    folders = {e.name for e in entries if e.is_dir(follow_symlinks=False)}
    found: dict[str, bool] = {}
    out = []
    for entry in entries:
        name = entry.name
        for at in (i for i, c in enumerate(name) if c == "." and i):
            stem = name[:at]
            if stem in folders:
                if stem not in found:
                    found[stem] = os.path.isfile(os.path.join(folder, stem, MANIFEST))
                if found[stem]:
                    out.append(entry.path)
                    break
    out.extend(os.path.join(folder, stem) for stem, is_catalog in found.items() if is_catalog)
    return out


def unlistable(exc: OSError) -> str:
    """Why a folder could not be listed, in words, saying that nothing under it was scanned."""
    import errno

    why = {errno.ENAMETOOLONG: "its path is longer than this system allows (PATH_MAX)",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied",
           errno.EMFILE: "too many open files (raise ulimit -n)"}.get(exc.errno or 0, exc.strerror or str(exc))
    return f"folder not listed: {why}; nothing under it was scanned"


def _identities(paths: Sequence[str]) -> frozenset[tuple[int, int]]:
    """(device, inode) of each path that exists: what the walk skips (the catalog and its sidecars), by identity.

    Compared by identity, not by ``realpath``: a realpath costs a stat per
    component, and in a tree thousands of levels deep that made the walk
    cubic in its depth (1,500 levels: 40 s of stats).
    """
    out = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return frozenset(out)


def _skipped(entry: os.DirEntry, skip_ids: frozenset[tuple[int, int]]) -> bool:
    """Whether an entry is one of ``skip_ids`` (its inode comes free with the listing; a stat only when it matches one,
    or when it is a link, whose own inode is not its target's)."""
    if not skip_ids or (not entry.is_symlink() and all(entry.inode() != ino for _dev, ino in skip_ids)):
        return False
    try:
        st = entry.stat()
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in skip_ids


def walk_files(paths: Sequence[str | os.PathLike], include: Sequence[str] = (), exclude: Sequence[str] = (), hidden: bool = False,
               follow_symlinks: bool = False, skip: Sequence[str] = (), client: Any = None, workers: int | None = None) -> Found:
    """Every file under ``paths`` (files given directly are always listed), in tasks of ``list_folder``.

    Tasks run on ``client``'s workers when given, else on ``workers``
    threads here (``workers=0``: in this thread, one after another). Files come depth first, names
    sorted, whatever order the tasks finish in.
    """
    skip_ids = _identities(skip)
    found = Found()
    seen: set[tuple[int, int]] = set()
    own: Any = None
    if client is None:
        own = _Inline() if workers == 0 else ThreadPoolExecutor(workers or os.cpu_count() or 1, thread_name_prefix="metaextract-walk")
    try:
        for top in (os.fspath(p) for p in paths):
            if not os.path.isdir(top):
                _add(found, top, file_stat(top), os.path.islink(top), file_stat(top, follow=False), _identity(top))
                continue
            _walk_root(top, (tuple(include), tuple(exclude), hidden, follow_symlinks, skip_ids), seen, found, client, own)
    finally:
        if own is not None:
            own.shutdown()
    return found


class Listed:
    """Files listed so far by the walks of this process: what a scan's phase line counts while it walks."""

    count = 0


class _Inline:
    """An executor that runs each call in this thread when its result is asked for: the serial walk, through the same
    tasks, listing a folder when it takes it (listed when found, a tree's listings all waited in the queue at once:
    its every file as tuples, 250 bytes a file more at the walk's peak)."""

    def submit(self, fn: Any, *args: Any) -> Any:
        return _Later(fn, args)

    def shutdown(self) -> None:
        pass


class _Later:
    """A call made when its result is asked for; done at once for its callbacks (``_Inline``)."""

    def __init__(self, fn: Any, args: tuple[Any, ...]):
        self.fn, self.args = fn, args

    def add_done_callback(self, callback: Callable[[Any], Any]) -> None:
        callback(self)

    def result(self) -> Any:
        return self.fn(*self.args)


def _identity(path: str) -> Identity | None:
    try:
        return identity_of(os.stat(path))
    except OSError:
        return None


def _add(found: Found, path: str, stat: Stat, link: bool, link_stat: Stat, ident: Identity | None) -> None:
    found.files.append(path)
    _add_stat(found, path, stat, link, link_stat, ident)


def _add_stat(found: Found, path: str, stat: Stat, link: bool, link_stat: Stat, ident: Identity | None) -> None:
    """A file's stat and identity (and, for a link, the link's own), without its place in ``found.files``."""
    found.stats.put(path, stat, ident)
    if link:
        found.links.add(path)
        found.link_stats[path] = link_stat


def _walk_root(root: str, rules: tuple[Any, ...], seen: set[tuple[int, int]], found: Found, client: Any,
               own: ThreadPoolExecutor | None) -> None:
    """Submit the root's task, then each new subfolder's as answers arrive; add the files in walk order.

    ``rules``: what ``list_folder`` takes after the root (include, exclude, hidden, follow, skip_ids).
    """
    skip_ids = rules[-1]
    try:
        st = os.stat(root)
    except OSError:
        return
    if (st.st_dev, st.st_ino) in seen or (st.st_dev, st.st_ino) in skip_ids:
        return
    done: queue.Queue = queue.Queue()
    pending = 0

    def submit(folder: str) -> None:
        nonlocal pending
        args = (folder, root, *rules)
        fut: Any = client.submit(list_folder, *args, pure=False) if client is not None else own.submit(list_folder, *args)  # type: ignore[union-attr]
        fut.add_done_callback(done.put)
        pending += 1

    seen.add((st.st_dev, st.st_ino))
    submit(root)
    paths: list[str] = []
    while pending:
        fut = done.get()
        pending -= 1
        try:
            listing = fut.result()
        except Exception:  # noqa: BLE001 - a folder whose task failed lists nothing, like an unreadable one
            continue
        for path, stat, link, link_stat, ident in listing.files:  # packed as they come: a task's tuples are not kept
            paths.append(path)
            _add_stat(found, path, stat, link, link_stat, ident)
        Listed.count += len(listing.files)
        found.errors.update(listing.errors)
        found.catalogs.extend(listing.catalogs)
        for folder, dev, ino in listing.folders:
            if (dev, ino) not in seen:
                seen.add((dev, ino))
                submit(folder)
    # depth first, names sorted: the separator as the lowest character orders paths as their lists of components do
    paths.sort(key=lambda path: path.replace(os.sep, "\0"))
    found.files.extend(paths)


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
        from ..readers.registry import folder_formats
        from ..storage.listing import list_remote

        listing = list_remote(remote, include, exclude, hidden, client=client, folder_markers=frozenset(folder_formats()))
        for url in listing.files:
            if url not in found.stats:
                st = listing.stats[url]
                found.files.append(url)
                found.stats[url] = (st.size, st.mtime)
                found.etags[url] = st.etag
        found.errors.update(listing.errors)
    return found


def iter_files(paths: Sequence[str | os.PathLike], include: Sequence[str] = (), exclude: Sequence[str] = (),
               hidden: bool = False, follow_symlinks: bool = False, skip: Sequence[str] = ()) -> Iterator[str]:
    """Every file under ``paths`` (files given directly are always listed): ``walk_files``' tasks, in this thread."""
    yield from walk_files(paths, include, exclude, hidden, follow_symlinks, skip, workers=0).files


#: listings whose records carry more than the path, by the tool that writes them: (the record, the group that
#: is the path); a listing is read as one of them when every record matches it
_RECORDS = (
    # find -printf '%s %T@ %p\0': size, mtime, path
    (re.compile(rb"(\d+) (\d+(?:\.\d*)?) (.+)", re.S), 3),
    # mpiFileUtils' dwalk --text: mode, user, group, size, unit, "%b %e %Y %H:%M", path
    (re.compile(rb"([-dlpscb?][-rwxsStTlL]{9}[.+@]?) \S+ \S+ +\d+\.\d+ +[KMGTPE]?B [A-Z][a-z]{2} +\d{1,2} \d{4} \d\d:\d\d (.+)",
                re.S), 2),
    # dwalk --lite --text: Type=REG|DIR|LNK|UNK File=path
    (re.compile(rb"Type=([A-Z]{3}) File=(.+)", re.S), 2),
)


def read_listing(source: str) -> list[str]:
    """The paths of a listing a site's own walker made (``-``: standard input).

    One path per line (``lfs find``, ``find``); or NUL-separated paths
    (``find -print0``, names with newlines); or ``find -printf '%s %T@
    %p\\0'`` records; or mpiFileUtils' ``dwalk --text`` lines (with or without
    ``--lite``). Only the path of a record is taken (folders it marks as
    folders are left out), and it is stat-ed like a walked file's. Names are
    bytes, decoded as the walk decodes them (undecodable bytes kept).
    """
    import sys

    if source == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(source, "rb") as f:
            data = f.read()
    nul = b"\0" in data
    items = [x for x in data.split(b"\0" if nul else b"\n") if x and (nul or x != b"\r")]
    if not nul:
        items = [x[:-1] if x.endswith(b"\r") else x for x in items]
    for record, group in _RECORDS:
        found = [record.fullmatch(x) for x in items]
        if items and all(found):
            items = [m.group(group) for m in found if m is not None and not m.group(1).startswith((b"d", b"DIR"))]
            break
    return [os.fsdecode(x) for x in items]


def from_listing(paths: Sequence[str], roots: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = (),
                 hidden: bool = False, skip: Sequence[str] = ()) -> tuple[Found, int]:
    """(the listed files under ``roots``, as a walk of them finds them; how many listed paths were outside every root).

    A listing is input like any other: a path outside the folders the scan
    was given is not read. The rules are the walk's (hidden names, include /
    exclude globs, the catalog skipped); a listed folder is left out (list
    files, e.g. ``find -type f``). Each file is stat-ed as a walked one.
    """
    tops = [(root, os.path.abspath(root)) for root in roots if os.path.isdir(root)]
    skip_ids = _identities(skip)
    skipped = tuple(os.path.abspath(s).rstrip(os.sep) + os.sep for s in skip)
    found, outside = Found(), 0
    for listed in paths:
        full = os.path.abspath(listed)
        top = next(((root, base) for root, base in tops if full.startswith(base.rstrip(os.sep) + os.sep)), None)
        if top is None:
            outside += 1
            continue
        root, base = top
        rel = os.path.relpath(full, base)
        path = os.path.join(root, rel)
        if (not hidden and any(part.startswith(".") for part in rel.split(os.sep))) or not _wanted(path, root, include, exclude):
            continue
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and (stat_module.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) in skip_ids):
            continue
        if full.startswith(skipped):
            continue
        link = os.path.islink(path)
        _add(found, path, (st.st_size, st.st_mtime) if st is not None else (None, None), link,
             file_stat(path, follow=False) if link else (None, None), identity_of(st) if st is not None else None)
    return found, outside

