"""A file pinned for the time it is read: every library reads the file the scan identified, whatever its name does meanwhile.

A folder's owner can swap a file for a link to a file they cannot read
between the moment a scan (run by someone who can) looks at it and the moment
a library opens it. So a local file's identity (device, inode, change time:
``identity``) is taken when it is probed, from the descriptor the probe read;
each later step that reads the file (planning, chunks, the record) opens the
name once, checks the descriptor is that same file (``pinned``), and hands the
libraries ``/proc/self/fd/N`` (``opened``), which names that descriptor's file
and nothing else. A name that now leads elsewhere is a ``FileChangedError``.
The change time also catches a rewrite that kept the size and put the
modification time back (it cannot be set by a user).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from typing import Any, Iterator

_local = threading.local()

#: the prefix of a local file's identity (the catalog's ``etag`` column holds it; a remote object's ETag never has it)
LOCAL = "local:"


def identity(st: os.stat_result) -> str:
    """A local file's identity: its device, inode and change time (``local:DEV:INO:CTIME_NS``)."""
    return identity_text(*identity_of(st))


def identity_of(st: os.stat_result) -> tuple[int, int, int]:
    """What a local file's identity is made of: (device, inode, change time in nanoseconds)."""
    return st.st_dev, st.st_ino, st.st_ctime_ns


def identity_text(dev: int, ino: int, ctime_ns: int) -> str:
    return f"{LOCAL}{dev}:{ino}:{ctime_ns}"


def identity_parts(value: Any) -> tuple[int, int, int] | None:
    """(device, inode, change time) of an identity (``identity_text`` gives it back), or None for anything else."""
    if not is_identity(value):
        return None
    parts = value[len(LOCAL):].split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    dev, ino, ctime_ns = map(int, parts)
    return (dev, ino, ctime_ns) if max(dev, ino, ctime_ns) < 2**63 else None


def is_identity(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(LOCAL)


def _pins() -> dict[str, int]:
    pins = getattr(_local, "pins", None)
    if pins is None:
        pins = _local.pins = {}
    return pins


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Within this block, a file pinned here stays pinned until the block ends, not only for its ``pinned`` block.

    A small file is planned and summarized in one session with one open of
    the file (``readers.arrays.one_open``): a library handle opened through
    ``/proc/self/fd/N`` while planning is used again while summarizing, and
    its name must still be that descriptor.
    """
    if getattr(_local, "held", None) is not None:
        yield
        return
    _local.held = []
    try:
        yield
    finally:
        held, _local.held = _local.held, None
        pins = _pins()
        heads = _heads()
        for path, fd in held:
            pins.pop(path, None)
            heads.pop(path, None)
            os.close(fd)


@contextlib.contextmanager
def pinned(path: str, expected: str | None) -> Iterator[None]:
    """Hold ``path`` open while the block reads it, refusing it when it is not the file ``expected`` identifies.

    A no-op for URLs, archive members and files without a local identity
    (``expected`` None), and when this thread already holds the path.
    """
    from .errors import FileChangedError, describe

    pins = _pins()
    if not is_identity(expected) or path in pins:
        yield
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FileChangedError(path, f"file disappeared before it was read: {describe(exc)}") from exc
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) or identity(st) != expected:  # a folder: a Zarr store
            raise FileChangedError(path, "file replaced since it was identified (another inode, or changed): "
                                         "its name now leads to another file, which was not read")
        pins[path] = fd
    except BaseException:
        os.close(fd)
        raise
    held = getattr(_local, "held", None)
    if held is not None:  # a session: closed when it ends
        held.append((path, fd))
        yield
        return
    try:
        yield
    finally:
        pins.pop(path, None)
        os.close(fd)


def _heads() -> dict[str, bytes]:
    heads = getattr(_local, "heads", None)
    if heads is None:
        heads = _local.heads = {}
    return heads


def adopt(path: str, fd: int, head: bytes | None = None) -> bool:
    """Within a ``session``, keep the probe's descriptor ``fd`` of ``path`` as its pin (its identity is the one the probe
    took from it), and ``head``, the first bytes the probe read through it (``first_bytes``): True, and the session
    closes it. Outside a session, or when ``path`` is already pinned, False."""
    held = getattr(_local, "held", None)
    pins = _pins()
    if held is None or path in pins:
        return False
    pins[path] = fd
    held.append((path, fd))
    if head is not None:
        _heads()[path] = head
    return True


def first_bytes(path: str) -> bytes | None:
    """The first bytes the probe of the pinned ``path`` read (what told its format), or None."""
    return _heads().get(path)


def descriptor(path: str) -> int | None:
    """The pinned descriptor of ``path`` in this thread, for reading it directly (``os.pread``), or None."""
    return _pins().get(path)


def opened(path: str) -> str:
    """What to hand a library that opens ``path``: the pinned descriptor's ``/proc/self/fd/N`` when this thread holds one."""
    fd = _pins().get(path)
    return f"/proc/self/fd/{fd}" if fd is not None else path


def original(name: str) -> str:
    """The file's own path for a name ``opened`` gave a library (what ``h5py.File.filename`` then says), else ``name``."""
    for path, fd in _pins().items():
        if name == f"/proc/self/fd/{fd}":
            return path
    return name


def inherited(path: str) -> tuple[int, ...]:
    """The descriptor a child process must inherit for ``opened(path)`` to name the same file there (``pass_fds``)."""
    fd = _pins().get(path)
    return (fd,) if fd is not None else ()
