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
import gzip
import importlib.util
import math
from typing import Any, Iterator

from ..core.model import FileInfo
from ..core.settings import StreamingConfig
from . import arrays
from .base import State
from .detect import GZIP_MAGIC

EXTRA_HINT = "FITS support needs astropy: pip install 'metaextract_dask[fits]'"
#: header cards kept per HDU (a header of thousands of cards is summarised: the count is always there)
MAX_CARDS = 1000


@contextlib.contextmanager
def open_fits(path: str) -> Iterator[Any]:
    """The file's HDUs, read-only: a local file through the scan's pinned descriptor (never another file), a remote
    object through ranged reads."""
    from astropy.io import fits

    from ..core.pin import opened
    from ..storage.urls import is_url

    if is_url(path):  # through the scan's own counted ranged reads: astropy would download an http URL into its cache
        from ..storage.remote import open_remote

        with open_remote(path) as source, _unzipped(source) as stream, \
                fits.open(stream, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:  # astropy unzips files, not objects
            yield hdul
        return
    # not memory-mapped: a header that declares more data than the file holds made mmap fail the whole file
    try:
        hdul = fits.open(opened(path), mode="readonly", memmap=False, lazy_load_hdus=True, ignore_missing_simple=False)
    except (OSError, ValueError, EOFError) as exc:  # astropy reads past the primary's data to open: its header still reads
        yield _primary_only(opened(path), exc)
        return
    with hdul:
        yield hdul


def _unzipped(f: Any) -> Any:
    """A binary file object as a context: decompressed when it is a gzip stream (``x.fits.gz``), as it is else."""
    gzipped = f.read(2) == GZIP_MAGIC
    f.seek(0)
    return gzip.GzipFile(fileobj=f, mode="rb") if gzipped else contextlib.nullcontext(f)


class _HeaderOnly:
    """A primary HDU known by its header only (``_primary_only``): its data is not read."""

    kind, name, ver, is_image, data, section, columns = "PrimaryHDU", "PRIMARY", 1, True, None, None, None

    def __init__(self, header: Any) -> None:
        self.header = header


class _PrimaryOnly(list):  # type: ignore[type-arg]
    """The primary HDU of a file astropy cannot open (its header only), and why."""

    problem = ""


def _primary_only(path: str, exc: BaseException) -> _PrimaryOnly:
    """The primary header alone, parsed without its data: a file whose header declares more data than it holds."""
    from astropy.io import fits

    with open(path, "rb") as f, _unzipped(f) as stream:  # a cut x.fits.gz too
        header = fits.Header.fromfile(stream)  # raises when even the header does not parse: the file is not FITS then
    out = _PrimaryOnly([_HeaderOnly(header)])
    out.problem = f"only the primary header was read: {exc} [{type(exc).__name__}] (its data ends before what the header declares?)"
    return out


def _hdus(hdul: Any, warnings: list[str] | None = None) -> Iterator[tuple[int, Any]]:
    """(index, HDU) in turn, loaded one at a time: a header that declares more data than the file holds (or a broken
    next HDU) ends the list there, with a warning, instead of failing the file."""
    index = 0
    while True:
        try:
            hdu = hdul[index]
        except IndexError:
            return
        except Exception as exc:  # noqa: BLE001 - what astropy raises on a damaged file varies
            if warnings is not None:
                warnings.append(f"HDU {index} and after not read: {exc} [{type(exc).__name__}]")
            return
        yield index, hdu
        index += 1


def _past_end(hdul: Any, hdu: Any) -> str | None:
    """Why an HDU's data cannot be read whole: it would end past the end of the file (a truncated or lying header).
    Not known of a compressed file (astropy knows no size of its decompressed stream: a short one fails its read)."""
    if _compressed(hdul):
        return None
    size = getattr(getattr(hdul, "_file", None), "size", None)
    offset, length = getattr(hdu, "_data_offset", None), getattr(hdu, "_data_size", None)
    if isinstance(size, int) and isinstance(offset, int) and isinstance(length, int) and offset + length > size:
        return f"its data would end at byte {offset + length}, past the end of the file ({size} bytes): not read"
    return None


def _compressed(hdul: Any) -> bool:
    """Whether astropy reads this file through a decompressing stream (``x.fits.gz``)."""
    return bool(getattr(getattr(hdul, "_file", None), "compression", None))


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
    """Every HDU as ``fitsinfo`` lists it, with its header and, for a table, its columns; what astropy warns of while
    reading them (a truncated last header, cards that do not verify) is among the record's warnings."""
    import warnings as python_warnings

    with python_warnings.catch_warnings(record=True) as caught:
        python_warnings.simplefilter("always")
        out = _describe(hdul)
    said = [" ".join(str(w.message).split()) for w in caught]
    out["warnings"] += [w for i, w in enumerate(said) if w and w not in said[:i]]
    return out


def _describe(hdul: Any) -> dict[str, Any]:
    hdus: list[dict[str, Any]] = []
    warnings: list[str] = [hdul.problem] if getattr(hdul, "problem", "") else []
    for index, hdu in _hdus(hdul, warnings):
        ver = getattr(hdu, "ver", None)
        entry: dict[str, Any] = {"index": index, "name": hdu.name, "ver": int(ver) if ver is not None else 1,
                                 "type": getattr(hdu, "kind", type(hdu).__name__), "cards": len(hdu.header.cards)}
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
        short = _past_end(hdul, hdu)
        if short:
            entry.setdefault("warnings", []).append(short)
            warnings.append(f"HDU {index}: {short}")
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
    opens_gzip = True  # astropy reads x.fits.gz itself
    columns = (("n_hdus", "int32"), ("fits_object", "string"), ("telescope", "string"), ("instrument", "string"),
               ("date_obs", "string"), *arrays.ARRAY_COLUMNS)
    metadata_key = "hdus"
    array_word = "hdus"

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("astropy") else EXTRA_HINT

    def open(self, path: str) -> Any:
        return open_fits(path)

    def one_pass(self, info: FileInfo) -> bool:
        from .probe import read_head

        return read_head(info.path, 2) == GZIP_MAGIC  # astropy decompresses from the start for every read of its data

    def arrays_of(self, handle: Any) -> list[arrays.ArrayInfo]:
        found: list[arrays.ArrayInfo] = []
        if isinstance(handle, _PrimaryOnly):  # its data was not found where its header says: nothing to read
            return found
        for index, hdu in _hdus(handle):
            try:
                shape = _dimensions(hdu)
                if hdu.is_image and shape and math.prod(shape) and not _past_end(handle, hdu):
                    itemsize = abs(int(hdu.header.get("BITPIX", 8))) // 8
                    found.append(arrays.ArrayInfo(_label(index), tuple(shape), itemsize, None))
            except Exception:  # noqa: BLE001 - a header whose axes do not read: structure only (its record says why)
                continue
        return found

    def describe(self, handle: Any, metadata_only: bool = False) -> dict[str, Any]:
        return describe_hdus(handle)

    def array(self, handle: Any, name: str) -> tuple[Any, Any]:
        hdu = handle[int(name[3:])]
        blank = hdu.header.get("BLANK") if int(hdu.header.get("BITPIX", 8)) > 0 else None
        scaled = hdu.header.get("BSCALE", 1) != 1 or hdu.header.get("BZERO", 0) != 0
        # a section reads only the slab asked for; not through gzip, where astropy decompresses the stream to its end
        # for each slab: there the image is read whole once (``one_pass``: the file's slabs are read in one task)
        section = getattr(hdu, "section", None) if not _compressed(handle) else None
        return (section if section is not None else hdu.data), (None if scaled else blank)  # scaled: astropy gives BLANK as NaN

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
