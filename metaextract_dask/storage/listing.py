"""Listing remote prefixes: every object under a URL with its size, mtime and ETag, in one paginated listing.

``fs.find(detail=True)`` returns each object's size and identity with the
listing (an S3 ListObjectsV2 page holds 1,000), so no object is stat-ed a
second time. The discovery rules are the local walk's: hidden names (any
component starting with ".") skipped unless asked for, include and exclude
globs on the name or the path below the root.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Sequence

from .remote import RemoteStat, access_error, collapse_folders, filesystem, stat_from_info


@dataclass
class RemoteListing:
    """Objects found under remote roots, in listing order."""

    files: list[str] = field(default_factory=list)
    stats: dict[str, RemoteStat] = field(default_factory=dict)
    #: roots that could not be listed, with why (each becomes a failure row)
    errors: dict[str, str] = field(default_factory=dict)


def _chain_prefix(root: str) -> str:
    """The links of a chained URL before the one the filesystem lists (``simplecache::`` of ``simplecache::s3://...``)."""
    parts = root.split("::")
    first = next((i for i, p in enumerate(parts) if "://" in p), 0)
    return "".join(p + "::" for p in parts[:first])


def wanted(rel: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """The local walk's include/exclude rule: a glob matches the object's name or its path below the root."""
    if not include and not exclude:
        return True
    name = rel.rsplit("/", 1)[-1]
    match = lambda pats: any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in pats)  # noqa: E731
    return (not include or match(include)) and not match(exclude)


def object_url(fs: Any, path: str, chain: str) -> str:
    """The URL a listed path is read back by."""
    url = path if "://" in path else fs.unstrip_protocol(path)
    return chain + url


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/") if part)


@dataclass
class PrefixPage:
    """One listing task's answer: the objects directly under a prefix (URL, identity) and its sub-prefixes."""

    objects: list[tuple[str, RemoteStat]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    error: str | None = None


def list_prefix(prefix: str, chain: str, storage_options: dict[str, Any], timeout: float | None = None) -> PrefixPage:
    """The task: one ``ls(detail=True)`` of a prefix (one S3 ListObjectsV2 call with a delimiter per 1,000 keys;
    one index page over HTTP). Runs where it is submitted, building its filesystem from the storage options;
    each request times out after ``timeout`` seconds."""
    from .remote import using

    page = PrefixPage()
    with using(storage_options, timeout):
        fs, path = filesystem(chain + prefix if chain else prefix)
        try:
            fs.invalidate_cache(path)  # s3fs keeps listings for the process's life: a notebook's second scan must see today's
            entries = fs.ls(path, detail=True)
        except Exception as exc:  # noqa: BLE001 - every store raises its own errors
            page.error = str(access_error(prefix, exc))
            return page
    for entry in entries:
        name = entry.get("name", "")
        if entry.get("type") == "directory":
            page.prefixes.append(object_url(fs, name.rstrip("/") + "/", ""))
        else:
            page.objects.append((object_url(fs, name, chain), stat_from_info(entry)))
    return page


def list_remote(roots: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = (), hidden: bool = False,
                client: Any = None, threads: int = 8, folder_markers: frozenset[str] = frozenset()) -> RemoteListing:
    """Every object under each root URL: one listing task per prefix, on ``client``'s workers or ``threads`` here.

    A root naming one object lists that object; a root ending in "/" (or
    that the store says is a directory) is a prefix, for HTTP the links of
    its index page. A prefix holding one of ``folder_markers`` (a Zarr
    store's ``zarr.json``) is one entry (``folders.collapse_folders``). Sub-prefixes are submitted as their parents' answers
    arrive (a hidden one is not entered unless ``hidden``); objects come
    back in sorted order, whatever order the tasks finish in.
    """
    import queue
    import time
    from concurrent.futures import ThreadPoolExecutor

    from .remote import _OPTIONS, request_timeout

    options = dict(_OPTIONS.get())
    timeout = request_timeout()
    budget, max_depth = listing_limits(timeout)
    out = RemoteListing()
    pool = ThreadPoolExecutor(threads, thread_name_prefix="metaextract-list") if client is None else None
    try:
        for root in roots:
            fs, path = filesystem(root)
            chain = _chain_prefix(root)
            if not root.endswith("/"):
                try:
                    info = fs.info(path)
                except FileNotFoundError as exc:
                    refused = _refused(root, exc)
                    if refused is not None:
                        out.errors[root] = str(refused)
                        continue
                    info = {"type": "directory"}  # S3 has no folder objects: a prefix answers "not found", and lists
                except Exception as exc:  # noqa: BLE001
                    out.errors[root] = str(access_error(root, exc))
                    continue
                if info.get("type") != "directory":
                    out.files.append(root)
                    out.stats[root] = stat_from_info(info)
                    continue
            base = object_url(fs, path.rstrip("/") + "/", "") if "://" not in path else path.rstrip("/") + "/"
            found: list[tuple[str, RemoteStat]] = []

            arrived: queue.Queue = queue.Queue()

            def submit(prefix: str) -> None:
                fut = pool.submit(list_prefix, prefix, chain, options, timeout) if pool is not None else \
                    client.submit(list_prefix, prefix, chain, options, timeout, pure=False)
                fut.add_done_callback(arrived.put)

            submit(base)
            pending, first_error, cut = 1, None, None
            ends = time.monotonic() + budget
            while pending:
                try:
                    done = arrived.get(timeout=max(0.0, ends - time.monotonic()))
                except queue.Empty:  # a tree without end, or a server that stopped answering: what was found is scanned
                    cut = f"listing stopped after {budget:g} s (metaextract.remote.listing-timeout) with {pending} prefixes " \
                          f"unanswered; the {len(found)} objects found were scanned, the rest were not"
                    break
                pending -= 1
                try:
                    page = done.result()
                except Exception as exc:  # noqa: BLE001 - a task that failed lists nothing, like an unreadable prefix
                    first_error = first_error or f"{root}: listing failed: {type(exc).__name__}: {exc}"
                    continue
                if page.error:
                    first_error = first_error or page.error
                    continue
                found.extend(page.objects)
                for sub in page.prefixes:
                    rel = sub[len(base):] if sub.startswith(base) else sub
                    if rel.count("/") > max_depth:
                        cut = cut or f"prefixes deeper than {max_depth} levels (metaextract.remote.max-depth) were not listed"
                    elif hidden or not _hidden(rel):
                        submit(sub)
                        pending += 1
            if not found and first_error:
                out.errors[root] = first_error
            elif cut:
                out.errors[root] = f"{root}: {cut}"
            for url, st in collapse_folders(sorted(found), folder_markers):  # a Zarr store under a prefix: one entry
                rel = url[len(chain):][len(base):] if url[len(chain):].startswith(base) else url.rsplit("/", 1)[-1]
                if (not hidden and _hidden(rel)) or not wanted(rel, include, exclude) or url in out.stats:
                    continue
                out.files.append(url)
                out.stats[url] = st
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)  # a request still hanging ends by its own timeout
    return out


def _refused(root: str, exc: BaseException) -> Any:
    """The redirect refusal (``remote.RedirectRefused``) behind a "not found", as the root's error, or None."""
    from .remote import RedirectRefused, access_error

    seen, e = 0, exc.__cause__ or exc.__context__
    while e is not None and seen < 8:
        if isinstance(e, RedirectRefused):
            return access_error(root, e)
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def listing_limits(timeout: float) -> tuple[float, int]:
    """(seconds to list one root, deepest prefix level listed) from ``metaextract.remote``; the file timeout by default."""
    from ..core.settings import setting

    budget = setting("remote.listing-timeout")
    return (float(timeout) if budget is None else float(budget)), int(setting("remote.max-depth"))
