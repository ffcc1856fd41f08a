"""Where a catalog keeps kerchunk references: ``CATALOG.references/``, one entry per file, named from its path.

A record made with ``references`` on carries the reference set; the writer
moves it here (a file of a few chunks into one JSON file, a file of many into
fsspec's Parquet reference layout, which reads lazily) and leaves in the row
the entry's name (``references``) and the verdict (``virtualizable``). The
folder sits beside the catalog, like the variables table, so that
``dask.dataframe.read_parquet(CATALOG)`` never reads references as rows.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..core.settings import setting
from . import sidecars

#: the references folder is the catalog's name with this suffix, beside it
REFERENCES = ".references"


def references_folder(catalog: str) -> str:
    """``catalog`` -> ``catalog.references``."""
    return sidecars.sidecar_folder(catalog, REFERENCES)


def entry_name(path_bytes: bytes, parquet: bool) -> str:
    """A file's entry: a digest of its name's bytes (names may hold any byte), ``.json`` or ``.parq`` (a folder)."""
    return sidecars.entry_stem(path_bytes) + (".parq" if parquet else ".json")


def store(catalog: str, path_bytes: bytes, refs: dict[str, Any] | bytes, n_chunks: int | None = None,
          unsynced: sidecars.Unsynced | None = None) -> str:
    """Write one file's reference set crash-safe; returns the entry's name.

    Files with at least ``metaextract.references.parquet-min-chunks`` chunk
    references are written as Parquet references (``LazyReferenceMapper``):
    opening them reads only the chunk records a read needs. ``refs`` may
    come already encoded as JSON (``h5refs.ReferencesJSON``): then it is
    written as it is (parsed only for the Parquet layout). ``unsynced``: as
    ``sidecars.write_entry``'s (a JSON entry's fsync left to the writer).
    """
    text = bytes(refs) if isinstance(refs, (bytes, bytearray)) else None
    if text is not None and not (text.startswith(b'{"version":1,"refs":{') and text.endswith(b"}}")):
        raise ValueError("not a kerchunk reference set")

    def parsed() -> dict[str, Any]:
        return json.loads(text) if text is not None else refs  # type: ignore[return-value]

    folder = references_folder(catalog)
    if not isinstance(n_chunks, int):
        n_chunks = sum(1 for k in parsed()["refs"] if not k.rsplit("/", 1)[-1].startswith("."))
    parquet = n_chunks >= int(setting("references.parquet-min-chunks"))
    name = entry_name(path_bytes, parquet)
    final = os.path.join(folder, name)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.tmp")
    sidecars.remove(os.path.join(folder, entry_name(path_bytes, not parquet)))  # the other layout, from an earlier scan
    if not parquet:  # dumps: the C encoder (json.dump streams in Python, 5x slower)
        return sidecars.write_entry(catalog, REFERENCES, name, text or json.dumps(refs, separators=(",", ":")).encode(),
                                   unsynced)
    os.makedirs(folder, exist_ok=True)
    _write_parquet(tmp, parsed()["refs"])
    sidecars.remove(final)
    os.replace(tmp, final)
    return name


def _write_parquet(folder: str, refs: dict[str, Any]) -> None:
    """fsspec's Parquet reference layout (``.zmetadata`` plus ``VAR/refs.N.parq``) for one reference set."""
    import fsspec
    from fsspec.implementations.reference import LazyReferenceMapper

    os.makedirs(folder, exist_ok=True)
    out = LazyReferenceMapper.create(root=folder, fs=fsspec.filesystem("file"), record_size=100_000, engine="pyarrow")
    for key, value in refs.items():
        out[key] = value.encode() if isinstance(value, str) and key.rsplit("/", 1)[-1].startswith(".") else \
            inline_bytes(value) if isinstance(value, str) else value
    out.flush()


def inline_bytes(value: str) -> bytes:
    """An inlined chunk (UTF-8 text or ``base64:``) back to its bytes."""
    import base64

    return base64.b64decode(value[7:]) if value.startswith("base64:") else value.encode()


def location(catalog: str, name: str) -> str:
    """The entry's path, refusing any name that would leave the references folder (a row is data, not a path to trust)."""
    return sidecars.entry_location(catalog, REFERENCES, name)


def checked(catalog: str, name: Any, path: str) -> dict[str, Any] | str:
    """The reference set a row names, checked as untrusted input: a JSON entry's set (a dict), or a Parquet entry's folder.

    Refused (``trust.CatalogInputError``): an entry that is a symbolic link or
    holds one, a missing or unreadable one, and one whose chunks point at
    anything but ``path``, the file of the row.
    """
    from .trust import CatalogInputError, check_reference_targets, json_reference_targets, load_json, parquet_reference_targets

    entry = sidecars.existing_entry(catalog, REFERENCES, name)
    try:
        if os.path.isdir(entry):
            targets = parquet_reference_targets(entry)
            found: dict[str, Any] | str = entry
        else:
            with open(entry, "rb") as f:
                found = load_json(f.read(), entry)
            if not isinstance(found, dict):
                raise CatalogInputError(f"{entry}: not a kerchunk reference set")
            targets = json_reference_targets(found)
    except OSError as exc:
        raise CatalogInputError(f"{entry}: cannot be read ({exc.strerror or exc})") from None
    except CatalogInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a Parquet entry that does not read: refused in one line
        raise CatalogInputError(f"{entry}: not a reference set ({type(exc).__name__}: {exc})") from None
    check_reference_targets(targets, path, name)
    return found


def sweep(catalog: str, kept: set[str]) -> int:
    """Remove entries no row names any more (their files were deleted or re-scanned without references)."""
    return sidecars.sweep(catalog, REFERENCES, kept)
