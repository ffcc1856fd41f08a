"""Objects behind fsspec URLs: their identity, ranged reads, and a count of every request.

Credentials and endpoints travel as ``storage_options`` (a plain dict, the
fsspec way) inside the scan's settings; each task builds its own filesystem
from them in the process it runs in, so no client or session is pickled.
Every fetch made while a file is read is counted (``IOCount``): the record's
``io`` section says how many requests a file cost and how many bytes.
"""

from __future__ import annotations

import contextvars
import functools
import os
import stat
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.errors import FileAccessError, describe
from ..core.pin import identity
from .urls import is_url

#: the storage options of the scan this thread works for
_OPTIONS: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("metaextract_storage_options", default={})
#: the counter of the file this thread reads
_COUNT: contextvars.ContextVar["IOCount | None"] = contextvars.ContextVar("metaextract_io_count", default=None)
#: seconds a request may take to connect and between reads (the scan's file timeout); None: the setting's
_TIMEOUT: contextvars.ContextVar[float | None] = contextvars.ContextVar("metaextract_request_timeout", default=None)


def block_size() -> int:
    """The block a remote HDF5/netCDF-4 file is read in (``metaextract.remote.block-size``).

    Its metadata sits in small scattered pieces (superblock, object headers,
    heaps, B-tree nodes) and one block usually holds several: the default
    was chosen by counting requests (benchmarks/RESULTS-remote.md).
    """
    from ..core.settings import setting

    return int(setting("remote.block-size"))


@dataclass
class IOCount:
    """Requests and bytes fetched for one file; shared by the threads that serve it."""

    requests: int = 0
    bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, nbytes: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += nbytes

    def as_tuple(self) -> tuple[int, int]:
        return self.requests, self.bytes


class using:  # noqa: N801 - used as a function: ``with using(options, timeout):``
    """Within this block, URLs open with these storage options, and each request times out after ``timeout`` seconds
    (connect, and each read; None keeps the enclosing block's, by default the file timeout's setting).

    A class, not a generator: every file enters it several times, and a local file's scan pays for each entry."""

    __slots__ = ("options", "timeout", "tokens")

    def __init__(self, options: dict[str, Any] | None, timeout: float | None = None):
        self.options, self.timeout = options, timeout

    def __enter__(self) -> None:
        self.tokens = (_OPTIONS.set(dict(self.options or {})),
                       _TIMEOUT.set(float(self.timeout)) if self.timeout is not None else None)

    def __exit__(self, *exc: Any) -> None:
        token, limit = self.tokens
        _OPTIONS.reset(token)
        if limit is not None:
            _TIMEOUT.reset(limit)


def current_options() -> dict[str, Any]:
    """The storage options of the enclosing ``using`` block (a copy)."""
    return dict(_OPTIONS.get())


def request_timeout() -> float:
    """Seconds one request may take to connect, and between reads: the scan's file timeout."""
    value = _TIMEOUT.get()
    if value is None:
        from ..core.settings import setting

        value = float(setting("streaming.timeout"))
    return value


class counting:  # noqa: N801 - used as a function: ``with counting() as count:``
    """Count the requests this thread makes in this block (an inner block counts its own, not the outer's)."""

    __slots__ = ("count", "token")

    def __enter__(self) -> IOCount:
        self.count = IOCount()
        self.token = _COUNT.set(self.count)
        return self.count

    def __exit__(self, *exc: Any) -> None:
        _COUNT.reset(self.token)


def current_count() -> IOCount | None:
    return _COUNT.get()


def _counted(fetch: Any, count: IOCount | None) -> Any:
    """The fetch, counted into the block the fetching thread is in (a file opened while planning is read again
    while summarizing), or into ``count`` in threads outside any block (a loopback server's)."""

    def fetch_range(start: int, end: int) -> bytes:
        data = fetch(start, end)
        counter = _COUNT.get() or count
        if counter is not None:
            counter.add(len(data))
        return data

    return fetch_range


#: per thread, the few archives whose members it read last: (key, time) -> filesystem
_ARCHIVE_FS = threading.local()
#: archives a thread keeps open, and for how long (seconds) when the container is remote (a local one is keyed by its stat)
ARCHIVES_KEPT, ARCHIVE_SECONDS = 4, 60.0


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a URL, built with this scan's storage options and ``bounded`` requests.

    A zip or tar member's filesystem parses its container's whole directory,
    and fsspec does not keep archive filesystems: each thread keeps its last
    few, so reading the members of an archive of 20,000 costs one parse, not
    20,000 (``_archive_fs``).
    """
    from fsspec.core import url_to_fs

    try:
        if "::" in url:
            kept = _archive_fs(url)
            if kept is not None:
                return kept
        return url_to_fs(url, **chained_options(url, bounded(url, _OPTIONS.get())))
    except (ImportError, ValueError) as exc:
        raise FileAccessError(url, f"cannot open this URL: {describe(exc)}") from exc


def _archive_fs(url: str) -> tuple[Any, str] | None:
    """The member URL's filesystem from this thread's few kept archives (made and kept when new); None: not a member."""
    import json
    import os
    import time

    from fsspec.core import url_to_fs

    from .urls import container_of

    container = container_of(url)
    if container is None:
        return None
    first = url.split("::", 1)[0]
    try:
        st = os.stat(container)
        version: Any = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        version = int(time.monotonic() // ARCHIVE_SECONDS)
    key = (first.split("://", 1)[0], container, version, json.dumps(_OPTIONS.get(), sort_keys=True, default=repr))
    kept = getattr(_ARCHIVE_FS, "kept", None)
    if kept is None:
        kept = _ARCHIVE_FS.kept = {}
    fs = kept.pop(key, None)
    if fs is None:
        fs, _ = url_to_fs(first.split("://", 1)[0] + "://::" + container, **chained_options(url, bounded(url, _OPTIONS.get())))
        zip_file = getattr(fs, "zip", None)
        if zip_file is not None:  # fsspec's directory of a zip fails on a member with an empty name: it is never read anyway
            zip_file.filelist[:] = [i for i in zip_file.filelist if i.filename]
        while len(kept) >= ARCHIVES_KEPT:
            kept.pop(next(iter(kept)))
    kept[key] = fs  # the most recent last
    return fs, fs._strip_protocol(first)


def bounded(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Storage options with this project's limits added where the user set none: every HTTP and S3 request times
    out (``request_timeout``), and an HTTP redirect to another host is refused (``remote.redirects``)."""
    inner = url.rsplit("::", 1)[-1]
    protocol = inner.split("://", 1)[0].lower() if "://" in inner else "file"
    if any(isinstance(v, dict) for k, v in options.items() if k in ("http", "https", "s3", "s3a")):
        return options  # keyed by protocol: the user's as given
    timeout = request_timeout()
    if protocol in ("http", "https"):
        import aiohttp

        client = dict(options.get("client_kwargs") or {})
        client.setdefault("timeout", aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout))
        if _redirects() == "same-host":
            client["trace_configs"] = [*client.get("trace_configs", []), _same_host_only()]
        return {**options, "client_kwargs": client}
    if protocol in ("s3", "s3a"):
        config = {"connect_timeout": timeout, "read_timeout": timeout, **(options.get("config_kwargs") or {})}
        return {**options, "config_kwargs": config}
    return options


def _redirects() -> str:
    from ..core.settings import setting

    value = str(setting("remote.redirects"))
    if value not in ("same-host", "any"):
        raise ValueError(f"metaextract.remote.redirects is {value!r}: choose same-host or any")
    return value


#: the port a URL means when it names none
_PORTS = {"http": 80, "https": 443}


class RedirectRefused(OSError):
    """An HTTP redirect to another host than the one asked (``remote.redirects: same-host``)."""


@functools.lru_cache(maxsize=1)
def _same_host_only() -> Any:
    """One aiohttp trace config (one, so fsspec's cache of filesystems keeps one per store) refusing cross-host redirects."""
    from urllib.parse import urljoin, urlsplit

    import aiohttp

    async def on_redirect(session: Any, context: Any, params: Any) -> None:
        asked = urlsplit(str(params.url))
        target = urlsplit(urljoin(str(params.url), params.response.headers.get("Location", "")))
        if (target.hostname, target.port or _PORTS.get(target.scheme)) != (asked.hostname, asked.port or _PORTS.get(asked.scheme)):
            raise RedirectRefused(f"redirected to another host ({target.hostname}): refused "
                                  "(metaextract.remote.redirects: any follows such redirects)")

    config = aiohttp.TraceConfig()
    config.on_request_redirect.append(on_redirect)
    return config


def chained_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Flat storage options of a chained URL go to its innermost link (the store), not the outermost (zip, tar).

    fsspec gives a chain's flat keyword arguments to its first link;
    options already keyed by protocol (``{"s3": {...}}``) are left as given.
    """
    if "::" not in url or not options:
        return options
    from fsspec.registry import known_implementations

    if any(key in known_implementations for key in options):
        return options
    inner = url.rsplit("::", 1)[1]
    protocol = inner.split("://", 1)[0] if "://" in inner else "file"
    return {protocol: options}


def access_error(url: str, exc: BaseException) -> FileAccessError:
    """A store's error in plain words (never the credentials: only the URL and the store's reason)."""
    if isinstance(exc, FileAccessError):
        return exc
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, FileNotFoundError) and cause is not None:
        transport = _transport_error(url, cause)  # fsspec's HTTP info() says "not found" for any failure: say the real one
        if transport is not None:
            return transport
        if getattr(cause, "status", None) is None:  # the store's own words (NoSuchBucket...), not an HTTP status line
            return FileAccessError(url, f"no such object: {describe(cause)}")
    if isinstance(exc, FileNotFoundError):
        return FileAccessError(url, "no such object")
    if isinstance(exc, PermissionError):
        return FileAccessError(url, "access denied by the store (check the storage options' credentials)")
    status = getattr(exc, "status", None)
    if status in (401, 403):
        return FileAccessError(url, f"access denied by the server (HTTP {status})")
    if status == 404:
        return FileAccessError(url, "no such object (HTTP 404)")
    return FileAccessError(url, f"cannot read the object: {describe(exc)}")


def _transport_error(url: str, exc: BaseException) -> FileAccessError | None:
    """A failure to reach the server, in plain words (an untrusted certificate, a refused connection, a server
    error), or None when the server answered that the object does not exist."""
    import ssl

    chain = [exc]
    while (chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 8:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)  # type: ignore[arg-type]
    for e in chain:
        if isinstance(e, RedirectRefused):
            return FileAccessError(url, str(e))
        if isinstance(e, ssl.SSLCertVerificationError) or "certificate" in type(e).__name__.lower():
            reason = getattr(e, "verify_message", None) or getattr(getattr(e, "certificate_error", None), "verify_message", None)
            return FileAccessError(url, f"the server's TLS certificate is not trusted ({reason or 'verification failed'}); "
                                        "point SSL_CERT_FILE at its CA to trust it")
        if isinstance(e, ConnectionError) or "connect" in type(e).__name__.lower():
            return FileAccessError(url, f"cannot connect to the server: {describe(e)}")
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status != 404:
        return FileAccessError(url, f"the server answered HTTP {status}")
    return None


@dataclass(frozen=True)
class RemoteStat:
    """An object's identity: size, modification time, and the store's ETag or version where it has one."""

    size: int
    mtime: float
    etag: str | None = None
    version: str | None = None
    kind: str = "file"


def _mtime(info: dict[str, Any]) -> float:
    dt = info.get("date_time")  # a zip entry's local date and time
    if isinstance(dt, tuple) and len(dt) == 6:
        import time

        return time.mktime((*dt, 0, 0, -1))
    for key in ("mtime", "LastModified", "last_modified", "Last-Modified", "updated", "created", "modified"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            from email.utils import parsedate_to_datetime

            try:
                return parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                try:
                    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    continue
    return 0.0


def stat_from_info(info: dict[str, Any]) -> RemoteStat:
    """A listing's or ``info``'s entry as a ``RemoteStat`` (so a listing needs no second stat per file)."""
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    if etag is None and isinstance(info.get("CRC"), int):  # a zip entry: its CRC tells one version from another
        etag = f"crc32:{info['CRC']:08x}"
    version = info.get("VersionId") or info.get("version_id") or info.get("generation")
    kind = "directory" if info.get("type") == "directory" else "file"
    return RemoteStat(int(info.get("size") or 0), _mtime(info), str(etag).strip('"') if etag else None,
                      str(version) if version and version != "null" else None, kind)


def remote_stat(url: str) -> RemoteStat:
    """The object's identity, in one request."""
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache(path)  # s3fs answers info() from listings it cached: an object's identity must be today's
        info = fs.info(path)
    except Exception as exc:  # noqa: BLE001 - every store raises its own errors
        raise access_error(url, exc) from exc
    count = _COUNT.get()
    if count is not None:
        count.add(0)
    found = stat_from_info(info)
    remember_size(url, found.size)
    return found


#: the prefix of a remote folder's identity
FOLDER = "folder:"


def one_object(root: str, members: list[tuple[str, RemoteStat]]) -> RemoteStat:
    """A remote folder's objects (URL, ``RemoteStat``) as one object under ``root``: their bytes, their latest time, and
    an identity made of every object's name, size and ETag (any object added, removed or rewritten changes it)."""
    import hashlib

    digest = hashlib.sha256()
    for url, st in sorted(members, key=lambda m: m[0]):
        digest.update(f"{url[len(root):].lstrip('/')}\0{st.size}\0{st.etag or st.mtime}\n".encode("utf-8", "surrogateescape"))
    return RemoteStat(sum(st.size for _, st in members), max((st.mtime for _, st in members), default=0.0),
                      f"{FOLDER}{digest.hexdigest()[:32]}", None, "file")


def collapse_folders(found: list[tuple[str, RemoteStat]], markers: Any) -> list[tuple[str, RemoteStat]]:
    """A listing's objects with each folder that is one file (it holds one of ``markers`` at its top: a Zarr store) as
    one entry, the outermost such folder when they nest."""
    roots = sorted({url.rsplit("/", 1)[0] for url, _ in found if url.rsplit("/", 1)[-1] in markers})
    outermost: list[str] = []
    for root in roots:
        if not any(root.startswith(r + "/") for r in outermost):
            outermost.append(root)
    if not outermost:
        return found
    members: dict[str, list[tuple[str, RemoteStat]]] = {r: [] for r in outermost}
    out: list[tuple[str, RemoteStat]] = []
    for url, st in found:
        inside = next((r for r in outermost if url.startswith(r + "/")), None)
        if inside is None:
            out.append((url, st))
        else:
            members[inside].append((url, st))
    return sorted(out + [(root, one_object(root, objects)) for root, objects in members.items()], key=lambda m: m[0])


def is_folder_identity(etag: Any) -> bool:
    """Whether an identity is a remote folder's (``one_object``)."""
    return isinstance(etag, str) and etag.startswith(FOLDER)


def remote_folder(url: str) -> list[tuple[str, RemoteStat]]:
    """Every object under a prefix (URL, identity), from one recursive listing (a request per 1,000 objects)."""
    fs, path = filesystem(url)
    try:
        fs.invalidate_cache(path)
        entries = fs.find(path.rstrip("/"), detail=True)
    except Exception as exc:  # noqa: BLE001 - every store raises its own errors
        raise access_error(url, exc) from exc
    count = _COUNT.get()
    if count is not None:
        for _ in range(max(1, -(-len(entries) // 1000))):
            count.add(0)
    base = url.rstrip("/")
    inside = path.rstrip("/")
    return [(base + "/" + name[len(inside):].lstrip("/"), stat_from_info(info)) for name, info in entries.items()
            if info.get("type") != "directory"]


def remote_folder_stat(url: str) -> RemoteStat:
    """A remote folder that is one file (a Zarr store under a prefix) as one object (``folders.one_object``)."""
    return one_object(url.rstrip("/"), remote_folder(url))


def stat_now(path: str, etag: str | None = None) -> RemoteStat:
    """A file's or an object's identity now, the same shape for both: size, mtime, and the ETag (a local file's
    ``pin.identity``: device, inode, change time). ``etag``: the identity it had (a remote folder's is listed, not
    asked for). Raises ``OSError`` (local) or ``MetaExtractError`` (remote)."""
    if is_url(path):
        if is_folder_identity(etag):  # a Zarr store under a prefix: its listing alone
            return remote_folder_stat(path)
        found = remote_stat(path)
        return remote_folder_stat(path) if found.kind == "directory" else found
    st = os.stat(path)
    if stat.S_ISDIR(st.st_mode):  # a folder that is one file (a Zarr store): its contents' size and latest time
        from .folders import folder_stat

        size, mtime, _ = folder_stat(path)
        return RemoteStat(size, mtime, identity(st))
    return RemoteStat(st.st_size, st.st_mtime, identity(st))


#: sizes of objects this process probed or planned: opening them again asks the store nothing more
_SIZES: dict[str, int] = {}


def remember_size(url: str, size: int) -> None:
    if len(_SIZES) > 4096:
        _SIZES.clear()
    _SIZES[url] = size


def known_size(url: str) -> int:
    """The object's size: remembered from its probe, else asked of the store (one request)."""
    size = _SIZES.get(url)
    if size is None:
        size = remote_stat(url).size
        remember_size(url, size)
    return size


def read_range(url: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of the object, in one request."""
    fs, path = filesystem(url)
    try:
        data = fs.cat_file(path, start=start, end=end)
    except Exception as exc:  # noqa: BLE001
        raise access_error(url, exc) from exc
    count = _COUNT.get()
    if count is not None:
        count.add(len(data))
    return data


def open_remote(url: str, size: int | None = None, block: int | None = None, cache_type: str = "blockcache",
                count: IOCount | None = None) -> Any:
    """A seekable read-only file object over the URL whose fetches are counted.

    ``size`` known from the probe saves the store's size request.
    """
    fs, path = filesystem(url)
    kwargs: dict[str, Any] = {"block_size": block or block_size(), "cache_type": cache_type}
    size = size if size is not None else _SIZES.get(url)
    if size is not None:
        kwargs["size"] = size
    try:
        f = fs.open(path, "rb", **kwargs)
    except TypeError:  # a filesystem without these options (zip members, local files)
        f = fs.open(path, "rb")
    except Exception as exc:  # noqa: BLE001
        raise access_error(url, exc) from exc
    counter = count if count is not None else _COUNT.get()
    cache = getattr(f, "cache", None)
    if cache is not None and hasattr(cache, "fetcher"):
        cache.fetcher = _counted(cache.fetcher, counter)
    else:
        f = _CountingReader(f, counter, fs)
    return f


class _CountingReader:
    """A file object of a filesystem without a fetch cache (zip and tar members): each read is a request."""

    def __init__(self, f: Any, count: IOCount | None, fs: Any = None):
        self._f, self._count = f, count
        self._fs = fs  # a zip or tar filesystem closes its container when it is collected: it lives as long as this file

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        counter = _COUNT.get() or self._count
        if counter is not None:
            counter.add(len(data))
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> "_CountingReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()
