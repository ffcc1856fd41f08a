"""Finding the files to scan: directories walked safely.

Hidden names are skipped unless asked for; directory symlinks are followed
only on request and then never twice (no loops); anything that is not a
directory is listed, FIFOs and broken links included, so each gets a record.
"""

from __future__ import annotations

import fnmatch
import os
from typing import Iterator, Sequence


def _wanted(path: str, root: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    name, rel = os.path.basename(path), os.path.relpath(path, root)
    match = lambda pats: any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in pats)  # noqa: E731
    return (not include or match(include)) and not match(exclude)


def iter_files(paths: Sequence[str | os.PathLike], include: Sequence[str] = (), exclude: Sequence[str] = (),
               hidden: bool = False, follow_symlinks: bool = False, skip: Sequence[str] = ()) -> Iterator[str]:
    """Every file under ``paths`` (files given directly are always listed)."""
    skip_real = {os.path.realpath(s) for s in skip}
    seen_dirs: set[tuple[int, int]] = set()
    for top in paths:
        top = os.fspath(top)
        if not os.path.isdir(top):
            yield top
            continue
        yield from _walk(top, top, include, exclude, hidden, follow_symlinks, skip_real, seen_dirs)


def _walk(folder: str, root: str, include, exclude, hidden: bool, follow: bool, skip_real: set[str], seen: set) -> Iterator[str]:
    try:
        st = os.stat(folder)
    except OSError:
        return
    if (st.st_dev, st.st_ino) in seen or os.path.realpath(folder) in skip_real:
        return
    seen.add((st.st_dev, st.st_ino))
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if not hidden and entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=follow)
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(entry.path, root, include, exclude, hidden, follow, skip_real, seen)
        elif _wanted(entry.path, root, include, exclude):
            yield entry.path
