"""What the peers' own tools say about a file: h5ls -r -v, ncdump -h, ffprobe.

Small parsers of their text output, used to check this project's records
file by file against the tools archive users already trust.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

# ---------------------------------------------------------------- h5ls

_H5LS_OBJECT = re.compile(r"^(/.*?)\s+(Group|Dataset \{(.*)\}|Dataset|Type|Soft Link \{.*\}|External Link \{.*\}|-> .*"
                          r"|Group, same as .*|Dataset, same as .*|Type, same as .*)$")
_NATIVE_SIZES = {"char": 1, "unsigned char": 1, "signed char": 1, "short": 2, "unsigned short": 2, "int": 4, "unsigned int": 4,
                 "long": 8, "unsigned long": 8, "long long": 8, "unsigned long long": 8, "float": 4, "double": 8,
                 "long double": 16, "schar": 1, "uchar": 1, "llong": 8, "ullong": 8, "int8": 1, "uint8": 1, "int16": 2,
                 "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "float16": 2}


def h5ls(path: str) -> dict[str, dict[str, Any]]:
    """{object path: {kind, shape, type, attrs}} from ``h5ls -r -v``."""
    text = subprocess.run(["h5ls", "-r", "-v", path], capture_output=True, text=True, errors="replace", check=True, timeout=120).stdout
    objects: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    attr: str | None = None
    type_lines: list[str] | None = None
    for line in text.splitlines():
        m = _H5LS_OBJECT.match(line)
        if m and not line.startswith(" "):
            kind = m.group(2).split(" ")[0].rstrip(",")
            current = objects[_unescape(m.group(1))] = {"kind": kind, "attrs": {}, "type": None, "alias": "same as" in m.group(2),
                                                        "shape": _dims(m.group(3)) if kind == "Dataset" else None}
            attr, type_lines = None, None
            continue
        if current is None:
            continue
        stripped = line.strip()
        if line.startswith("    Attribute: "):
            attr = _unescape(re.match(r"^    Attribute: (.*?) (scalar|null|\{.*\})$", line).group(1))
            current["attrs"][attr] = None
            type_lines = None
        elif stripped.startswith("Type:") and line.startswith("        ") and attr is not None:
            type_lines = [stripped[5:].strip()]
            current["attrs"][attr] = type_lines
        elif stripped.startswith("Type:") and line.startswith("    ") and not line.startswith("     "):
            attr = None
            type_lines = [stripped[5:].strip()]
            current["type"] = type_lines
        elif type_lines is not None and line.startswith("       ") and not re.match(r"^\s+(Location|Links|Storage|Modified|Chunks|Filter|Address|Data|Fill)", line):
            type_lines.append(stripped)
        elif re.match(r"^    \w", line):
            type_lines = None
            if not line.startswith("    Attribute"):
                attr = None
    return objects


def _unescape(name: str) -> str:
    return name.replace("\\ ", " ").replace('\\"', '"').replace("\\\\", "\\")


def _dims(text: str | None) -> list[int] | None:
    if text is None:
        return None
    if text.strip() in ("SCALAR", ""):
        return []
    if text.strip() == "NULL":
        return None
    return [int(d.split("/")[0]) for d in text.split(",")]


def h5ls_type(lines: list[str] | None) -> tuple[str | None, int | None]:
    """(class, size in bytes) of an h5ls type description."""
    if not lines:
        return None, None
    first = re.sub(r"^shared-\d+:\d+ ", "", lines[0])  # a committed (named) type: h5ls names its address first
    text = " ".join(lines)
    m = re.search(r"\} (\d+) bytes?$", text)
    if first.startswith("struct"):
        return "compound", int(m.group(1)) if m else None
    if first.startswith("["):
        return "array", None
    if first.startswith("enum"):
        return "enum", None
    if first.startswith("variable length of"):
        return "vlen", None
    if "string" in first:
        return "string", None
    if "reference" in first:
        return "reference", None
    if "class-2" in first:
        return "time", int(re.match(r"(\d+)-byte", first).group(1))
    if "opaque" in first:
        return "opaque", None
    if "bitfield" in first or first.endswith("-bit field"):
        return "bitfield", None
    size = None
    m = re.search(r"(\d+)-bit", first)
    if m:
        size = int(m.group(1)) // 8
    elif first.startswith("native "):
        size = _NATIVE_SIZES.get(first[len("native "):])
    if "float" in first or "double" in first:
        return "float", size
    if any(w in first for w in ("integer", "int", "char", "short", "long")):
        return "integer", size
    return first, size


# ---------------------------------------------------------------- ncdump

NC_TYPES = {"byte": "int8", "ubyte": "uint8", "char": "|S1", "short": "int16", "ushort": "uint16", "int": "int32",
            "uint": "uint32", "int64": "int64", "uint64": "uint64", "float": "float32", "double": "float64", "string": "str"}

_DIM = re.compile(r"^\s*(\S+) = (UNLIMITED|\d+) ;(?: // \((\d+) currently\))?$")
_VAR = re.compile(r"^\s*([A-Za-z_][\w ]*?) (\S+?)(?:\((.*)\))? ;$")
#: an attribute line: an optional type (built in or user defined; never the name itself, which ncdump may follow with a
#: space: "data :units", data being a CDL keyword), the variable's name (none for a global attribute), the attribute's
_ATTR = re.compile(r"^\s*(?:([A-Za-z_]\w*) (?=[^\s:]))?((?:[^\s:\\]|\\.)*) ?:((?:[^\s\\=]|\\.)+) = ")


def ncdump(path: str) -> dict[str, Any]:
    """{dimensions, variables: {path: {type, dims, attrs}}, attrs, groups} from ``ncdump -h``."""
    text = subprocess.run(["ncdump", "-h", path], capture_output=True, text=True, errors="replace", check=True, timeout=120).stdout
    out: dict[str, Any] = {"dimensions": {}, "variables": {}, "attrs": set(), "groups": []}
    stack: list[str] = []
    section = None
    for line in text.splitlines()[1:]:
        stripped = line.strip()
        g = re.match(r"^group: (.*) \{$", stripped)
        if g:
            stack.append(_nc_unescape(g.group(1)))
            out["groups"].append("/".join(stack))
            section = None
            continue
        if stripped.startswith("} // group"):
            stack.pop()
            section = None
            continue
        prefix = "".join(f"{s}/" for s in stack)
        if stripped in ("dimensions:", "variables:", "types:"):
            section = stripped[:-1]
            continue
        if stripped.startswith("// global attributes:") or stripped.startswith("// group attributes:"):
            section = "global"
            continue
        if not stripped or stripped == "}" or stripped.startswith("data:"):
            continue
        if section == "dimensions":
            m = _DIM.match(line)
            if m:
                out["dimensions"][prefix + _nc_unescape(m.group(1))] = int(m.group(3) if m.group(2) == "UNLIMITED" else m.group(2))
        elif section in ("variables", "global"):
            a = _ATTR.match(line)
            if a:
                owner, name = _nc_unescape(a.group(2)), _nc_unescape(a.group(3))
                if section == "global":  # "cmp_t :name = ...": a global attribute of a user-defined type
                    owner = ""
                if owner:
                    out["variables"][prefix + owner]["attrs"].add(name)
                else:
                    out["attrs" if not stack else "group_attrs"] = out.get("attrs" if not stack else "group_attrs", set()) | {prefix + name if stack else name}
                continue
            v = _VAR.match(line)
            if v and section == "variables":
                dims = [_nc_unescape(d.strip()) for d in v.group(3).split(",")] if v.group(3) else []
                out["variables"][prefix + _nc_unescape(v.group(2))] = {"type": v.group(1), "dims": dims, "attrs": set()}
    return out


def _nc_unescape(name: str) -> str:
    return re.sub(r"\\(.)", r"\1", name)


# ---------------------------------------------------------------- ffprobe


def ffprobe(path: str) -> dict[str, Any]:
    """ffprobe's own JSON: format and streams."""
    done = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", path],
                          capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)
