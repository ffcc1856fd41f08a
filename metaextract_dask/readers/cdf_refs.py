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
import os
from typing import Any

from .cdf_header import DTYPES, NC_DIMENSION, NC_VARIABLE, STREAMING, TYPE_SIZES, Bounded, open_header, record_size
from .h5refs import INLINE, fill_json, inline_chunk, metadata_json


def classic_references(path: str, url: str) -> dict[str, Any]:
    """``{"refs", "virtualizable", "reasons", "n_chunks", "fill_attributes"}`` of a classic file, as
    ``h5refs.hdf5_references`` gives an HDF5-based file's: ``url`` is what the chunks point at (the path as scanned)."""
    import numpy as np

    from ..storage.urls import is_url

    if is_url(path):
        from ..storage.remote import known_size

        size = known_size(path)
    else:
        size = os.stat(path).st_size
    with open_header(path, size) as f:
        r = Bounded(f, size, path, f.read(4)[3])
        r.pos = 4
        numrecs = r.count("number of records")
        dims = r.dimensions(r.items(NC_DIMENSION, "dimension"))
        root = r.attributes("global", values=True)
        variables = [r.variable(len(dims), values=True) for _ in range(r.items(NC_VARIABLE, "variable"))]
        inline = {}
        refs: dict[str, Any] = {".zgroup": metadata_json({"zarr_format": 2}), ".zattrs": metadata_json(root)}
        reasons: list[str] = []
        if numrecs == STREAMING:
            reasons.append("the file is still being written (its record count is not set)")
        slabs = [math.prod(dims[i][1] for i in ids[1:]) * TYPE_SIZES[kind] for _n, ids, _a, kind, _b in variables
                 if ids and dims[ids[0]][1] == 0]
        step = record_size(slabs)
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
            keys = [(f"{name}/{i}{rest}", begin + i * step) for i in range(numrecs)] if record else \
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
