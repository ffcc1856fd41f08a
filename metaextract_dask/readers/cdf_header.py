"""A bounded check of a NetCDF classic (CDF-1, CDF-2, CDF-5) header.

libnetcdf trusts the header: a name declared 4 GB long is allocated, and a
truncated file reads its missing data as fill values without a word. This
parser reads the header in Python, checks every declared length against the
bytes the file really has before reading it, and checks the data the header
declares fits in the file. It allocates nothing larger than the file.
"""

from __future__ import annotations

import math
import os
import struct
from typing import Any

from ..core.errors import CorruptFileError
from ..storage.urls import is_url

NC_DIMENSION, NC_VARIABLE, NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
#: the classic types as NumPy's (big-endian); 2 is a character
DTYPES = {1: "i1", 2: "S1", 3: ">i2", 4: ">i4", 5: ">f4", 6: ">f8", 7: "u1", 8: ">u2", 9: ">u4", 10: ">i8", 11: ">u8"}
STREAMING = 0xFFFFFFFF
_U32 = struct.Struct(">I")

#: what the last checks found, by (path, size, mtime): (the record dimensions, how many record variables); the reader
#: asks right after checking
_FOUND: dict[tuple[str, int, int], tuple[list[str], int]] = {}


class Bounded:
    """Reads big-endian fields, refusing anything beyond the end of the file.

    The header is read in growing blocks (64 KiB, doubling, never past the
    file's end) and parsed from memory: one read per field made a header of
    200,000 dimensions take seconds.
    """

    def __init__(self, f, size: int, path: str, version: int):
        self.f, self.size, self.path, self.pos, self.version = f, size, path, 0, version
        self.wide = version == 5  # CDF-5: 64-bit counts and sizes
        f.seek(0)
        self.buf = bytearray(f.read(min(size, 65536)))

    def fail(self, what: str) -> CorruptFileError:
        return CorruptFileError(self.path, f"NetCDF header is invalid: {what}")

    def _have(self, end: int) -> None:
        if end > len(self.buf):
            want = min(self.size, max(end, 2 * len(self.buf)))
            self.f.seek(len(self.buf))
            self.buf += self.f.read(want - len(self.buf))  # in place: the buffer stays the same object

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} declares {n} bytes at offset {self.pos}, beyond the end of the {self.size}-byte file")
        self._have(self.pos + n)
        data = bytes(self.buf[self.pos:self.pos + n])
        if len(data) < n:
            raise self.fail(f"{what}: the file ended while it was read")
        self.pos += n
        return data

    def u32(self, what: str) -> int:
        if self.pos + 4 <= len(self.buf):
            value = _U32.unpack_from(self.buf, self.pos)[0]
            self.pos += 4
            return value
        return _U32.unpack(self.take(4, what))[0]

    def count(self, what: str) -> int:
        return struct.unpack(">Q", self.take(8, what))[0] if self.wide else self.u32(what)

    def name(self, what: str) -> str:
        n = self.count(what)
        raw = self.take(n + (-n % 4), what)
        return raw[:n].decode("utf-8", "replace")

    def dimensions(self, n: int) -> list[tuple[str, int]]:
        """n (name, length) pairs: the hot loop of huge headers, with the field reads inlined."""
        if self.wide:
            return [(self.name("dimension name"), self.count("dimension length")) for _ in range(n)]
        out = []
        buf, unpack = self.buf, _U32.unpack_from
        for _ in range(n):
            pos = self.pos
            if pos + 4 > len(buf):
                self._have(pos + 4)
                if pos + 4 > len(buf):
                    raise self.fail(f"dimension name length at offset {pos} is beyond the end of the {self.size}-byte file")
            k = unpack(buf, pos)[0]
            end = pos + 4 + k + (-k % 4) + 4
            if end > len(buf):
                self._have(end)
                if end > len(buf):
                    raise self.fail(f"dimension name declares {k} bytes at offset {pos + 4}, beyond the end of the {self.size}-byte file")
            out.append((buf[pos + 4:pos + 4 + k].decode("utf-8", "replace"), unpack(buf, end - 4)[0]))
            self.pos = end
        return out

    def items(self, tag: int, what: str) -> int:
        found, n = self.u32(f"{what} list tag"), self.count(f"number of {what}s")
        if found == 0 and n == 0:
            return 0
        if found != tag:
            raise self.fail(f"expected the {what} list, found tag {found:#x}")
        if n > (self.size - self.pos) // 8:  # each item needs at least 8 bytes
            raise self.fail(f"declares {n} {what}s, more than the file could hold")
        return n

    def attributes(self, where: str, values: bool = False) -> dict[str, Any]:
        """An attribute list, checked; with ``values``, decoded (text for characters, a number for one value, else a
        list), else skipped ({})."""
        out: dict[str, Any] = {}
        for _ in range(self.items(NC_ATTRIBUTE, "attribute")):
            name = self.name(f"{where} attribute name")
            kind = self.u32(f"type of attribute {name}")
            if kind not in TYPE_SIZES:
                raise self.fail(f"attribute {name} has unknown type {kind}")
            n = self.count(f"length of attribute {name}") * TYPE_SIZES[kind]
            raw = self.take(n + (-n % 4), f"value of attribute {name}")
            if values and kind == 2:
                out[name] = raw[:n].rstrip(b"\0").decode("utf-8", "replace")
            elif values:
                import numpy as np

                found = np.frombuffer(raw[:n], dtype=DTYPES[kind]).tolist()
                out[name] = found[0] if len(found) == 1 else found
        return out

    def variable(self, dims: int, values: bool = False) -> tuple[str, list[int], dict[str, Any], int, int]:
        """One variable's entry, checked: (name, dimension ids, attributes as ``attributes`` gives them, type, offset
        of its data); ``dims``: how many dimensions the file declares."""
        name = self.name("variable name")
        ndims = self.count(f"rank of variable {name}")
        if ndims > 1024:
            raise self.fail(f"variable {name} declares {ndims} dimensions")
        ids = [self.count(f"dimension id of variable {name}") for _ in range(ndims)]
        if any(i >= dims for i in ids):
            raise self.fail(f"variable {name} uses a dimension that does not exist")
        attrs = self.attributes(f"variable {name}", values)
        kind = self.u32(f"type of variable {name}")
        if kind not in TYPE_SIZES:
            raise self.fail(f"variable {name} has unknown type {kind}")
        self.count(f"size of variable {name}")  # vsize: can be a sentinel for big variables; recomputed from the shape
        begin = struct.unpack(">Q" if self.version in (2, 5) else ">I",
                              self.take(8 if self.version in (2, 5) else 4, f"offset of variable {name}"))[0]
        return name, ids, attrs, kind, begin


def record_size(slabs: list[int]) -> int:
    """The bytes of one record, from its record variables' slabs (unpadded): each padded to 4 bytes, but a lone record
    variable's, which is not."""
    return slabs[0] if len(slabs) == 1 else sum(n + (-n % 4) for n in slabs)


def _remember(path: str, size: int, mtime_ns: int, names: list[str], record_variables: int) -> None:
    if len(_FOUND) > 64:
        _FOUND.clear()
    _FOUND[(path, size, mtime_ns)] = (names, record_variables)


def _found(path: str) -> tuple[list[str], int]:
    """(record dimensions, number of record variables) of a classic file, from its check (run again when it ran elsewhere)."""
    if is_url(path):  # a remote object's header was checked when the file was planned: no request here
        found = next((facts for (p, _, _), facts in _FOUND.items() if p == path), None)
        if found is None:
            from ..storage.remote import known_size

            check_classic_header(path, known_size(path))
            found = next((facts for (p, _, _), facts in _FOUND.items() if p == path), ([], 0))
        return found
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _FOUND:
        check_classic_header(path, st.st_size)
    return _FOUND.get(key, ([], 0))


def record_dimensions(path: str) -> list[str]:
    """The names of a classic file's record (unlimited) dimensions: those declared with length 0.

    netCDF4's ``Dimension.isunlimited()`` scans every dimension of the file
    each time it is called; asked of each of 200,000 dimensions that is 4e10
    steps. The header check already read the dimension list; it is read
    again only when the check ran elsewhere.
    """
    return _found(path)[0]


def interleaved(path: str) -> bool:
    """Whether a classic file has two or more record variables: each record holds a slab of each, so one
    variable's values are spread over the whole record section."""
    return _found(path)[1] > 1


def open_header(path: str, size: int) -> Any:
    """The file for reading its header: a remote object in 64 KiB ranged reads (a header is usually far smaller)."""
    if is_url(path):
        from ..storage.remote import open_remote

        return open_remote(path, size=size, block=64 * 1024, cache_type="readahead")
    from ..core.pin import opened

    return open(opened(path), "rb")


def check_classic_header(path: str, size: int) -> None:
    """Raise CorruptFileError unless the header is sound and its data fits in the file."""
    with open_header(path, size) as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[:3] != b"CDF" or magic[3] not in (1, 2, 5):
            raise CorruptFileError(path, "not a NetCDF classic file (bad magic number)")
        r = Bounded(f, size, path, magic[3])
        r.pos = 4
        numrecs = r.count("number of records")
        dims = []
        dims = r.dimensions(r.items(NC_DIMENSION, "dimension"))
        mtime_ns = 0 if is_url(path) else os.fstat(f.fileno()).st_mtime_ns  # the open file: no second stat
        r.attributes("global")
        data_end, record_sizes, record_begin = r.pos, [], None
        for _ in range(r.items(NC_VARIABLE, "variable")):
            _name, ids, _attrs, kind, begin = r.variable(len(dims))
            shape = [dims[i][1] for i in ids]
            is_record = bool(shape) and shape[0] == 0
            nbytes = math.prod(shape[1:] if is_record else shape) * TYPE_SIZES[kind]
            if is_record:
                record_sizes.append(nbytes)
                record_begin = begin if record_begin is None else min(record_begin, begin)
            else:
                data_end = max(data_end, begin + nbytes)
        _remember(path, size, mtime_ns, [name for name, length in dims if length == 0], len(record_sizes))
        if record_begin is not None and numrecs != STREAMING:
            data_end = max(data_end, record_begin + numrecs * record_size(record_sizes))
        if data_end - 3 > size:  # the last value's padding may be missing at the end of the file
            raise CorruptFileError(path, f"truncated: the NetCDF header declares {data_end} bytes of data but the file has {size}")
