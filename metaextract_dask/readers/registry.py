"""Lazy reader registry: built-ins by dotted path, third parties by entry point.

Modelled on ``xarray/backends/plugins.py``: nothing is imported until a reader
is asked for, and a third-party package adds a reader with::

    [project.entry-points."metaextract_dask.readers"]
    myformat = "mypkg.reader:MyReader"

A plugin may not take a built-in's name (it is refused with a warning unless
``metaextract.readers.replace`` lists that name); a plugin that fails to
import is skipped with a warning and every other reader goes on; a plugin's
``signatures`` (format, offset, magic bytes, description) extend detection.
"""

from __future__ import annotations

import functools
import importlib
import re
import threading
import warnings
import zlib
from typing import Any

from .. import sandbox
from ..core.errors import UnsupportedFormatError
from ..core.model import FileInfo
from ..storage.urls import is_url
from .base import StreamChunkReader
from .detect import HEAD_BYTES, signature_at, suggests_media
from .probe import read_head

ENTRY_POINT_GROUP = "metaextract_dask.readers"

BUILTIN_READERS: dict[str, str] = {
    "binary": "metaextract_dask.readers.binary:BinaryChunkReader",
    "archive": "metaextract_dask.readers.archive:ArchiveReader",
    "hdf5": "metaextract_dask.readers.hdf5:HDF5ChunkReader",
    "netcdf": "metaextract_dask.readers.netcdf:NetCDFChunkReader",
    "video": "metaextract_dask.readers.video:VideoChunkReader",
    "fits": "metaextract_dask.readers.fits:FITSReader",
    "grib": "metaextract_dask.readers.grib:GRIBReader",
    "geotiff": "metaextract_dask.readers.geotiff:GeoTIFFReader",
    "zarr": "metaextract_dask.readers.zarrstore:ZarrReader",
}

FALLBACK = "binary"


#: held while the entry points are read: two worker threads asking at once would each read every installed
#: package's metadata (40 to 50 ms here), both on the way to their first file
_DISCOVERY = threading.Lock()


def available_readers() -> dict[str, str]:
    """name -> "module:Class" for every registered reader; a plugin never silently replaces another."""
    with _DISCOVERY:
        return _discovered()


#: a sandbox child is handed its parent's readers (``sandbox.hand``): reading every installed package's entry points
#: (importing ``importlib.metadata`` first) cost each child 30 ms of its start
READERS_VARIABLE = "METAEXTRACT_READERS"


@functools.lru_cache(maxsize=1)
def _discovered() -> dict[str, str]:
    handed = _handed_readers()
    if handed is not None:
        return handed
    from importlib.metadata import entry_points

    from ..core.settings import config_get

    found = dict(BUILTIN_READERS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):  # the setting read only for a plugin that takes a name (no dask else)
        if ep.name in found and ep.name not in set(config_get("readers.replace", []) or []):
            warnings.warn(f"reader plugin {ep.name!r} ({ep.value}) is ignored: {found[ep.name]} already has that name "
                          f"(list it in metaextract.readers.replace to let the plugin replace it)", RuntimeWarning, stacklevel=2)
            continue
        found[ep.name] = ep.value
    return found


def _handed_readers() -> dict[str, str] | None:
    """The readers a sandbox child's parent discovered (``READERS_VARIABLE``), or None: discover them here."""
    import ast

    text = sandbox.handed(READERS_VARIABLE)
    try:
        found = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError):
        return None
    ok = isinstance(found, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in found.items())
    return found if ok else None


sandbox.hand(READERS_VARIABLE, lambda: repr(available_readers()))


def reader_versions() -> dict[str, str]:
    """name -> version of every reader that loads: a catalog row made by another version is extracted again."""
    out = {}
    for name in available_readers():
        reader = loaded_reader(name)
        if reader is not None:
            out[name] = str(getattr(reader, "version", "1"))
    return out


@functools.lru_cache(maxsize=None)
def loaded_reader(name: str) -> StreamChunkReader | None:
    """The reader, or None (once warned) when it cannot be loaded: one broken plugin must not fail every file."""
    try:
        return get_reader(name)
    except Exception as exc:  # noqa: BLE001 - a third party's import error, whatever it is
        warnings.warn(f"reader {name!r} ({available_readers().get(name)}) could not be loaded and is skipped: "
                      f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)
        return None


@functools.lru_cache(maxsize=1)
def reader_signatures() -> tuple[tuple[str, int, bytes | re.Pattern[bytes], str], ...]:
    """(format, offset, magic, description) declared by readers (``signatures``), for detection: magic is bytes, or a
    pattern of bytes that must match there."""
    found = []
    for reader in _readers():
        for entry in getattr(reader, "signatures", ()):
            fmt, offset, magic, description = entry
            found.append((str(fmt), int(offset), magic if isinstance(magic, re.Pattern) else bytes(magic), str(description)))
    return tuple(found)


def gzip_wrapped(head: bytes) -> tuple[str, str] | None:
    """(format, description) of a gzip stream (``head``: its first bytes) whose first decompressed bytes carry the
    signature of a format whose reader reads it through gzip itself (``opens_gzip``); None for any other. At most
    ``detect.HEAD_BYTES`` are decompressed: the look costs the same whatever the stream holds."""
    formats = {fmt for reader in _readers() if reader.opens_gzip and not reader.unavailable() for fmt in reader.formats}
    if not formats:
        return None
    try:
        inner = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, HEAD_BYTES)
    except zlib.error:
        return None
    for fmt, offset, magic, description in reader_signatures():
        if fmt in formats and signature_at(inner, offset, magic):
            return fmt, f"{description}, gzip-compressed"
    return None


@functools.lru_cache(maxsize=1)
def _readers() -> tuple[StreamChunkReader, ...]:
    """Every reader that loads, built-ins first (a plugin adds formats; it does not redefine a built-in's). Worked out once
    per process, as the registry is read once: the exports ask it for every row."""
    found = available_readers()
    names = sorted(found, key=lambda n: (BUILTIN_READERS.get(n) != found[n], n))
    return tuple(r for r in (loaded_reader(n) for n in names) if r is not None)


@functools.lru_cache(maxsize=1)
def named_formats() -> dict[str, str]:
    """File name extension -> the format names with it claim, from every reader's ``extensions`` (the first reader wins)."""
    found: dict[str, str] = {}
    for reader in _readers():
        for ext, fmt in dict(getattr(reader, "extensions", {}) or {}).items():
            found.setdefault(str(ext).lower(), str(fmt))
    return found


def recognised(ext: str, head: bytes, size: int, read: Any) -> tuple[str, str] | None:
    """(format, description) of an unrecognised file named ``ext`` that the reader of the format its name claims
    recognises further in (``StreamChunkReader.recognise``), or None."""
    fmt = named_formats().get(ext)
    if fmt is None:
        return None
    reader = _reader_of_format(fmt)[0]
    if fmt not in reader.formats:  # the format's reader cannot run here: nothing would read it as that format
        return None
    description = reader.recognise(head, size, read)
    return (fmt, description) if description else None


@functools.lru_cache(maxsize=1)
def folder_formats() -> dict[str, str]:
    """Marker file name -> the format of a folder holding it, from every reader's ``folder_markers`` (the first reader
    wins)."""
    found: dict[str, str] = {}
    for reader in _readers():
        for marker in getattr(reader, "folder_markers", ()) or ():
            found.setdefault(str(marker), sorted(reader.formats)[0])
    return found


@functools.lru_cache(maxsize=1)
def native_extensions() -> frozenset[str]:
    """Extensions whose format a native reader parses (a large file so named plans in a sandbox)."""
    natives = {fmt for r in _readers() if r.native for fmt in r.formats}
    return frozenset(ext for ext, fmt in named_formats().items() if fmt in natives)


def reader_of_format(fmt: str | None) -> StreamChunkReader | None:
    """The reader that handles files of format ``fmt`` (as ``reader_for`` picks it), or None."""
    for reader in _readers():
        if fmt in reader.formats and reader.name != FALLBACK:
            return reader
    return None


def media_type(fmt: str | None, section: dict[str, Any]) -> str | None:
    """The media type the reader of ``fmt`` gives a file whose record's section is ``section``; None: unknown."""
    reader = reader_of_format(fmt)
    return reader.media_type(str(fmt), section) if reader is not None else None


def esm_format(fmt: str | None) -> str | None:
    """The intake-esm ``format`` of a file of format ``fmt``, when its reader declares one."""
    reader = reader_of_format(fmt)
    return dict(reader.esm_formats).get(str(fmt)) if reader is not None else None


@functools.lru_cache(maxsize=None)
def get_reader(name: str) -> StreamChunkReader:
    """The reader registered under ``name`` (imported on first use)."""
    try:
        target = available_readers()[name]
    except KeyError:
        known = ", ".join(sorted(available_readers()))
        raise UnsupportedFormatError(None, f"no reader named {name!r}; known readers: {known}") from None
    return _instance(target)


@functools.lru_cache(maxsize=None)
def _instance(target: str) -> StreamChunkReader:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)()


def is_builtin(reader: StreamChunkReader, name: str) -> bool:
    """Whether ``reader`` is this project's own reader ``name`` (not a plugin registered under that name)."""
    cls = type(getattr(reader, "inner", reader))
    return f"{cls.__module__}:{cls.__qualname__}" == BUILTIN_READERS[name]


def reader_for(info: FileInfo, name: str | None = None) -> tuple[StreamChunkReader, str | None]:
    """(reader, note) for a file: the format's reader, or binary with a note why.

    ``name`` forces a reader; then a missing library is an error, not a fallback.
    """
    if name is not None:
        reader = get_reader(name)
        reason = reader.unavailable()
        if reason:
            raise UnsupportedFormatError(info.path, reason)
        return reader, None
    return _reader_of_format(info.format)


@functools.lru_cache(maxsize=None)
def _reader_of_format(fmt: str) -> tuple[StreamChunkReader, str | None]:
    """``reader_for`` a file of format ``fmt``, worked out once per process (as the registry is read once)."""
    for candidate in available_readers():
        if candidate == FALLBACK:
            continue
        found = loaded_reader(candidate)
        if found is not None and fmt in found.formats:
            reader = found
            reason = reader.unavailable()
            if reason is None:
                return reader, None
            return get_reader(FALLBACK), f"read as binary: {reason}"
    return get_reader(FALLBACK), None


def recognise_media(info: FileInfo, timeout: float) -> FileInfo:
    """A file with no known signature whose name or first bytes suggest media gets one bounded libavformat look.

    libavformat (PyAV in the sandbox, or ffprobe) knows far more containers
    than any signature table; when it finds streams, the file is read as
    media instead of opaque binary.
    """
    if info.format != "unknown":
        return info
    if not suggests_media(read_head(info.path), info.path):
        return info
    from .video import ffprobe_path, in_process, probe_media

    if not in_process() and ffprobe_path() is None:
        return info
    from dataclasses import replace

    from ..core.errors import CorruptFileError

    try:
        found = probe_media(info.path, min(timeout, 20.0))
    except CorruptFileError as exc:  # read as bytes; the record says what its name claimed and why it is no media
        return replace(info, description=f"{info.description}; named or started like media, but {exc.message}")
    if not found:
        return info
    who = "libavformat" if in_process() else "ffprobe"
    return replace(info, format="media", description=f"media recognised by {who} ({found})")


#: formats stored in HDF5: libhdf5 (under h5py or libnetcdf) would follow what they point to
HDF5_BASED = frozenset({"hdf5", "netcdf4"})

#: the one reader that lists links, external storage, virtual sources and plugin filters without following them
SAFE_HDF5_READER = "hdf5"


def guard_native(info: FileInfo, reader: StreamChunkReader, note: str | None) -> tuple[StreamChunkReader, str | None]:
    """Whatever reader an HDF5-based file reached, check what it points to outside itself first.

    A file that names external links, external raw storage, virtual sources
    or plugin filters goes to the HDF5 reader, which lists them and never
    follows them; libnetcdf (or a third-party reader) never sees it. A file
    the guard cannot inspect is treated the same way: unsafe until shown safe.
    """
    if info.format not in HDF5_BASED or is_builtin(reader, SAFE_HDF5_READER) or is_builtin(reader, FALLBACK):
        return reader, note
    safe = _instance(BUILTIN_READERS[SAFE_HDF5_READER])  # this project's own, whatever a plugin registered as "hdf5"
    if safe.unavailable():
        return get_reader(FALLBACK), "read as binary: h5py is needed to check safely what an HDF5-based file points to (pip install h5py)"
    from .guard import outside_references

    try:
        found = outside_references(info.path)
    except Exception as exc:  # noqa: BLE001 - an HDF5 file h5py cannot inspect is not handed to another native parser
        found = {"/": [f"could not be inspected ({type(exc).__name__}: {exc})"]}
    if not found:
        return reader, note
    first = next(iter(found.items()))
    more = f" and {len(found) - 1} more objects" if len(found) > 1 else ""
    return safe, (f"read with the HDF5 reader instead of {reader.name!r}: it points outside itself "
                  f"({first[0]}: {'; '.join(first[1])}{more}); nothing outside it was opened")


def may_parse_natively(info: FileInfo, name: str | None = None) -> bool:
    """Whether choosing and planning this file may run a native library (the HDF5 guard, a native layout)."""
    if info.format in HDF5_BASED:
        return True
    try:
        return reader_for(info, name)[0].native
    except Exception:  # noqa: BLE001 - the same call inside the sandbox reports the problem
        return True


def needs_no_parser(info: FileInfo, head: bytes | None = None) -> bool:
    """Whether ``choose_reader`` will give this probed local file the binary reader without any native library
    looking at it first: no reader claims its format and nothing suggests media (which would get libavformat's look).
    Such files are read many to one sandbox call (``execution.batch.extract_plain``). ``head``: its first bytes, when
    already read."""
    if is_url(info.path) or not is_builtin(reader_for(info)[0], FALLBACK):
        return False
    if info.format != "unknown":
        return True
    return not suggests_media(read_head(info.path) if head is None else head, info.path)


def choose_reader(info: FileInfo, config: Any, name: str | None = None) -> tuple[FileInfo, StreamChunkReader, str | None]:
    """(info, reader, note): ``reader_for`` after media recognition, with the checksum beside format readers.

    The binary reader computes the checksum itself; every other reader is
    wrapped so an archive gets one fixity column for all formats.
    """
    if name is None:
        info = recognise_media(info, getattr(config, "timeout", 20.0))
    reader, note = reader_for(info, name)
    reader, note = guard_native(info, reader, note)
    if getattr(config, "checksum", None) and not getattr(reader, "hashes_itself", False):
        from .fixity import WithChecksum

        reader = WithChecksum(reader)
    return info, reader, note
