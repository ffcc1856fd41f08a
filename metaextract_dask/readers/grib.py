"""GRIB files (WMO gridded binary, editions 1 and 2: weather and climate model output) through ECMWF's eccodes.

A GRIB file is a sequence of self-contained messages, each one field (a
GRIB2 message may hold several): a parameter on a level at a time, on a grid.
The layout finds the messages by their own headers (``GRIB``, the edition and
the total length: a few bytes read per message, no library) and packs
consecutive messages into SECTION chunks of about ``chunk_size``; each chunk
task decodes its messages' fields with eccodes (``codes_new_from_message``;
a multi-field message through ecCodes' multi-field reading): the keys
``grib_ls`` prints and, unless ``metadata_only``, the values' statistics. The
record lists each field and sums them up by parameter, level, time and grid. Install with
``pip install 'metaextract_dask[grib]'``.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Sequence
from typing import Any

from ..core.errors import CorruptFileError
from ..core.model import ChunkSpec, ChunkType, FileInfo
from ..core.settings import StreamingConfig
from . import arrays
from .base import State, StreamChunkReader
from .probe import open_source

EXTRA_HINT = "GRIB support needs eccodes: pip install 'metaextract_dask[grib]'"
#: the keys recorded of each message (what ``grib_ls`` prints, and what tells fields apart)
KEYS = ("edition", "centre", "shortName", "name", "units", "paramId", "typeOfLevel", "level", "dataDate", "dataTime",
        "stepRange", "validityDate", "validityTime", "gridType", "Ni", "Nj", "numberOfPoints", "packingType")
#: messages listed one by one in a record (a file of more keeps its summaries and says how many it left out)
MAX_LISTED = 5000
#: how far past a message's end the next ``GRIB`` is looked for (padding between messages, bulletin headings)
RESYNC = 65536
#: a GRIB message sent as a WMO bulletin (the Manual on the GTS, WMO-No. 386), as weather services' feeds and archives
#: keep them: a heading (``HPHK89 LFPW 300000``, optionally ``RRA``) ending in CR CR LF, after a start-of-heading line
#: with its sequence number, and before that an FTP length and format (``00004771`` ``00``) or NCEP's
#: ``****0000008637****`` line; NCEP's NDFD files (``ds.maxt.bin``) put one more such line and heading before it all,
#: for the whole file. ecCodes reads the message past all that, and so does ``message_offsets``.
WMO_BULLETIN = re.compile(rb"(?:\*{4}\d{10}\*{4}\n[A-Z]{4}\d\d [A-Z]{4} \d{6}(?: [A-Z]{3})?\r\r\n)?"
                          rb"(?:\*{4}\d{10}\*{4}\n|\d{8}0[01])?(?:\x01\r\r\n\d{3,5}\r\r\n)?[A-Z]{4}\d\d [A-Z]{4} \d{6}(?: [A-Z]{3})?\r\r\nGRIB")


def message_offsets(path: str, size: int) -> tuple[list[tuple[int, int]], list[str]]:
    """(offset, length) of each message, found by its section 0 (``GRIB``, length, edition), and warnings."""
    found, warnings = [], []
    with open_source(path) as f:
        pos = 0
        while pos + 16 <= size:
            f.seek(pos)
            head = f.read(16)
            if head[:4] != b"GRIB":
                f.seek(pos)
                window = f.read(RESYNC)
                at = window.find(b"GRIB")
                if at < 0:
                    if window.strip(b"\x00 \r\n7\x03"):  # trailing padding, "7777" remains, a bulletin's end: no loss
                        warnings.append(f"{size - pos} bytes from offset {pos} hold no GRIB message")
                    break
                pos += at
                continue
            edition = head[7]
            length = int.from_bytes(head[8:16], "big") if edition == 2 else int.from_bytes(head[4:7], "big") if edition == 1 else 0
            if length < 16 or pos + length > size:
                warnings.append(f"message at offset {pos}: edition {edition}, length {length}: cut short or not GRIB; the rest "
                                "of the file is not read")
                break
            found.append((pos, length))
            pos += length
    return found, warnings


def _whole_message(head: bytes, at: int, size: int, read: Any) -> bool:
    """Whether ``head`` (16 bytes at offset ``at``) begins a GRIB message that ends with ``7777`` inside the file."""
    if len(head) < 16 or head[:4] != b"GRIB" or head[7] not in (1, 2):
        return False
    length = int.from_bytes(head[8:16], "big") if head[7] == 2 else int.from_bytes(head[4:7], "big")
    return 16 <= length and at + length <= size and read(at + length - 4, 4) == b"7777"


def _fields_in(data: bytes) -> int:
    """How many fields a GRIB2 message holds: its section 7s (a multi-field message repeats sections 2 to 7 after its
    section 1, as NCEP's forecasts pair u and v winds); 1 for GRIB1 and for what cannot be walked."""
    if len(data) < 16 or data[7] != 2:
        return 1
    pos, fields = 16, 0
    while pos + 5 <= len(data) and data[pos:pos + 4] != b"7777":
        length = int.from_bytes(data[pos:pos + 4], "big")
        if length < 5:
            return max(fields, 1)
        fields += data[pos + 4] == 7
        pos += length
    return max(fields, 1)


#: ecCodes' multi-field support is one switch of its default context: one thread at a time turns it on
_MULTI_FIELD = threading.Lock()


def _messages(data: bytes, offset: int, values: bool) -> list[dict[str, Any]]:
    """The message's fields' keys (and their values' statistics) from its bytes: one, or each field of a multi-field
    message, as grib_ls lists them (``field``: its place in the message), ecCodes splitting them from a copy in memory."""
    import eccodes

    if _fields_in(data) == 1:
        return [_field(eccodes.codes_new_from_message(data), offset, len(data), values)]
    out: list[dict[str, Any]] = []
    with _MULTI_FIELD, _in_memory(data) as f:
        eccodes.codes_grib_multi_support_on()
        try:
            while (handle := eccodes.codes_grib_new_from_file(f)) is not None:
                out.append({**_field(handle, offset, len(data), values), "field": len(out) + 1})
        finally:
            eccodes.codes_grib_multi_support_reset_file(f)
            eccodes.codes_grib_multi_support_off()
    return out


def _in_memory(data: bytes) -> Any:
    """A file holding ``data`` that no other process sees (ecCodes reads multi-field messages from files only)."""
    import os
    import tempfile

    f = os.fdopen(os.memfd_create("grib-message"), "w+b") if hasattr(os, "memfd_create") else tempfile.TemporaryFile()
    f.write(data)
    f.seek(0)
    return f


def _field(handle: Any, offset: int, length: int, values: bool) -> dict[str, Any]:
    """One field's keys (and its values' statistics); the handle is released."""
    import eccodes

    try:
        out: dict[str, Any] = {"offset": offset, "length": length}
        for key in KEYS:
            try:
                value = eccodes.codes_get(handle, key)
            except Exception:  # noqa: BLE001 - a key this edition or template lacks
                continue
            out[key] = arrays.to_jsonable(value)
        if values and str(out.get("gridType", "")).endswith("_bf"):  # bi-Fourier coefficients: no grid values, no mean either
            out["stats"] = {"note": "bi-Fourier field: coefficients, no grid values to take statistics of"}
        elif values and str(out.get("gridType", "")).startswith("sh"):  # spherical harmonics: coefficients, not grid values
            out["stats"] = {"mean": float(eccodes.codes_get(handle, "average")), "note": "spectral field: its mean is the global "
                            "mean (coefficient 0); there are no grid values for a minimum or a maximum"}
        elif values:
            import numpy as np

            decoded = np.asarray(eccodes.codes_get_values(handle), dtype="float64")
            # missing points: a bitmap's, or those complex packing's missing value management marks (no bitmap)
            marked = eccodes.codes_get(handle, "numberOfMissing") if eccodes.codes_is_defined(handle, "numberOfMissing") else 0
            bitmap = eccodes.codes_get(handle, "bitmapPresent") if eccodes.codes_is_defined(handle, "bitmapPresent") else 0
            missing = decoded == eccodes.codes_get(handle, "missingValue") if bitmap or marked else np.zeros(decoded.shape, bool)
            stats = arrays.cell_stats(np.ma.masked_array(decoded, missing))
            count = stats["count"]
            out["stats"] = {"min": stats["min"], "max": stats["max"], "mean": stats["sum"] / count if count else None, "count": count,
                            "missing": stats["fill_count"], "nan_count": stats["nan_count"]}
        return out
    finally:
        eccodes.codes_release(handle)


def eccodes_version() -> str:
    """The ecCodes library that answered: its definitions name parameters and grids (2.28 and 2.50 differ on some)."""
    import eccodes

    return str(eccodes.codes_get_api_version())


def _when(date: Any, time: Any) -> str | None:
    """A GRIB date (YYYYMMDD) and time (HHMM) as ISO text."""
    if not isinstance(date, int) or not isinstance(time, int):
        return None
    d, t = f"{date:08d}", f"{time:04d}"
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T{t[:2]}:{t[2:]}:00"


class GRIBReader(StreamChunkReader):
    """GRIB editions 1 and 2: messages, parameters, levels, times, grids and statistics."""

    name = "grib"
    native = True  # eccodes is C: a hostile message costs only its file in the sandbox
    formats = frozenset({"grib"})
    signatures = (("grib", 0, b"GRIB", "GRIB file (WMO gridded binary)"),
                  ("grib", 0, WMO_BULLETIN, "GRIB file (WMO gridded binary) in a WMO bulletin"))
    extensions = {".grib": "grib", ".grb": "grib", ".grib2": "grib", ".grb2": "grib", ".gb2": "grib", ".grib1": "grib"}
    media_types = {"grib": "application/x-grib"}
    columns = (("n_messages", "int32"), ("grib_editions", "list<string>"), ("first_valid_time", "string"),
               ("last_valid_time", "string"), *arrays.ARRAY_COLUMNS)

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("eccodes") else EXTRA_HINT

    def recognise(self, head: bytes, size: int, read: Any) -> str | None:
        """A file named as GRIB whose first message starts further in than any signature (a model's own header before
        it, as Meteo-France's ecoclimap files have 12,000 bytes): GRIB when a whole message, from ``GRIB`` to its
        ``7777``, starts in its first ``RESYNC`` bytes (where ``message_offsets``, like ecCodes, looks for one)."""
        window = read(0, min(size, RESYNC))
        at = window.find(b"GRIB")
        while at >= 0:
            found = _whole_message(window[at:at + 16], at, size, read)
            if found:
                return f"GRIB file (WMO gridded binary), its first message {at} bytes in"
            at = window.find(b"GRIB", at + 1)
        return None

    def open_dataset(self, path: str, fmt: str, **kwargs: Any) -> Any:
        """Through cfgrib (xarray's GRIB engine), writing no index file beside the data. A file whose messages are not
        one hypercube (several kinds of level) is a ``ValueError`` naming cfgrib's ``filter_by_keys`` choices: pass
        ``backend_kwargs={"filter_by_keys": {"typeOfLevel": "isobaricInhPa"}}`` to open one part."""
        import xarray as xr

        backend = {"indexpath": "", **kwargs.pop("backend_kwargs", {})}
        try:
            return xr.open_dataset(path, engine="cfgrib", backend_kwargs=backend, **kwargs)
        except Exception as exc:
            if type(exc).__name__ != "DatasetBuildError":
                raise
            choices = " ".join(str(exc).split())
            raise ValueError(f"{path}: its messages are not one hypercube; open a part of it with backend_kwargs="
                             f"{{'filter_by_keys': {{...}}}} (cfgrib: {choices[:400]})") from None

    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        messages, warnings = message_offsets(info.path, info.size)
        if not messages:
            raise CorruptFileError(info.path, "no GRIB message found: " + ("; ".join(warnings) or "the file holds none"))
        specs: list[ChunkSpec] = []
        group: list[tuple[int, int]] = []
        for message in messages:
            if group and message[0] + message[1] - group[0][0] > chunk_size:
                specs.append(self._section(info.path, len(specs), group))
                group = []
            group.append(message)
        specs.append(self._section(info.path, len(specs), group, tuple(warnings)))
        return specs

    @staticmethod
    def _section(path: str, index: int, group: list[tuple[int, int]], warnings: tuple[str, ...] = ()) -> ChunkSpec:
        start = group[0][0]
        return ChunkSpec(path, index, ChunkType.SECTION, start, group[-1][0] + group[-1][1] - start, (tuple(group), warnings))

    def metadata_layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        """Every message's keys are its metadata: all of them, decoded without their values."""
        return self.layout(info, chunk_size)

    def summarize(self, spec: ChunkSpec, config: StreamingConfig) -> State:
        key: Any = spec.key
        group: tuple[tuple[int, int], ...] = key[0]
        warnings: tuple[str, ...] = key[1]
        with open_source(spec.path) as f:
            f.seek(spec.offset)
            data = f.read(spec.size)
        messages, problems = [], list(warnings)
        for offset, length in group:
            try:
                messages += _messages(data[offset - spec.offset: offset - spec.offset + length], offset, not config.metadata_only)
            except Exception as exc:  # noqa: BLE001 - one message eccodes cannot decode: a warning, the others go on
                problems.append(f"message at offset {offset}: not decoded: {exc} [{type(exc).__name__}]")
        return {"messages": messages, "warnings": problems}

    def merge(self, a: State, b: State) -> State:
        return {"messages": sorted(a["messages"] + b["messages"], key=lambda m: (m["offset"], m.get("field", 1))),
                "warnings": a["warnings"] + b["warnings"]}

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        messages = state["messages"]
        parameters: dict[str, dict[str, Any]] = {}
        for m in messages:
            p = parameters.setdefault(str(m.get("shortName")), {"name": m.get("name"), "units": m.get("units"), "paramId": m.get("paramId"),
                                                               "messages": 0, "levels": set()})
            p["messages"] += 1
            p["levels"].add(f"{m.get('typeOfLevel')}={m.get('level')}")
            if "stats" in m and m["stats"].get("count"):
                s = p.setdefault("stats", {"min": m["stats"]["min"], "max": m["stats"]["max"]})
                s["min"], s["max"] = min(s["min"], m["stats"]["min"]), max(s["max"], m["stats"]["max"])
        for p in parameters.values():
            p["levels"] = sorted(p["levels"])
        times = sorted(t for t in (_when(m.get("validityDate"), m.get("validityTime")) for m in messages) if t)
        grids = sorted({(m.get("gridType"), m.get("Ni"), m.get("Nj"), m.get("numberOfPoints")) for m in messages}, key=str)
        warnings = list(state["warnings"])
        if len(messages) > MAX_LISTED:
            warnings.append(f"{len(messages)} messages: the first {MAX_LISTED} are listed, all are summed up")
        return {"n_messages": len(messages), "eccodes": eccodes_version(), "editions": sorted({m.get("edition") for m in messages if m.get("edition")}),
                "parameters": parameters, "valid_time": {"first": times[0], "last": times[-1]} if times else None,
                "grids": [{"gridType": g[0], "Ni": g[1], "Nj": g[2], "numberOfPoints": g[3]} for g in grids],
                "messages": messages[:MAX_LISTED], "warnings": warnings}

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        valid = record.get("valid_time") or {}
        return {"n_messages": record.get("n_messages"), "grib_editions": [str(e) for e in record.get("editions") or []],
                "first_valid_time": valid.get("first"), "last_valid_time": valid.get("last"),
                **arrays.array_columns(self.variable_rows(record))}

    def variable_rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for short, p in (record.get("parameters") or {}).items():
            entry = {"dtype": "float64", "attrs": {"units": p.get("units"), "long_name": p.get("name")}, "stats": p.get("stats") or {}}
            rows.append(arrays.variable_row(short, entry, [], [], None))
        return rows
