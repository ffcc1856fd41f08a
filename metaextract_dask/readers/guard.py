"""One guard for every native path: what an HDF5-based file would make libhdf5 reach outside it.

HDF5 can point outside a file: external links (to objects in other files),
external raw storage (a dataset's bytes kept in other files: any file, say
``/etc/shadow``), virtual datasets (mapped from other files) and filter
plugins (native code loaded from ``HDF5_PLUGIN_PATH`` to decode a chunk).
A hostile file uses them to make a scanner read what it should not, or run
code. Whatever reader a file reaches (by extension, signature or plugin),
this module is asked first, with the same code:

- ``restrict_plugins()`` makes every libhdf5 in the process (h5py's and the
  one netCDF4 bundles) load filter plugins only from
  ``metaextract.hdf5.plugin-paths``;
- ``outside_references(path)`` lists what a file points to outside itself,
  walking it with h5py without following anything.

The h5py reader lists those references and never follows them; the netCDF
reader hands a file that has any to the HDF5 reader's logic, because
libnetcdf follows external links when it opens a file.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

from ..core.settings import native_environment, trusted_plugin_paths  # the policy, stated once in core

#: HDF5's own filters (deflate, shuffle, fletcher32, szip, nbit, scaleoffset): no plugin involved
BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6})


def restrict_plugins() -> tuple[str, ...]:
    """Point every libhdf5 of this process at the trusted plugin folders only, and keep libnetcdf from reading a
    configuration file of the working folder (``core.settings.NETCDF_NO_RC``).

    netCDF4's bundled libraries read the environment when netCDF4 is
    imported (measured: setting it afterwards changes nothing), so this runs
    before that import; h5py's library is told through its plugin API, which
    overrides whatever it read at start-up.
    """
    trusted = trusted_plugin_paths()
    os.environ.update(native_environment(trusted))
    if "h5py" in sys.modules:
        _h5py_plugins(trusted)
    return trusted


@functools.lru_cache(maxsize=4)
def _h5py_plugins(trusted: tuple[str, ...]) -> None:
    from h5py import h5pl

    while h5pl.size():
        h5pl.remove(0)
    for folder in trusted:
        h5pl.append(folder.encode())


def dataset_references(dset: Any) -> list[str]:
    """What one h5py dataset would make libhdf5 read or load from outside the file, in words.

    One creation property list, read with low-level calls: the high-level
    ``external`` and ``is_virtual`` properties cost 0.1 ms a dataset, which
    doubled the time of a small netCDF-4 file.
    """
    import h5py

    plist = dset.id.get_create_plist()
    found = [f"external raw storage in {os.fsdecode(plist.get_external(i)[0])!r}" for i in range(plist.get_external_count())]
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        found.extend(f"virtual dataset mapped from {plist.get_virtual_filename(i)!r}" for i in range(plist.get_virtual_count()))
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in BUILTIN_FILTERS:
            found.append(f"filter {code} (a plugin)")
    return found


def outside_references(path: str) -> dict[str, list[str]]:
    """{object: [references outside the file]} for an HDF5-based file; {} when it has none.

    Links are visited, never followed; datasets are opened only through
    hard links.
    """
    import h5py

    from .hdf5 import objects, shared_file

    found: dict[str, list[str]] = {}
    with shared_file(path) as f:
        for name, link, obj in objects(f):
            if isinstance(link, h5py.ExternalLink):
                found[name] = [f"external link to {link.filename!r}:{link.path}"]
            elif isinstance(link, h5py.HardLink) and isinstance(obj, h5py.Dataset):
                try:
                    refs = dataset_references(obj)
                except Exception as exc:  # noqa: BLE001 - an object h5py cannot inspect: treat it as unsafe
                    refs = [f"could not be inspected ({exc})"]
                if refs:
                    found[name] = refs
            elif link is None or (isinstance(link, h5py.HardLink) and obj is None):
                found[name] = ["could not be inspected"]
    return found


def refused_references(path: str) -> list[str]:
    """What in a file points outside it, in words ("NAME: why"), minus plugin filters while a plugin folder is trusted.

    ``[]`` for a file that is not HDF5 (libhdf5's own signature search
    decides, whatever the name says): the question every path that hands a
    file to libhdf5 or libnetcdf outside the scan asks (``open``, exports).
    """
    from ..core.errors import CorruptFileError

    try:
        found = outside_references(path)
    except CorruptFileError:  # not HDF5: nothing of this kind to follow
        return []
    plugins_trusted = bool(trusted_plugin_paths())
    return [f"{name}: {why}" for name, whys in found.items() for why in whys
            if not (plugins_trusted and why.endswith("(a plugin)"))]
