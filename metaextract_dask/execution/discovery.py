"""Finding the files to scan: directories walked safely.

Hidden names are skipped unless asked for; directory symlinks are followed
only on request and then never twice (no loops); anything that is not a
directory is listed, FIFOs and broken links included, so each gets a record.
The walk (``walk.list_folder``) keeps its own stack: a tree thousands of
levels deep is no deeper for it than a flat one.

Symbolic links to files are not followed out of the scanned folders:
``split_links`` turns a link whose target lies outside them into a record of
the link (its target's path, nothing read), and drops a link to a file that
is scanned anyway, so each real file has one record.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Sequence


def _wanted(path: str, root: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if not include and not exclude:
        return True  # the common case, without relpath's cost for each file
    name, rel = os.path.basename(path), os.path.relpath(path, root)
    match = lambda pats: any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in pats)  # noqa: E731
    return (not include or match(include)) and not match(exclude)


def kind(entry: os.DirEntry, hidden: bool, follow: bool) -> str | None:
    """"dir" (walked into), "file" (listed: anything not a folder, FIFOs and broken links included) or None (a hidden name)."""
    if not hidden and entry.name.startswith("."):
        return None
    try:
        return "dir" if entry.is_dir(follow_symlinks=follow) else "file"
    except OSError:
        return "file"


def _inside(real: str, roots: Sequence[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _real(path: str) -> str:
    """``realpath``, or the path made absolute when it changes under the look (a link swapped for a file between
    ``lstat`` and ``readlink`` raises EINVAL): what is read then is decided when it is read (``core.pin``)."""
    try:
        return os.path.realpath(path)
    except OSError:
        return os.path.abspath(path)


def split_links(files: Sequence[str], roots: Sequence[str | os.PathLike], follow: bool = False,
                linked: set[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """(files to extract, {link: target} recorded as links and not followed).

    Without ``follow``, a symbolic link whose target is outside ``roots`` (or
    a folder, which is not walked) is recorded as a link; a link to a file
    that is scanned under its own name is dropped; broken links stay (they
    get an error record). With ``follow``, links are read through, and each
    real file is still extracted once. ``linked``: which of ``files`` are
    links, when the walk already knows (no lstat per file then).
    """
    linked = {f for f in files if os.path.islink(f)} if linked is None else linked & set(files)
    if not linked:  # the common case: no realpath per file
        return list(files), {}
    real_roots = [_real(os.fspath(r)) for r in roots]
    plain = {_real(f) for f in files if f not in linked}
    keep: list[str] = []
    links: dict[str, str] = {}
    seen: set[str] = set()
    for path in files:
        if path not in linked:
            keep.append(path)
            continue
        real = _real(path)
        if not os.path.exists(real):
            keep.append(path)  # broken or a loop: its record says so
        elif real in plain or real in seen:
            continue  # the same file is scanned under another name
        elif not follow and (os.path.isdir(real) or not _inside(real, real_roots)):
            links[path] = real
        else:
            seen.add(real)
            keep.append(path)
    return keep, links
