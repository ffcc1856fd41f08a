"""The cheap look at a file before anything is planned.

Checks the kind of file with ``stat`` before opening it, so a FIFO, socket or
device never blocks a worker, and turns every OS error into a
``FileAccessError`` that names the path in plain words.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

from ..core import pin
from ..core.errors import EmptyFileError, FileAccessError, FileChangedError, MetaExtractError
from ..core.model import FileInfo
from ..core.pin import identity
from ..storage.folders import folder_stat
from ..storage.urls import is_url, local_path
from .detect import HEAD_BYTES, detect, refine

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _access_error(path: str, exc: OSError) -> FileAccessError:
    if exc.errno == errno.ENOENT:
        if os.path.islink(path):
            return FileAccessError(path, "broken symbolic link (its target does not exist)")
        return FileAccessError(path, "no such file")
    if exc.errno == errno.ELOOP:
        return FileAccessError(path, "symbolic link loop")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return FileAccessError(path, "permission denied (the file is not readable by this user)")
    if exc.errno == errno.ENAMETOOLONG:
        return FileAccessError(path, "file name too long")
    return FileAccessError(path, f"cannot open: {exc.strerror or exc}")


def file_stat(path: str, follow: bool = True) -> tuple[int | None, float | None]:
    """(size, mtime), of the link itself when ``follow`` is false; (None, None) when it cannot be stat-ed."""
    try:
        st = os.stat(path, follow_symlinks=follow)
        return st.st_size, st.st_mtime
    except OSError:
        return None, None


def check_regular(path: str) -> os.stat_result:
    """stat the path and insist on a non-empty regular file."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _access_error(path, exc) from exc
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        raise FileAccessError(path, f"not a regular file: it is {_KINDS.get(kind, 'a special file')}")
    if st.st_size == 0:
        raise EmptyFileError(path, "empty file (0 bytes): nothing to extract")
    return st


def read_head(path: str, nbytes: int = HEAD_BYTES) -> bytes:
    """The first bytes of a regular file, opened without blocking (of a remote object: one ranged request)."""
    if is_url(path):
        from ..storage.remote import read_range

        return read_range(path, 0, nbytes)
    held = pin.descriptor(path)
    if held is not None:  # pinned since its probe: what the probe read through that descriptor, or that descriptor
        head = pin.first_bytes(path)
        if head is not None and nbytes <= HEAD_BYTES:
            return head[:nbytes]
        return os.pread(held, nbytes, 0)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise _access_error(path, exc) from exc
    try:
        return os.pread(fd, nbytes, 0)
    except OSError as exc:
        raise _access_error(path, exc) from exc
    finally:
        os.close(fd)


def folder_format(path: str) -> str | None:
    """The format of a folder that is one file (a Zarr store: ``registry.folder_formats``), None for anything else. A
    link to a folder is not one: the marker is looked for in the folder itself, as a regular file."""
    from .registry import folder_formats

    markers = folder_formats()
    try:
        if not markers or not stat.S_ISDIR(os.lstat(path).st_mode):
            return None
    except OSError:
        return None
    for name, fmt in markers.items():
        try:
            if stat.S_ISREG(os.lstat(os.path.join(path, name)).st_mode):
                return fmt
        except OSError:
            continue
    return None


def _probe_folder(path: str, fmt: str) -> FileInfo:
    """FileInfo of a folder that is one file: its contents' size and latest time, the folder's own identity (what
    ``pin`` holds while it is read)."""
    from .detect import DESCRIPTIONS

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise _access_error(path, exc) from exc
    kept = False
    try:
        st = os.fstat(fd)
        size, mtime, _ = folder_stat(path)
        kept = pin.adopt(path, fd)
    finally:
        if not kept:
            os.close(fd)
    return FileInfo(path=path, size=size, mtime=mtime, format=fmt, description=DESCRIPTIONS.get(fmt, fmt), etag=identity(st))


def probe(path: str | os.PathLike) -> FileInfo:
    """FileInfo for ``path``, or a clear error saying why it cannot be read."""
    path = local_path(path)
    if is_url(path):
        return probe_remote(path)
    try:
        check_regular(path)  # by name first: a FIFO or a device is never opened
    except FileAccessError:
        fmt = folder_format(path)
        if fmt is None:
            raise
        return _probe_folder(path, fmt)

    def read(fd: int, st: os.stat_result) -> tuple[FileInfo, bytes]:
        head = os.pread(fd, HEAD_BYTES, 0)
        return _local_info(path, st, head, lambda offset, n: os.pread(fd, n, offset)), head

    return _read_opened(path, read)


def probe_whole(path: str, limit: int) -> tuple[FileInfo, bytes] | None:
    """``probe`` of a local file of at most ``limit`` bytes, with its bytes: the whole file, read in the probe's one
    open (``execution.batch.extract_plain`` reads many small files so). None for a larger file or a URL: ``probe`` it
    instead. What is not a regular file raises as ``probe``'s check does (a folder that is one file too); a file
    that changed size while read is a ``FileChangedError``."""
    path = local_path(path)
    if is_url(path) or check_regular(path).st_size > limit:  # by name first: a FIFO or a device is never opened
        return None

    def read(fd: int, st: os.stat_result) -> tuple[tuple[os.stat_result, bytes] | None, bytes | None]:
        if st.st_size > limit:
            return None, None
        data = os.pread(fd, st.st_size + 1, 0)  # one byte more tells whether it grew
        if len(data) != st.st_size:
            raise FileChangedError(path, f"file changed size while being read ({st.st_size} -> {len(data)} bytes or more)")
        return (st, data), data[:HEAD_BYTES]

    found = _read_opened(path, read)
    if found is None:
        return None
    st, data = found
    return _local_info(path, st, data[:HEAD_BYTES], lambda offset, n: data[offset : offset + n]), data


def _read_opened(path: str, read: Callable[[int, os.stat_result], tuple[Any, bytes | None]]) -> Any:
    """Open ``path`` without blocking, check it is still a non-empty regular file, and ``read(fd, stat)``: (its answer,
    the first bytes read through ``fd``, or None). With first bytes, in a session (a small file's one open), the
    descriptor is kept as the file's pin (``pin.adopt``: what was opened pins every later read); else it is closed. An
    OS error is this file's ``FileAccessError``, in words."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _access_error(path, exc) from exc
    kept = False
    try:
        answer, head = read(fd, _opened_regular(path, fd))
        kept = head is not None and pin.adopt(path, fd, head)
    except OSError as exc:
        raise _access_error(path, exc) from exc
    finally:
        if not kept:
            os.close(fd)
    return answer


def _opened_regular(path: str, fd: int) -> os.stat_result:
    """The stat of what ``fd`` opened at ``path``: a non-empty regular file, or the error that says what it became."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        check_regular(path)
        raise FileAccessError(path, "replaced while it was opened")
    return st


def _local_info(path: str, st: os.stat_result, head: bytes, read: Any) -> FileInfo:
    """A local file's FileInfo from the stat of its open descriptor and its first bytes (``read(offset, n)``: more)."""
    fmt, description = refine(detect(head, path), head, path, st.st_size, read)
    return FileInfo(path=path, size=st.st_size, mtime=st.st_mtime, format=fmt, description=description, etag=identity(st))


def probe_remote(url: str) -> FileInfo:
    """FileInfo of an object behind a URL: its identity (one request) and its first bytes (one ranged request)."""
    from ..storage.remote import read_range, remote_stat

    st = remote_stat(url)
    if st.kind == "directory":
        return _probe_remote_folder(url)
    if st.size == 0:
        raise EmptyFileError(url, "empty object (0 bytes): nothing to extract")
    head = read_range(url, 0, min(HEAD_BYTES, st.size))
    fmt, description = detect(head, url)
    return FileInfo(path=url, size=st.size, mtime=st.mtime, format=fmt, description=description, etag=st.etag, version=st.version)


def _probe_remote_folder(url: str) -> FileInfo:
    """A prefix that is one file (a Zarr store: one of ``registry.folder_formats`` at its top), from one listing."""
    from ..storage.remote import one_object, remote_folder
    from .detect import DESCRIPTIONS
    from .registry import folder_formats

    members = remote_folder(url)
    base = url.rstrip("/") + "/"
    top = {u[len(base):] for u, _ in members if "/" not in u[len(base):]}
    fmt = next((f for marker, f in folder_formats().items() if marker in top), None)
    if fmt is None:
        raise FileAccessError(url, "not an object: it is a prefix (a folder); scan it instead")
    st = one_object(url.rstrip("/"), members)
    return FileInfo(path=url.rstrip("/"), size=st.size, mtime=st.mtime, format=fmt, description=DESCRIPTIONS.get(fmt, fmt), etag=st.etag)


def file_type(path: str, record: dict[str, Any] | None) -> str:
    """The detected format for metrics, without ever blocking on the path (a URL's failure is not fetched again: "unknown")."""
    if record and isinstance(record.get("format"), str):
        return record["format"]
    from ..storage.urls import is_url

    if is_url(path):
        return "unknown"
    try:
        return probe(path).format
    except MetaExtractError:
        return "unknown"


@contextlib.contextmanager
def open_source(path: str) -> Iterator[Any]:
    """The file to read as a binary file object: a local one through the scan's pinned descriptor (never another
    file), a remote object through counted ranged reads."""
    if is_url(path):
        from ..storage.remote import open_remote

        with open_remote(path) as f:
            yield f
        return
    with open(pin.opened(path), "rb") as f:
        yield f
