"""File names need not be UTF-8; msgpack (Dask's wire format) and Parquet need it.

``safe_text`` escapes the bytes that are not UTF-8 (``bad\\xffname.h5``), so a
hostile file name reaches the catalog and the scheduler as readable text
instead of breaking them.
"""

from __future__ import annotations

from typing import Any


def safe_text(value: Any) -> Any:
    """``value`` with undecodable bytes escaped, if it is a string; else unchanged."""
    if isinstance(value, str) and not value.isascii():  # ASCII holds no surrogate: the common case costs one C call
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


def safe_dict(values: dict[str, Any]) -> dict[str, Any]:
    """safe_text on every value of a flat dict."""
    return {k: safe_text(v) for k, v in values.items()}


#: C0 controls, DEL and C1 controls: what a terminal would act on instead of showing
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def for_terminal(value: Any) -> str:
    """``value`` as text safe to print: control characters shown as ``\\x1b``, ``\\x0a``, undecodable bytes escaped.

    File names and attribute values come from the files; printed raw, an
    escape sequence would drive the terminal and a newline would forge a line
    of output. Machine outputs (``--json``, the catalog) keep the exact text.
    """
    return str(safe_text(str(value))).translate(_CONTROLS)


#: what a spreadsheet takes for the start of a formula (OWASP's list): such a cell gets a leading apostrophe
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def for_spreadsheet(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never runs: ``=HYPERLINK(...)`` becomes ``'=HYPERLINK(...)``.

    Attribute values come from the files; a CSV export opened in a
    spreadsheet would evaluate a cell that starts like a formula.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def human_bytes(n: Any, base: int = 1000) -> str:
    """A byte count for people: ``512 B``, ``6.0 MB`` (``base`` 1000) or ``5.7 MiB`` (1024); ``-`` when not a number."""
    try:
        n = float(n)
    except (TypeError, ValueError):
        return "-"
    if n != n:  # NaN
        return "-"
    units = ("B", "KB", "MB", "GB", "TB", "PB") if base == 1000 else ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    for unit in units:
        if abs(n) < base or unit == units[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= base
    return f"{n:.1f} {units[-1]}"


#: a Bokeh ``CustomJSTickFormatter``'s code: an axis tick in the units of ``human_bytes(n, 1024)``
JS_BYTES = """
const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
let n = tick, i = 0;
while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
return i == 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
"""


def shortened(text: Any, width: int = 90) -> str:
    """``text`` shortened from the left to ``width`` characters (``…/run01/tas/tas_000123.nc``): the end of a path is the
    part that tells files apart."""
    whole = str(text)
    return whole if len(whole) <= width else "…" + whole[-(width - 1):]
