"""A catalog is input: what it says is checked before anything acts on it.

Catalogs travel between people and machines, and anyone who can write one can
change every byte of it: rows, records, the manifest, the reference and
thumbnail entries beside it. So nothing read from a catalog is trusted:

- a record is JSON of bounded depth that must be an object, else it is empty
  (``load_record``); numbers are finite or absent (``finite``);
- the manifest names the roots the catalog's scans read (``scanned_roots``); a
  row whose file lies under none of them is refused by ``open`` and the
  exports (``check_in_roots``): an edited row naming ``/etc/shadow`` reads
  nothing;
- a reference set may point at its own row's file only
  (``check_reference_targets``): an edited one that points at another file
  or a server is refused before any chunk is read;
- sidecar entries that are symbolic links, or folders holding links, are
  refused (``sidecars.existing_entry``, ``parquet_reference_targets``);
- parts that are links, folders, not Parquet or of a foreign schema are
  left out with one warning each (``read.checked_parts``).

Each refusal is a ``CatalogInputError``: a ``ValueError`` with one line that
names the catalog and what is wrong.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

#: the catalog's manifest: format, parts, rows, columns, the roots its scans read
MANIFEST = "_manifest.json"
#: JSON nested deeper than this (records are about 8 deep) is not a record: refused before it can exhaust the stack
MAX_JSON_DEPTH = 100


class CatalogInputError(ValueError):
    """Something read from a catalog is not what a scan writes: refused, in one line."""


def _depth_ok(value: Any) -> bool:
    """Whether ``value`` nests at most ``MAX_JSON_DEPTH`` deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return True


def load_json(text: str | bytes, what: str) -> Any:
    """JSON text parsed, nested at most ``MAX_JSON_DEPTH`` deep; a ``CatalogInputError`` naming ``what`` otherwise."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise CatalogInputError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, TypeError) as exc:
        raise CatalogInputError(f"{what}: not JSON ({exc})") from None
    if not _depth_ok(value):
        raise CatalogInputError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def load_record(value: Any) -> dict[str, Any]:
    """A row's ``metadata`` as a dict: JSON text (Parquet) or an object (JSON Lines); {} when it is anything else."""
    if isinstance(value, dict):
        return value if _depth_ok(value) else {}
    if not isinstance(value, (str, bytes)):
        return {}
    try:
        record = load_json(value, "record")
    except CatalogInputError:
        return {}
    return record if isinstance(record, dict) else {}


def section(record: dict[str, Any]) -> dict[str, Any]:
    """The reader's own section of a record, or {}."""
    reader = record.get("reader")
    own = record.get(reader) if isinstance(reader, str) else None
    return own if isinstance(own, dict) else {}


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a dict, else {}: the sub-objects of an untrusted record."""
    return value if isinstance(value, dict) else {}


def finite(value: Any) -> float | None:
    """A finite number, or None (NaN, infinities, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def text(value: Any) -> str | None:
    """``value`` when it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def read_manifest(catalog: str) -> dict[str, Any]:
    """The catalog's ``_manifest.json`` as a dict; {} when there is none; a ``CatalogInputError`` when it is not a manifest."""
    path = os.path.join(catalog, MANIFEST)
    if not os.path.lexists(path):
        return {}
    if os.path.islink(path) or not os.path.isfile(path):
        raise CatalogInputError(f"{catalog}: its {MANIFEST} is not a regular file")
    with open(path, "rb") as f:
        manifest = load_json(f.read(1 << 24), f"{catalog}: its {MANIFEST}")
    if not isinstance(manifest, dict):
        raise CatalogInputError(f"{catalog}: its {MANIFEST} is not a JSON object")
    return manifest


def scanned_roots(catalog: str) -> list[str]:
    """The folders, files and URL prefixes the catalog's scans were given (recorded in its manifest)."""
    roots = read_manifest(catalog).get("roots")
    if roots is None:
        raise CatalogInputError(f"{catalog}: its manifest records no scanned roots (a catalog made before they were "
                                "recorded, or edited): scan into it again to record them")
    if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
        raise CatalogInputError(f"{catalog}: its manifest's roots are not a list of paths")
    return roots


def _under(path: str, root: str) -> bool:
    from ..storage.urls import is_url

    if is_url(root) or is_url(path):
        return path == root or path.startswith(root.rstrip("/") + "/")
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_in_roots(catalog: str, path: Any, roots: list[str] | None = None) -> str:
    """Where the file of a row's ``path`` is (``located``) when it (or an archive member's container) lies under the
    catalog's scanned roots; else refused."""
    from ..storage.urls import container_of

    if not isinstance(path, str) or not path:
        raise CatalogInputError(f"{catalog}: a row has no path")
    roots = scanned_roots(catalog) if roots is None else roots
    found = located(catalog, path, roots)
    target = container_of(found) or found
    if not any(_under(target, root) for root in roots):
        raise CatalogInputError(f"{found}: not under the folders this catalog's scans read ({', '.join(roots[:3])}); "
                                "a row naming it is not trusted")
    return found


def located(catalog: str, path: str, roots: list[str]) -> str:
    """A row's path from any working folder: rows keep paths as the scan was given them (``data/2020/x.nc``), so a
    relative one is joined to the working folder of the scan (the manifest's ``bases``), or to a folder above a scanned
    root, whichever lands under a root and exists (the first under a root when none exists); absolute paths and URLs
    are as they are."""
    from ..storage.urls import is_url

    if is_url(path) or os.path.isabs(path):
        return path
    bases = scan_bases(catalog)
    above = [a for root in roots if not is_url(root) for a in _ancestors(root)]
    candidates = [os.path.normpath(os.path.join(base, path)) for base in [*bases, *above]] + [os.path.abspath(path)]
    under = [c for c in candidates if any(_under(c, root) for root in roots)]
    return next((c for c in under if os.path.lexists(c)), under[0] if under else path)


def scan_bases(catalog: str) -> list[str]:
    """The manifest's ``bases`` (the working folders of scans given a relative path), read once per manifest version:
    an export asks for every row."""
    try:
        stamp = os.stat(os.path.join(catalog, MANIFEST)).st_mtime_ns
    except OSError:
        return []
    return list(_bases(catalog, stamp))


@functools.lru_cache(maxsize=16)
def _bases(catalog: str, stamp: int) -> tuple[str, ...]:
    bases = read_manifest(catalog).get("bases")
    return tuple(b for b in bases if isinstance(b, str) and os.path.isabs(b)) if isinstance(bases, list) else ()


def _ancestors(folder: str) -> list[str]:
    """``/a/b`` -> ``/a/b``, ``/a``, ``/``."""
    out = [folder]
    while os.path.dirname(out[-1]) != out[-1]:
        out.append(os.path.dirname(out[-1]))
    return out


def _same_file(target: str, path: str) -> bool:
    from ..storage.urls import is_url, local_path

    if target == path:
        return True
    if is_url(path) or is_url(target):
        return False
    return os.path.abspath(local_path(target)) == os.path.abspath(path)


def check_reference_targets(targets: Any, path: str, entry: str) -> None:
    """Refuse a reference set whose chunks point at anything but ``path``, the file its row describes."""
    for target in targets:
        if not isinstance(target, str) or not _same_file(target, path):
            raise CatalogInputError(f"{path}: its references ({entry}) point at {str(target)[:200]!r}, not at the file itself: "
                                    "refused (an edited catalog)")


def json_reference_targets(refs: dict[str, Any]) -> set[Any]:
    """The files a kerchunk JSON reference set points at (``[url, offset, size]`` or ``[url]`` values)."""
    inner = refs.get("refs", refs) if isinstance(refs, dict) else None
    if not isinstance(inner, dict):
        raise CatalogInputError("not a kerchunk reference set")
    templates = refs.get("templates") if isinstance(refs, dict) else None
    out: set[Any] = set()
    for value in inner.values():
        if isinstance(value, list) and value:
            url = value[0]
            if isinstance(url, str) and isinstance(templates, dict) and "{{" in url:
                for name, sub in templates.items():
                    url = url.replace("{{" + str(name) + "}}", str(sub))
            out.add(url)
        elif not isinstance(value, (str, bytes)):
            out.add(repr(value)[:80])  # neither inline data nor a reference: refused
    return out


def parquet_reference_targets(folder: str) -> set[Any]:
    """The files a Parquet reference folder (fsspec's ``LazyReferenceMapper`` layout) points at."""
    import pyarrow.parquet as pq

    out: set[Any] = set()
    for here, dirs, files in os.walk(folder):
        for name in dirs + files:
            if os.path.islink(os.path.join(here, name)):
                raise CatalogInputError(f"{folder}: holds a symbolic link ({name}): refused")
        for name in files:
            if name.endswith(".parq") or name.startswith("refs."):
                column = pq.ParquetFile(os.path.join(here, name)).read(columns=["path"]).column("path")
                out.update(v for v in column.unique().to_pylist() if v is not None)
    return out
