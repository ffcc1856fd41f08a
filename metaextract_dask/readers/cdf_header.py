"""A bounded check of a NetCDF classic (CDF-1, CDF-2, CDF-5) header.

libnetcdf trusts the header: a name declared 4 GB long is allocated, and a
truncated file reads its missing data as fill values without a word. This
parser reads the header in Python, checks every declared length against the
bytes the file really has before reading it, and checks the data the header
declares fits in the file. It allocates nothing larger than the file.
"""

from __future__ import annotations

import math
import struct

from ..errors import CorruptFileError

NC_DIMENSION, NC_VARIABLE, NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
STREAMING = 0xFFFFFFFF


class _Bounded:
    """Reads big-endian fields, refusing anything beyond the end of the file."""

    def __init__(self, f, size: int, path: str, version: int):
        self.f, self.size, self.path, self.pos = f, size, path, 0
        self.wide = version == 5  # CDF-5: 64-bit counts and sizes

    def fail(self, what: str) -> CorruptFileError:
        return CorruptFileError(self.path, f"NetCDF header is invalid: {what}")

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise self.fail(f"{what} declares {n} bytes at offset {self.pos}, beyond the end of the {self.size}-byte file")
        data = self.f.read(n)
        self.pos += n
        return data

    def u32(self, what: str) -> int:
        return struct.unpack(">I", self.take(4, what))[0]

    def count(self, what: str) -> int:
        return struct.unpack(">Q", self.take(8, what))[0] if self.wide else self.u32(what)

    def name(self, what: str) -> str:
        n = self.count(f"{what} name length")
        raw = self.take(n + (-n % 4), f"{what} name")
        return raw[:n].decode("utf-8", "replace")

    def items(self, tag: int, what: str) -> int:
        found, n = self.u32(f"{what} list tag"), self.count(f"number of {what}s")
        if found == 0 and n == 0:
            return 0
        if found != tag:
            raise self.fail(f"expected the {what} list, found tag {found:#x}")
        if n > (self.size - self.pos) // 8:  # each item needs at least 8 bytes
            raise self.fail(f"declares {n} {what}s, more than the file could hold")
        return n

    def attributes(self, where: str) -> None:
        for _ in range(self.items(NC_ATTRIBUTE, "attribute")):
            name = self.name(f"{where} attribute")
            kind = self.u32(f"type of attribute {name}")
            if kind not in TYPE_SIZES:
                raise self.fail(f"attribute {name} has unknown type {kind}")
            n = self.count(f"length of attribute {name}") * TYPE_SIZES[kind]
            self.take(n + (-n % 4), f"value of attribute {name}")


def check_classic_header(path: str, size: int) -> None:
    """Raise CorruptFileError unless the header is sound and its data fits in the file."""
    with open(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[:3] != b"CDF" or magic[3] not in (1, 2, 5):
            raise CorruptFileError(path, "not a NetCDF classic file (bad magic number)")
        r = _Bounded(f, size, path, magic[3])
        r.pos = 4
        numrecs = r.count("number of records")
        dims = []
        for _ in range(r.items(NC_DIMENSION, "dimension")):
            name = r.name("dimension")
            dims.append((name, r.count(f"length of dimension {name}")))
        r.attributes("global")
        data_end, record_sizes, record_begin = r.pos, [], None
        for _ in range(r.items(NC_VARIABLE, "variable")):
            name = r.name("variable")
            ndims = r.count(f"rank of variable {name}")
            if ndims > 1024:
                raise r.fail(f"variable {name} declares {ndims} dimensions")
            ids = [r.count(f"dimension id of variable {name}") for _ in range(ndims)]
            if any(i >= len(dims) for i in ids):
                raise r.fail(f"variable {name} uses a dimension that does not exist")
            r.attributes(f"variable {name}")
            kind = r.u32(f"type of variable {name}")
            if kind not in TYPE_SIZES:
                raise r.fail(f"variable {name} has unknown type {kind}")
            r.count(f"size of variable {name}")  # vsize: can be a sentinel for big variables; recomputed below
            begin = struct.unpack(">Q" if magic[3] in (2, 5) else ">I", r.take(8 if magic[3] in (2, 5) else 4, f"offset of variable {name}"))[0]
            shape = [dims[i][1] for i in ids]
            is_record = bool(shape) and shape[0] == 0
            nbytes = math.prod(shape[1:] if is_record else shape) * TYPE_SIZES[kind]
            if is_record:
                record_sizes.append(nbytes)
                record_begin = begin if record_begin is None else min(record_begin, begin)
            else:
                data_end = max(data_end, begin + nbytes)
        if record_begin is not None and numrecs != STREAMING:
            # records are padded to 4 bytes per variable, except when there is only one record variable
            record_size = record_sizes[0] if len(record_sizes) == 1 else sum(n + (-n % 4) for n in record_sizes)
            data_end = max(data_end, record_begin + numrecs * record_size)
        if data_end - 3 > size:  # the last value's padding may be missing at the end of the file
            raise CorruptFileError(path, f"truncated: the NetCDF header declares {data_end} bytes of data but the file has {size}")
