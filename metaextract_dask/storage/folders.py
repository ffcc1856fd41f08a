"""A local folder that is one file to a reader (a Zarr store): its size and time, as a file's would be."""

from __future__ import annotations

import os
import stat


def folder_stat(path: str) -> tuple[int, float, int]:
    """(bytes, latest modification time, entries) of a folder that is one file: every regular file under it summed,
    the latest time of any entry (a chunk rewritten, added or removed changes it); links are neither followed nor
    counted (the reader refuses them too)."""
    size, latest, entries = 0, os.lstat(path).st_mtime, 0
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    latest = max(latest, st.st_mtime)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif stat.S_ISREG(st.st_mode):
                        size += st.st_size
        except OSError:
            continue
    return size, latest, entries
