"""Members of zip and tar files as URLs of their own (``zip://member::archive.zip``), read in place.

fsspec's zip and tar filesystems read a member through the container's file
object: an uncompressed member (a stored zip entry, any plain tar entry) is
read with seeks into the container, a deflated zip entry by decompressing
from its start. Nothing is extracted to disk. Only regular members are
listed (no links, no folders); a member whose name could not be written as a
URL (it holds ``::``) is left out and said in the container's record.
"""

from __future__ import annotations

from typing import Any

from .remote import RemoteStat, stat_from_info

#: container suffixes whose members a scan with --into-archives lists (compressed tars are not: no random access)
ARCHIVE_SUFFIXES = {".zip": "zip", ".tar": "tar"}


def archive_kind(path: str) -> str | None:
    """"zip" or "tar" for a container a scan looks into, by its name; None otherwise."""
    from .urls import extension

    return ARCHIVE_SUFFIXES.get(extension(path))


def member_url(kind: str, member: str, container: str) -> str:
    """The chained URL of one member (the container a path or a URL)."""
    return f"{kind}://{member}::{container}"


def list_members(container: str, storage_options: dict[str, Any] | None = None,
                 kind: str | None = None) -> tuple[list[tuple[str, RemoteStat]], list[str]]:
    """([(member URL, stat)], [members left out, with why]) of a zip or tar container (``kind``: by its name if not given)."""
    from .remote import filesystem, using

    kind = kind or archive_kind(container)
    if kind is None:
        return [], []
    with using(storage_options):
        fs, _ = filesystem(member_url(kind, "", container))
        found = fs.find("", detail=True, withdirs=False)
    out, skipped = [], []
    for name, entry in sorted(found.items()):
        if entry.get("type") != "file":
            skipped.append(f"{name}: a {entry.get('type')}, not a regular member")
        elif "::" in name:
            skipped.append(f"{name}: its name holds '::', which a chained URL cannot carry")
        else:
            out.append((member_url(kind, name.lstrip("/"), container), stat_from_info(entry)))
    return out, skipped


def container_of(path: str) -> str | None:
    """The container of a member URL (``zip://a.nc::/data/x.zip`` -> ``/data/x.zip``), or None."""
    first, sep, rest = path.partition("::")
    return rest if sep and first.split("://", 1)[0] in ARCHIVE_SUFFIXES.values() and "://" in first else None


def add_members(files: list[str], stats: dict[str, Any], etags: dict[str, str | None], storage_options: dict[str, Any] | None,
                include: Any = (), exclude: Any = (), hidden: bool = False) -> list[str]:
    """Each zip and tar among ``files`` followed by its members' URLs (with their stats), in place; returns
    the containers whose members could not be listed (their own rows say why)."""
    from .listing import wanted

    out, failed = [], []
    for path in files:
        out.append(path)
        if archive_kind(path) is None:
            continue
        try:
            members, _ = list_members(path, storage_options)
        except Exception:  # noqa: BLE001 - a damaged or unreadable container: its own row has the error
            failed.append(path)
            continue
        for url, st in members:
            rel = url.split("::", 1)[0].split("://", 1)[1]
            if (not hidden and any(part.startswith(".") for part in rel.split("/"))) or not wanted(rel, include, exclude):
                continue
            out.append(url)
            stats[url] = (st.size, st.mtime)
            etags[url] = st.etag
    files[:] = out
    return failed
