"""netCDF-4's user-defined types as ``ncdump -h`` shows them, read at the HDF5 level (h5py).

netCDF4-python maps user-defined types to NumPy dtypes and drops what it
cannot map: a variable of an opaque type, or of a compound holding a vlen,
is skipped with a warning ("has unsupported datatype, skipping"), a nested
compound member is a NumPy dtype dict instead of its type's name, and a
compound holding an array of compounds stops the whole file from opening
("nested structured dtype arrays not supported"). libnetcdf itself (and so
``ncdump``) knows every one of them: each is an HDF5 named datatype, and a
variable's or member's type is the named type equal to it (``H5Tequal``, as
libnetcdf matches them). This module reads them there:

- ``user_types``: every named type of the file, with its kind and its
  labels, members (by type name, array members with their shape), base
  type or size;
- ``hdf5_variables``: netCDF variables described from their HDF5 datasets
  (dimensions from their dimension scales), for those netCDF4-python skips
  and for a file it cannot open at all (``hdf5_header``).
"""

from __future__ import annotations

from typing import Any

from . import arrays, h5refs

#: attributes libnetcdf keeps for itself in the HDF5 file (ncdump does not show them): those kerchunk leaves out too, and
#: the markers of old netCDF-4 files
HIDDEN_ATTRS = h5refs.HIDDEN_ATTRS | {"_SuperblockVersion", "_IsNetcdf4"}
#: a dimension scale's NAME when it is a dimension only, not also a variable
DIMENSION_ONLY = b"This is a netCDF dimension but not a netCDF variable"
#: nesting followed at most (a crafted type may nest without end)
MAX_DEPTH = 8
#: members or labels of one type listed at most (a crafted type may declare millions)
MAX_MEMBERS = 10_000


class NamedTypes:
    """The file's named types, (path without the leading slash, low-level type) in file order."""

    def __init__(self, f: Any):
        import h5py

        self.found: list[tuple[str, Any]] = []

        def visit(name: str, obj: Any) -> Any:
            if isinstance(obj, h5py.Datatype):
                self.found.append((name, obj.id))
            return True if len(self.found) >= MAX_MEMBERS else None  # a crafted file of millions of types: the first

        f.visititems(visit)

    def name_of(self, tid: Any) -> str | None:
        """The named type equal to ``tid`` (its own name when it is one), or None."""
        for name, named in self.found:
            try:
                if tid.equal(named):
                    return name
            except Exception:  # noqa: BLE001 - a type libhdf5 cannot compare is nobody's
                continue
        return None

    def type_name(self, tid: Any, depth: int = 0) -> str:
        """What ncdump writes for this type: a named type's name, else the base type (NumPy's name), ``base(*)`` for
        an unnamed vlen, ``opaque(N)``."""
        from h5py import h5t

        cls = tid.get_class()
        if cls in (h5t.COMPOUND, h5t.ENUM, h5t.VLEN, h5t.OPAQUE):
            named = self.name_of(tid)
            if named is not None:
                return named
        if cls == h5t.STRING or (cls == h5t.VLEN and _is_vlen_string(tid)):
            return "str"
        if cls == h5t.VLEN and depth < MAX_DEPTH:
            return f"{self.type_name(tid.get_super(), depth + 1)}(*)"
        if cls == h5t.OPAQUE:
            return f"opaque({tid.get_size()})"
        if cls == h5t.ARRAY and depth < MAX_DEPTH:
            return f"{self.type_name(tid.get_super(), depth + 1)}({', '.join(map(str, tid.get_array_dims()))})"
        if cls == h5t.COMPOUND:
            return "compound"
        try:
            return str(tid.dtype.name)
        except (TypeError, ValueError):
            from .h5types import describe_type

            return str(describe_type(tid)["text"])

    def describe(self, name: str, tid: Any) -> dict[str, Any]:
        """A named type as ncdump's ``types:`` section shows it."""
        from h5py import h5t

        cls = tid.get_class()
        out: dict[str, Any] = {"name": name.rsplit("/", 1)[-1]}
        if cls == h5t.ENUM:
            base = tid.get_super()
            out.update(kind="enum", base=self.type_name(base),
                       labels={tid.get_member_name(i).decode("utf-8", "replace"): int(tid.get_member_value(i))
                               for i in range(min(tid.get_nmembers(), MAX_MEMBERS))})
        elif cls == h5t.COMPOUND:
            out.update(kind="compound", members={tid.get_member_name(i).decode("utf-8", "replace"): self.type_name(tid.get_member_type(i))
                                                 for i in range(min(tid.get_nmembers(), MAX_MEMBERS))})
        elif cls == h5t.VLEN:
            out.update(kind="vlen", base=self.type_name(tid.get_super()))
        elif cls == h5t.OPAQUE:
            out.update(kind="opaque", size=tid.get_size())
        else:
            out.update(kind="other", base=self.type_name(tid))
        return out


def _is_vlen_string(tid: Any) -> bool:
    try:
        return bool(tid.is_variable_str())
    except AttributeError:
        return False


def user_types(named: NamedTypes) -> dict[str, dict[str, Any]]:
    """{type path: its description} for every named type of the file."""
    out: dict[str, dict[str, Any]] = {}
    for name, tid in named.found:
        entry: dict[str, Any] = {}
        out[name] = arrays.guarded(entry, "datatype", lambda: named.describe(name, tid), {"name": name, **entry})
    return out


def _dimension_names(dset: Any) -> list[str]:
    """A variable's dimensions: the names of the scales attached to each axis (its own name for a coordinate)."""
    out = []
    for axis in range(len(dset.shape)):
        scales = list(dset.dims[axis].values())
        out.append(scales[0].name.lstrip("/") if scales else f"phony_dim_{axis}")
    return out


def hdf5_variables(f: Any, named: NamedTypes, skip: set[str] | frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """The file's netCDF variables (every dataset but the dimension-only scales), not those in ``skip``, from HDF5."""
    import h5py

    from .hdf5 import read_attrs

    out: dict[str, dict[str, Any]] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset) or name in skip:
            return
        if bytes(obj.attrs.get("NAME", b"") if "NAME" in obj.attrs else b"").startswith(DIMENSION_ONLY):
            return
        entry: dict[str, Any] = {}
        entry["dims"] = arrays.guarded(entry, "dimensions", lambda: [] if obj.attrs.get("CLASS") == b"DIMENSION_SCALE" and not obj.shape
                                       else [name] if obj.attrs.get("CLASS") == b"DIMENSION_SCALE" else _dimension_names(obj), [])
        entry["shape"] = list(obj.shape or ())
        entry["dtype"] = arrays.guarded(entry, "dtype", lambda: named.type_name(obj.id.get_type()), "unknown")
        attrs = read_attrs(obj, entry)
        entry["attrs"] = {k: v for k, v in attrs.items() if k not in HIDDEN_ATTRS}
        out[name] = entry

    f.visititems(visit)
    return out


def hdf5_header(f: Any, why: str) -> dict[str, Any]:
    """A netCDF-4 file's header as ``describe_header`` gives it, read from HDF5 alone (netCDF4-python could not open
    the file: ``why``): dimensions, variables, groups, attributes and types; no statistics, no coverage."""
    import h5py

    from .hdf5 import read_attrs

    named = NamedTypes(f)
    dimensions: dict[str, int] = {}
    unlimited: list[str] = []
    groups: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Group):
            groups.append(name)
        elif isinstance(obj, h5py.Dataset) and obj.attrs.get("CLASS") == b"DIMENSION_SCALE" and obj.shape:
            dimensions[name] = int(obj.shape[0])
            if obj.maxshape and obj.maxshape[0] is None:
                unlimited.append(name)

    f.visititems(visit)
    variables = hdf5_variables(f, named)
    root: dict[str, Any] = {}
    attrs = {k: v for k, v in read_attrs(f, root).items() if k not in HIDDEN_ATTRS}
    types = user_types(named)
    warnings = [f"netCDF4-python cannot open this file ({why}): its structure was read from HDF5 (no statistics, no coverage)"]
    warnings += list(root.get("warnings", [])) + [f"{path}: {w}" for path, e in variables.items() for w in e.get("warnings", [])]
    for path, entry in variables.items():
        if entry["dtype"] in types:
            entry["datatype"] = types[entry["dtype"]]
    return {"file_format": "NETCDF4", "dimensions": dimensions, "unlimited_dimensions": unlimited, "variables": variables,
            "groups": groups, "attrs": attrs, "types": types, "warnings": warnings, "cf_coverage": {}}
