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

from ..core.errors import FileAccessError
from .remote import RemoteStat, access_error, filesystem, stat_from_info


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


def list_remote(roots: Sequence[str], include: Sequence[str] = (), exclude: Sequence[str] = (), hidden: bool = False) -> RemoteListing:
    """Every object under each root URL (a root naming one object lists that object; one ending in "/" is a prefix,
    for HTTP the links of its index page)."""
    out = RemoteListing()
    for root in roots:
        fs, path = filesystem(root)
        chain = _chain_prefix(root)
        try:
            info = {"type": "directory"} if root.endswith("/") else fs.info(path)  # an HTTP folder's page says "file"
            if info.get("type") == "directory":
                found = fs.find(path, detail=True, withdirs=False)
            else:
                found = {path: info}
        except FileNotFoundError:
            try:  # a prefix with no marker object: S3 answers info() with not-found, yet lists it
                found = fs.find(path, detail=True, withdirs=False)
            except Exception as exc:  # noqa: BLE001
                out.errors[root] = str(access_error(root, exc))
                continue
            if not found:
                out.errors[root] = str(FileAccessError(root, "no such object or prefix"))
                continue
        except Exception as exc:  # noqa: BLE001 - every store raises its own errors
            out.errors[root] = str(access_error(root, exc))
            continue
        base = path.rstrip("/")
        for name, entry in found.items():
            if entry.get("type") == "directory":
                continue
            rel = name[len(base):].lstrip("/") if name.startswith(base) else name.rsplit("/", 1)[-1]
            rel = rel or name.rsplit("/", 1)[-1]
            if not hidden and _hidden(rel):
                continue
            if not wanted(rel, include, exclude):
                continue
            url = object_url(fs, name, chain)
            if url not in out.stats:
                out.files.append(url)
                out.stats[url] = stat_from_info(entry)
    return out
