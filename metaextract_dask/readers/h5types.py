"""HDF5 datatypes described the way ``h5ls -v`` does, from h5py's low-level type API.

Some real datatypes have no NumPy equivalent (128-bit integers, quad
precision floats, ``H5T_TIME``, bitfields of odd sizes): h5py cannot give a
``dtype`` for them, but ``h5py.h5t`` still tells their class, size and byte
order. Such a dataset or attribute keeps its structure and this description
instead of failing its file.
"""

from __future__ import annotations

from typing import Any

#: compound members described at most (a crafted type may declare thousands)
MAX_MEMBERS = 256


def _class_names() -> dict[int, str]:
    from h5py import h5t

    return {h5t.INTEGER: "integer", h5t.FLOAT: "float", h5t.TIME: "time", h5t.STRING: "string",
            h5t.BITFIELD: "bitfield", h5t.OPAQUE: "opaque", h5t.COMPOUND: "compound", h5t.REFERENCE: "reference",
            h5t.ENUM: "enum", h5t.VLEN: "vlen", h5t.ARRAY: "array"}


def _order(tid: Any) -> str | None:
    from h5py import h5t

    get = getattr(tid, "get_order", None)
    if get is None:
        return None
    return {h5t.ORDER_LE: "little-endian", h5t.ORDER_BE: "big-endian"}.get(get())


def describe_type(tid: Any, depth: int = 0) -> dict[str, Any]:
    """{class, size, order, ..., text} of a low-level HDF5 type; ``text`` reads like h5ls."""
    from h5py import h5t

    cls = tid.get_class()
    size = tid.get_size()
    kind = _class_names().get(cls, f"class-{cls}")
    out: dict[str, Any] = {"class": kind, "size": size}
    order = _order(tid)
    if order:
        out["order"] = order
    bits = f"{8 * size}-bit"
    if kind == "integer":
        out["signed"] = tid.get_sign() != h5t.SGN_NONE
        out["text"] = f"{bits} {order} {'' if out['signed'] else 'unsigned '}integer"
    elif kind == "float":
        out["precision"] = tid.get_precision()
        out["text"] = f"{bits} {order} floating-point"
    elif kind == "time":
        out["text"] = f"{size}-byte time (H5T_TIME)"
    elif kind == "string":
        variable = bool(tid.is_variable_str())
        out["variable"] = variable
        out["text"] = "variable-length string" if variable else f"{size}-byte string"
    elif kind == "compound" and depth < 4:
        n = tid.get_nmembers()
        out["members"] = [{"name": tid.get_member_name(i).decode("utf-8", "replace"), "offset": tid.get_member_offset(i),
                           "type": describe_type(tid.get_member_type(i), depth + 1)} for i in range(min(n, MAX_MEMBERS))]
        out["n_members"] = n
        out["text"] = f"struct of {n} members, {size} bytes"
    elif kind == "array" and depth < 4:
        out["dims"] = list(tid.get_array_dims())
        out["base"] = describe_type(tid.get_super(), depth + 1)
        out["text"] = f"[{']['.join(map(str, out['dims']))}] {out['base']['text']}"
    elif kind in ("enum", "vlen") and depth < 4:
        out["base"] = describe_type(tid.get_super(), depth + 1)
        out["text"] = f"{kind} of {out['base']['text']}"
    out.setdefault("text", f"{size}-byte {kind}")
    return out


def numpy_dtype(tid: Any) -> Any | None:
    """The NumPy dtype h5py maps this type to, or None when there is none."""
    try:
        return tid.dtype
    except (TypeError, ValueError):
        return None
