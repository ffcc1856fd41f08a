"""Telling a URL from a local path, without importing fsspec.

A path is remote when it names a protocol (``s3://``, ``https://``) or a
chain (``simplecache::s3://``, ``zip://member::archive.zip``). ``file://``
URLs are local paths and go the local way (``os.stat``, ``pread``).
"""

from __future__ import annotations

import functools
import os
import re

_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(path: str | os.PathLike) -> bool:
    """True for a path fsspec must open: a protocol other than file://, or a chain of known protocols.

    A local file named ``a::b`` stays local: a bare first link of a chain
    (``simplecache::...``) must be a protocol fsspec knows.
    """
    if not isinstance(path, str) or ("://" not in path and "::" not in path):
        return False
    first = path.split("::", 1)[0]
    if _PROTOCOL.match(first):
        return not first.startswith("file://") or "::" in path
    if "::" in path and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", first):
        from fsspec.registry import known_implementations

        return first in known_implementations
    return False


def local_path(path: str | os.PathLike) -> str:
    """A ``file://`` URL as a plain path; anything else unchanged."""
    text = os.fspath(path)
    return text[len("file://"):] if isinstance(text, str) and text.startswith("file://") else text


def basename(url: str) -> str:
    """The last name of a URL's innermost object (``zip://a/b.nc::x.zip`` -> ``b.nc``)."""
    first = next((part for part in url.split("::") if "://" in part), url)
    tail = first.split("://", 1)[-1].split("?", 1)[0].rstrip("/")
    return tail.rsplit("/", 1)[-1]


@functools.lru_cache(maxsize=256)
def extension(path: str) -> str:
    """The lower-case extension of a path or URL's object name (remembered for the last few paths: a small file's
    detection asks it three times)."""
    name = basename(path) if is_url(path) else os.path.basename(path)
    return os.path.splitext(name)[1].lower()


def absolute(path: str) -> str:
    """A local path made absolute; a URL as it is (``os.path.abspath("s3://b/k")`` would make it a local name)."""
    return path if is_url(path) else os.path.abspath(path)


#: container suffixes whose members a scan with --into-archives lists (compressed tars are not: no random access)
ARCHIVE_SUFFIXES = {".zip": "zip", ".tar": "tar"}


def container_of(path: str) -> str | None:
    """The container of a member URL (``zip://a.nc::/data/x.zip`` -> ``/data/x.zip``), or None."""
    first, sep, rest = path.partition("::")
    return rest if sep and first.split("://", 1)[0] in ARCHIVE_SUFFIXES.values() and "://" in first else None
