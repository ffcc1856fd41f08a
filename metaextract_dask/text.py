"""File names need not be UTF-8; msgpack (Dask's wire format) and Parquet need it.

``safe_text`` escapes the bytes that are not UTF-8 (``bad\\xffname.h5``), so a
hostile file name reaches the catalog and the scheduler as readable text
instead of breaking them.
"""

from __future__ import annotations

from typing import Any


def safe_text(value: Any) -> Any:
    """``value`` with undecodable bytes escaped, if it is a string; else unchanged."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def safe_dict(values: dict[str, Any]) -> dict[str, Any]:
    """safe_text on every value of a flat dict."""
    return {k: safe_text(v) for k, v in values.items()}
