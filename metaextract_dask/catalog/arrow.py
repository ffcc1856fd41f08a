"""Rows -> an Arrow table built from buffers, so writing a catalog never imports pandas.

``pa.array`` and ``Table.from_pylist`` import pandas on first use (pyarrow
looks for pandas objects among the values): a quarter of a second of a
one-file scan's 1.4 s, spent by a CLI that never makes a DataFrame. The
catalog's columns have six simple types, so their buffers are made here
with NumPy and handed to ``Array.from_buffers``.
"""

from __future__ import annotations

import datetime
import operator
from typing import Any

#: string and binary columns use 32-bit offsets: a part with more text than this goes through pyarrow's own conversion
MAX_TEXT = 2**31 - 1

_NUMPY = {"int64": "int64", "int32": "int32", "float64": "float64", "timestamp": "int64"}
_EPOCH = datetime.datetime(1970, 1, 1)
_MICROSECOND = datetime.timedelta(microseconds=1)


def _micros(value: datetime.datetime) -> int:
    """A naive datetime as microseconds since 1970 (Arrow's ``timestamp[us]``)."""
    return (value.replace(tzinfo=None) - _EPOCH) // _MICROSECOND


def column_array(kind: str, values: list[Any]) -> Any:
    """One column (``kind`` from ``schema.ARROW_TYPES``, or ``list<KIND>``) as an Arrow array; None is null."""
    import numpy as np
    import pyarrow as pa

    if kind.startswith("list<"):
        return _list_array(kind[5:-1], values)
    arrow_type = pa.timestamp("us") if kind == "timestamp" else getattr(pa, {"bool": "bool_"}.get(kind, kind))()
    nulls = values.count(None)  # most of a row's columns are another reader's: counted in C, not looked at one by one
    if nulls == len(values):
        return pa.nulls(len(values), arrow_type)
    validity = pa.py_buffer(np.packbits(np.fromiter((v is not None for v in values), dtype=bool, count=len(values)),
                                        bitorder="little")) if nulls else None
    if kind in ("string", "binary"):
        data = [(v.encode("utf-8") if kind == "string" else bytes(v)) if v is not None else b"" for v in values]
        lengths = np.fromiter(map(len, data), dtype=np.int64, count=len(data))
        if int(lengths.sum()) > MAX_TEXT:
            return pa.array(values, type=arrow_type)
        offsets = np.zeros(len(data) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))]
    elif kind == "bool":
        bits = np.fromiter((bool(v) for v in values), dtype=bool, count=len(values))
        buffers = [validity, pa.py_buffer(np.packbits(bits, bitorder="little"))]
    else:
        if kind == "timestamp":
            values = [_micros(v) if v is not None else None for v in values]
        numbers = np.array([v if v is not None else 0 for v in values] if nulls else values, dtype=_NUMPY[kind])
        buffers = [validity, pa.py_buffer(numbers)]
    return pa.Array.from_buffers(arrow_type, len(values), buffers, null_count=nulls)


def _list_array(item: str, values: list[Any]) -> Any:
    """A list column: 32-bit offsets over one child array of every item."""
    import numpy as np
    import pyarrow as pa

    flat = [x for v in values if v is not None for x in v]
    child = column_array(item, flat)
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    nulls = len(values) - int(valid.sum())
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(np.fromiter((len(v) if v is not None else 0 for v in values), dtype=np.int64, count=len(values)), out=offsets[1:])
    validity = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(pa.list_(child.type), len(values), [validity, pa.py_buffer(offsets)], null_count=nulls,
                                 children=[child])


def rows_to_columns(rows: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    """The rows as one list per name; a missing key is None."""
    if not rows:
        return {name: [] for name in names}
    try:  # whole rows (``schema.to_row`` fills every column): transposed in C, one call per row
        pick = operator.itemgetter(*names)
        return dict(zip(names, map(list, zip(*map(pick, rows))))) if len(names) > 1 else {names[0]: [pick(row) for row in rows]}
    except KeyError:  # a row that lacks a column: null there
        return {name: [row.get(name) for row in rows] for name in names}


def table_from_columns(values: dict[str, list[Any]], rows: int, columns: list[tuple[str, str]]) -> Any:
    """``rows`` rows given as lists by column name, as a table with exactly ``columns`` (name, kind); a column
    ``values`` lacks is null."""
    import pyarrow as pa

    none: list[Any] = [None] * rows
    arrays = [column_array(kind, values.get(name) or none) for name, kind in columns]
    return pa.Table.from_arrays(arrays, schema=pa.schema([(name, a.type) for (name, _), a in zip(columns, arrays)]))


def table_from_rows(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> Any:
    """The rows as a table with exactly ``columns`` (name, kind); a missing key is null."""
    return table_from_columns(rows_to_columns(rows, [name for name, _ in columns]), len(rows), columns)
