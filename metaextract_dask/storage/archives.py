"""Members of zip and tar files as URLs of their own (``zip://member::archive.zip``), read in place.

fsspec's zip and tar filesystems read a member through the container's file
object: an uncompressed member (a stored zip entry, any plain tar entry) is
read with seeks into the container, a deflated zip entry by decompressing
from its start. Nothing is extracted to disk. Only regular members are
listed (no links, no folders); a member whose name is odd (empty, ``..``,
``::``) or that decompresses far beyond its stored size is not read: it gets
an error row, and the container's record says so too.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from ..core.options import Selection
from .remote import RemoteStat, stat_from_info
from .urls import ARCHIVE_SUFFIXES


def archive_kind(path: str) -> str | None:
    """"zip" or "tar" for a container a scan looks into, by its name; None otherwise."""
    from .urls import extension

    return ARCHIVE_SUFFIXES.get(extension(path))


def member_url(kind: str, member: str, container: str) -> str:
    """The chained URL of one member (the container a path or a URL)."""
    return f"{kind}://{member}::{container}"


def _limits() -> tuple[float, int, int]:
    from ..core.settings import setting

    return float(setting("archives.max-ratio")), setting("archives.ratio-above"), setting("archives.max-member-size")


def odd_name(name: str) -> str | None:
    """Why a member's name cannot be a row of its own (empty, leaving the archive, holding ``::``), or None."""
    parts = name.split("/")
    if not name.strip("/"):
        return "its name is empty"
    if name.startswith("/") or ".." in parts:
        return "its name leads outside the archive (absolute, or through '..')"
    if "::" in name:
        return "its name holds '::', which a chained URL cannot carry"
    return None


def _entries(kind: str, f: Any) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(name, type, stored size, info) of every entry, from the zip's central directory or the tar's headers: one
    pass, whatever the names (an empty one, ``..``, ``::``). ``info`` holds what fsspec's own ``info`` gives (size,
    zip date and CRC, tar mtime), so ``stat_from_info`` makes the same identity a member's probe does."""
    import tarfile
    import zipfile

    out: list[tuple[str, str, int, dict[str, Any]]] = []
    if kind == "zip":
        with zipfile.ZipFile(f) as z:
            for i in z.infolist():
                kind_of = "directory" if i.filename.endswith("/") else "file"  # ZipInfo.is_dir() fails on an empty name
                out.append((i.filename, kind_of, i.compress_size, {"size": i.file_size, "date_time": i.date_time, "CRC": i.CRC}))
    else:
        with tarfile.open(fileobj=f, mode="r:") as t:
            for m in t:
                kind_of = "file" if m.isreg() else "directory" if m.isdir() else "link" if m.issym() or m.islnk() else "special file"
                out.append((m.name, kind_of, m.size, {"size": m.size, "mtime": m.mtime}))
    return out


def list_members(container: str, storage_options: dict[str, Any] | None = None,
                 kind: str | None = None) -> tuple[list[tuple[str, RemoteStat]], list[tuple[str, str]]]:
    """([(member URL, stat)], [(member URL, why it is not read)]) of a zip or tar container (``kind``: by its name).

    Members are listed in one pass over the container's directory (linear
    in their number). A member is not read, and gets an error row of its
    own, when its name is odd (``odd_name``: the URL then carries it
    percent-encoded) or when it would decompress to more than
    ``archives.max-ratio`` times its stored size (above
    ``archives.ratio-above``) or more than ``archives.max-member-size``:
    a zip bomb costs a look at its directory, not the file's timeout.
    Folders and links are not members.
    """
    from urllib.parse import quote

    from .remote import filesystem, using

    kind = kind or archive_kind(container)
    if kind is None:
        return [], []
    max_ratio, ratio_above, max_size = _limits()
    with using(storage_options):
        fs, inner = filesystem(container)
        with fs.open(inner, "rb") as f:
            entries = _entries(kind, f)
    out, odd = [], []
    for name, what, stored, info in sorted(entries, key=lambda e: e[0]):
        if what != "file":
            continue
        size = int(info["size"])
        why = odd_name(name)
        if why is None and size > ratio_above and size > max_ratio * max(stored, 1):
            why = (f"it would decompress {stored} bytes into {size} ({size / max(stored, 1):.0f}:1), more than "
                   f"metaextract.archives.max-ratio ({max_ratio:g}:1): not read (a zip bomb?)")
        elif why is None and size > max_size:
            why = f"it holds {size} bytes, more than metaextract.archives.max-member-size ({max_size}): not read"
        if why is not None:
            odd.append((member_url(kind, quote(name, safe="/") or "%00empty", container), f"member {name!r}: {why}"))
        else:
            out.append((member_url(kind, name, container), stat_from_info(info)))
    return out, odd


def add_members(files: list[str], stats: MutableMapping[str, Any], etags: MutableMapping[str, str | None], storage_options: dict[str, Any] | None,
                selection: Selection | None = None, errors: dict[str, str] | None = None) -> list[str]:
    """Each zip and tar among ``files`` followed by its members' URLs (with their stats), in place; members that
    are not read (``list_members``) go into ``errors`` (an error row each). Returns the containers whose members
    could not be listed (their own rows say why)."""
    from .listing import wanted

    pick = selection or Selection()
    out, failed = [], []
    for path in files:
        out.append(path)
        if archive_kind(path) is None:
            continue
        try:
            members, odd = list_members(path, storage_options)
        except Exception:  # noqa: BLE001 - a damaged or unreadable container: its own row has the error
            failed.append(path)
            continue
        if errors is not None:
            errors.update(odd)
        for url, st in members:
            rel = url.split("::", 1)[0].split("://", 1)[1]
            if (not pick.hidden and any(part.startswith(".") for part in rel.split("/"))) or not wanted(rel, pick.include, pick.exclude):
                continue
            out.append(url)
            stats[url] = (st.size, st.mtime)
            etags[url] = st.etag
    files[:] = out
    return failed
