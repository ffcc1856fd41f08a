"""Kerchunk references of a netCDF classic file (CDF-1, CDF-2, CDF-5), made from its header.

A classic file stores each variable uncompressed, big-endian, at an offset
its header gives: a fixed-size variable in one piece (one chunk), a record
variable as one slab per record, the slabs of all record variables
interleaved record by record (one chunk per record: ``chunks`` of 1 along
the record dimension). So its references are the header read once, in the
same form as ``h5refs`` gives an HDF5-based file's: version 1, Zarr v2
metadata as JSON text, each chunk ``[url, offset, size]``, chunks under
``h5refs.INLINE`` bytes inlined. Attributes keep their types (kerchunk's
``NetCDF3ToZarr`` writes every one as text). The header is read with the
bounded reader of ``cdf_header`` (never past the file's end); a file whose
header that check refuses was refused before its references are asked for.

Character arrays are fixed-length strings, as in ``h5refs``: a reason, not a
reference; and a file still being written (a streaming record count) has
none.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from .cdf_header import NC_ATTRIBUTE, NC_DIMENSION, NC_VARIABLE, STREAMING, TYPE_SIZES, Bounded, open_header
from .h5refs import INLINE, fill_json, inline_chunk, metadata_json

#: the classic types as NumPy's (big-endian)
DTYPES = {1: "i1", 2: "S1", 3: ">i2", 4: ">i4", 5: ">f4", 6: ">f8", 7: "u1", 8: ">u2", 9: ">u4", 10: ">i8", 11: ">u8"}


def _attributes(r: Bounded, where: str) -> dict[str, Any]:
    """An attribute list's values: text for characters, a number for one value, else a list."""
    import numpy as np

    out: dict[str, Any] = {}
    for _ in range(r.items(NC_ATTRIBUTE, "attribute")):
        name = r.name(f"{where} attribute name")
        kind = r.u32(f"type of attribute {name}")
        if kind not in TYPE_SIZES:
            raise r.fail(f"attribute {name} has unknown type {kind}")
        n = r.count(f"length of attribute {name}")
        raw = r.take(n * TYPE_SIZES[kind] + (-(n * TYPE_SIZES[kind]) % 4), f"value of attribute {name}")[: n * TYPE_SIZES[kind]]
        if kind == 2:
            out[name] = raw.rstrip(b"\0").decode("utf-8", "replace")
        else:
            values = np.frombuffer(raw, dtype=DTYPES[kind]).tolist()
            out[name] = values[0] if len(values) == 1 else values
    return out


def classic_references(path: str, url: str) -> dict[str, Any]:
    """``{"refs", "virtualizable", "reasons", "n_chunks", "fill_attributes"}`` of a classic file, as
    ``h5refs.hdf5_references`` gives an HDF5-based file's: ``url`` is what the chunks point at (the path as scanned)."""
    from ..storage.urls import is_url

    size = None
    if is_url(path):
        from ..storage.remote import known_size

        size = known_size(path)
    else:
        import os

        size = os.stat(path).st_size
    with open_header(path, size) as f:
        magic = f.read(4)
        version = magic[3]
        r = Bounded(f, size, path, version)
        r.pos = 4
        numrecs = r.count("number of records")
        dims = r.dimensions(r.items(NC_DIMENSION, "dimension"))
        root = _attributes(r, "global")
        variables = []
        for _ in range(r.items(NC_VARIABLE, "variable")):
            name = r.name("variable name")
            ids = [r.count(f"dimension id of variable {name}") for _ in range(r.count(f"rank of variable {name}"))]
            attrs = _attributes(r, f"variable {name}")
            kind = r.u32(f"type of variable {name}")
            r.count(f"size of variable {name}")
            begin = struct.unpack(">Q" if version in (2, 5) else ">I", r.take(8 if version in (2, 5) else 4, f"offset of variable {name}"))[0]
            variables.append((name, ids, attrs, kind, begin))
        inline = {}
        refs: dict[str, Any] = {".zgroup": metadata_json({"zarr_format": 2}), ".zattrs": metadata_json(root)}
        reasons: list[str] = []
        if numrecs == STREAMING:
            reasons.append("the file is still being written (its record count is not set)")
        slabs = [math.prod(dims[i][1] for i in ids[1:]) * TYPE_SIZES[kind] for _n, ids, _a, kind, _b in variables
                 if ids and dims[ids[0]][1] == 0]
        record_size = slabs[0] if len(slabs) == 1 else sum(n + (-n % 4) for n in slabs)
        filled: list[str] = []
        n_chunks = 0
        for name, ids, attrs, kind, begin in variables:
            if kind == 2:
                reasons.append(f"/{name}: fixed-length strings (dtype |S1)")
                continue
            record = bool(ids) and dims[ids[0]][1] == 0
            shape = [numrecs if record and n == 0 else dims[i][1] for n, i in enumerate(ids)]
            chunks = [1, *shape[1:]] if record else shape
            fill = attrs.get("_FillValue")
            import numpy as np

            dtype = np.dtype(DTYPES[kind])
            if fill is not None:
                filled.append(name)
            refs[f"{name}/.zarray"] = metadata_json({"shape": shape, "chunks": chunks, "dtype": dtype.str,
                                                     "fill_value": fill_json(fill, dtype), "order": "C", "filters": None,
                                                     "dimension_separator": ".", "compressor": None, "zarr_format": 2})
            refs[f"{name}/.zattrs"] = metadata_json({"_ARRAY_DIMENSIONS": [dims[i][0] for i in ids],
                                                     **{k: v for k, v in attrs.items() if k != "_FillValue"}})
            piece = math.prod(chunks) * dtype.itemsize
            if piece == 0 or (record and numrecs == STREAMING):
                continue
            rest = ".0" * (len(shape) - 1)
            keys = [(f"{name}/{i}{rest}", begin + i * record_size) for i in range(numrecs)] if record else \
                [(f"{name}/{'.'.join('0' * len(shape)) or '0'}", begin)]
            for key, offset in keys:
                if offset + piece > size:
                    raise r.fail(f"variable {name} declares data beyond the end of the file")
                if piece < INLINE:
                    inline[key] = (offset, piece)
                else:
                    refs[key] = [url, offset, piece]
            n_chunks += len(keys)
        for key, (offset, piece) in sorted(inline.items(), key=lambda item: item[1][0]):  # small chunks, in file order
            f.seek(offset)
            refs[key] = inline_chunk(f.read(piece))
    if reasons:
        return {"refs": None, "virtualizable": False, "reasons": reasons, "n_chunks": n_chunks}
    return {"refs": {"version": 1, "refs": refs}, "virtualizable": True, "reasons": [], "n_chunks": n_chunks,
            "fill_attributes": filled}
