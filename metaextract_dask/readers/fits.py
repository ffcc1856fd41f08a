"""FITS files (astronomy's Flexible Image Transport System) through astropy: every HDU, its header, its data.

The record lists each HDU as ``fitsinfo`` does (number, name, version, type,
cards, dimensions, format), with its header's cards (values as JSON, the
COMMENT and HISTORY cards counted) and a table's columns. Image HDUs are
arrays: their statistics are read in slabs like an HDF5 dataset's (chunk reads
as tasks), of the values as astropy gives them (BSCALE and BZERO applied;
BLANK counted as fill). Tables are structure only. Install with
``pip install 'metaextract_dask[fits]'``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
from typing import Any, Iterator

from ..core.model import FileInfo
from ..core.settings import StreamingConfig
from . import arrays
from .base import State

EXTRA_HINT = "FITS support needs astropy: pip install 'metaextract_dask[fits]'"
#: header cards kept per HDU (a header of thousands of cards is summarised: the count is always there)
MAX_CARDS = 1000


@contextlib.contextmanager
def open_fits(path: str) -> Iterator[Any]:
    """The file's HDUs, read-only: a local file memory-mapped through the scan's pinned descriptor (never another file),
    a remote object through ranged reads."""
    from astropy.io import fits

    from ..core.pin import opened
    from ..storage.urls import is_url

    if is_url(path):  # through the scan's own counted ranged reads: astropy would download an http URL into its cache
        from ..storage.remote import open_remote

        with open_remote(path) as source, fits.open(source, mode="readonly", memmap=False, lazy_load_hdus=False) as hdul:
            yield hdul
        return
    with fits.open(opened(path), mode="readonly", memmap=True, lazy_load_hdus=False, ignore_missing_simple=False) as hdul:
        yield hdul


def _label(index: int) -> str:
    """An HDU's array name: its number (names and versions repeat: SCI 1, SCI 2...)."""
    return f"HDU{index}"


def _dimensions(hdu: Any) -> list[int]:
    """The data's shape in NumPy order (astropy's), from the header: nothing of the data is read."""
    naxis = int(hdu.header.get("NAXIS", 0) or 0)
    return [int(hdu.header.get(f"NAXIS{i}", 0) or 0) for i in range(naxis, 0, -1)]


def _header(hdu: Any) -> tuple[dict[str, Any], int, int]:
    """(cards as {keyword: value}, COMMENT cards, HISTORY cards)."""
    cards: dict[str, Any] = {}
    comments = history = 0
    for card in hdu.header.cards:
        key = card.keyword
        if key == "COMMENT":
            comments += 1
        elif key == "HISTORY":
            history += 1
        elif key and len(cards) < MAX_CARDS and key not in cards:
            try:
                cards[key] = arrays.to_jsonable(card.value)
            except Exception:  # noqa: BLE001 - a card astropy cannot parse: its text
                cards[key] = str(card.image).strip()
    return cards, comments, history


def describe_hdus(hdul: Any) -> dict[str, Any]:
    """Every HDU as ``fitsinfo`` lists it, with its header and, for a table, its columns."""
    hdus, warnings = [], []
    for index, hdu in enumerate(hdul):
        ver = getattr(hdu, "ver", None)
        entry: dict[str, Any] = {"index": index, "name": hdu.name, "ver": int(ver) if ver is not None else 1,
                                 "type": type(hdu).__name__, "cards": len(hdu.header.cards)}
        try:
            entry["shape"] = _dimensions(hdu)
            bitpix = hdu.header.get("BITPIX")
            if entry["type"] == "GroupsHDU":  # random groups: NAXIS1 is 0; each group is NAXIS2... with PCOUNT parameters
                entry["shape"] = entry["shape"][:-1]
                entry["dtype"] = _image_dtype(hdu)
                entry["groups"], entry["parameters"] = int(hdu.header.get("GCOUNT", 1)), int(hdu.header.get("PCOUNT", 0))
            elif hdu.is_image and entry["shape"] and math.prod(entry["shape"]):  # no data: fitsinfo names no format
                entry["dtype"] = _image_dtype(hdu)
                entry["bitpix"] = int(bitpix) if bitpix is not None else None
            elif hasattr(hdu, "columns") and hdu.columns is not None:
                entry["columns"] = [{"name": c.name, "format": str(c.format), "unit": c.unit} for c in hdu.columns]
                entry["rows"] = int(hdu.header.get("NAXIS2", 0) or 0)
        except Exception as exc:  # noqa: BLE001 - one HDU's data description: a warning on it
            entry["warnings"] = [f"data not described: {exc} [{type(exc).__name__}]"]
            warnings.append(f"HDU {index}: data not described: {exc}")
        entry["header"], entry["comment_cards"], entry["history_cards"] = _header(hdu)
        hdus.append(entry)
    return {"hdus": hdus, "warnings": warnings}


def _image_dtype(hdu: Any) -> str:
    """The values' type as astropy gives them: BITPIX's, or float where BSCALE/BZERO scale them (an unsigned integer
    for the usual BZERO of 2**(BITPIX-1))."""
    bitpix = int(hdu.header.get("BITPIX", 8))
    raw = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}.get(bitpix, str(bitpix))
    bscale, bzero = hdu.header.get("BSCALE", 1), hdu.header.get("BZERO", 0)
    if bscale == 1 and bzero == 0:
        return raw
    if bscale == 1 and bitpix > 8 and bzero == 2 ** (bitpix - 1):
        return "u" + raw
    return "float32" if bitpix in (8, 16) else "float64"


class FITSReader(arrays.ArrayFileReader):
    """FITS files: HDUs, headers and image statistics."""

    name = "fits"
    formats = frozenset({"fits"})
    signatures = (("fits", 0, b"SIMPLE  =", "FITS file"),)
    extensions = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".fz": "fits"}
    media_types = {"fits": "application/fits"}
    columns = (("n_hdus", "int32"), ("fits_object", "string"), ("telescope", "string"), ("instrument", "string"),
               ("date_obs", "string"), *arrays.ARRAY_COLUMNS)
    metadata_key = "hdus"
    array_word = "hdus"

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("astropy") else EXTRA_HINT

    def open(self, path: str) -> Any:
        return open_fits(path)

    def arrays_of(self, handle: Any) -> list[arrays.ArrayInfo]:
        found = []
        for index, hdu in enumerate(handle):
            shape = _dimensions(hdu)
            if hdu.is_image and shape and math.prod(shape):
                itemsize = abs(int(hdu.header.get("BITPIX", 8))) // 8
                found.append(arrays.ArrayInfo(_label(index), tuple(shape), itemsize, None))
        return found

    def describe(self, handle: Any, metadata_only: bool = False) -> dict[str, Any]:
        return describe_hdus(handle)

    def array(self, handle: Any, name: str) -> tuple[Any, Any]:
        hdu = handle[int(name[3:])]
        blank = hdu.header.get("BLANK") if int(hdu.header.get("BITPIX", 8)) > 0 else None
        scaled = hdu.header.get("BSCALE", 1) != 1 or hdu.header.get("BZERO", 0) != 0
        return hdu.data, (None if scaled else blank)  # scaled: astropy gives BLANK as NaN

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        described = state["meta"]
        for entry in described["hdus"]:
            stats = state["stats"].get(_label(entry["index"]))
            if stats is not None and "error" in stats:
                entry.setdefault("warnings", []).append(f"statistics: {stats['error']}")
                described["warnings"].append(f"HDU {entry['index']}: statistics: {stats['error']}")
            elif stats is not None:
                entry["stats"] = arrays.final_stats(stats, stats.get("cells_total", 0))
        return {"n_hdus": len(described["hdus"]), "hdus": described["hdus"], "warnings": described["warnings"]}

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        primary = ((record.get("hdus") or [{}])[0] or {}).get("header") or {}
        text = lambda v: v if isinstance(v, str) and v else None  # noqa: E731
        return {"n_hdus": record.get("n_hdus"), "fits_object": text(primary.get("OBJECT")), "telescope": text(primary.get("TELESCOP")),
                "instrument": text(primary.get("INSTRUME")), "date_obs": text(primary.get("DATE-OBS")),
                **arrays.array_columns(self.variable_rows(record))}

    def variable_rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for entry in record.get("hdus") or []:
            if "dtype" in entry and entry.get("shape"):
                header = entry.get("header") or {}
                as_array = {**entry, "attrs": {"units": header.get("BUNIT"), "long_name": header.get("EXTNAME")}}
                rows.append(arrays.variable_row(_label(entry["index"]), as_array, [], [], header.get("BLANK")))
        return rows
