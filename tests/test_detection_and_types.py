"""Files whose name or layout hid them, and netCDF-4's own types, on real files from a source not used before.

pyfive's test data (its 1.3.0 source distribution on PyPI: netCDF-4 files written by libnetcdf and h5netcdf, a CMIP6
file, MATLAB 7.3, HDF5 files of many layouts), checked against ``ncdump -h`` and ``h5ls -r -v``:

- a netCDF-4 file named otherwise (``*.nc4.k3``, ``*.dat``, ``*.hdf5``) is read as netCDF by its own markers;
- an HDF5 file behind a user block of 4 KiB or more (made by HDF5's own ``h5jam``) is found by its signature;
- an enum variable is recorded with its type's name, base type and labels, as ncdump shows them;
- a file whose root group libhdf5 lists only in part (a damaged heap) keeps every object h5ls lists.

netcdf-c's own reference files (its 4.9.0 release, as Debian's pool keeps it: ``ref_tst_*.nc`` and the DAP4 test
files), written by libnetcdf, checked against ``ncdump -h``: every user-defined type (compound, nested compound,
compound with array members, vlen, opaque, enum) with its name, kind and members, labels, base type or size, and every
variable ncdump lists, of whatever type, with its type's name and dimensions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import public_corpus
import pytest
from test_real_files import compare_hdf5, compare_netcdf

from metaextract_dask import extract_file

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pyfive_files():
    archive = public_corpus.fetch_sdist("pyfive", "1.3.0", os.path.join(public_corpus.cache_dir(), "sdists"))
    return public_corpus.sdist_data(archive, os.path.join(public_corpus.cache_dir(), "corpus-sdist"))


def _netcdf4(paths: list[str]) -> list[str]:
    """The files their authors named ``.nc`` that ncdump reads as netCDF-4 (HDF5 storage; ncdump reads any HDF5 file as
    netCDF-4, so the name is the authors' word that libnetcdf or h5netcdf wrote them)."""
    out = []
    for p in [p for p in paths if p.endswith(".nc")]:
        done = subprocess.run(["ncdump", "-k", p], capture_output=True, text=True, timeout=60)
        if done.returncode == 0 and done.stdout.strip().startswith("netCDF-4"):
            out.append(p)
    return out


def test_a_netcdf4_file_named_otherwise_is_read_as_netcdf(pyfive_files, tmp_path):
    """Before: the HDF5 reader took it (the name decided) and its dimensions and variables were lost."""
    found = _netcdf4(pyfive_files)
    assert len(found) >= 6
    problems = {}
    for i, src in enumerate(found):
        named = tmp_path / f"{os.path.basename(src).rsplit('.', 1)[0]}.{('nc4.k3', 'dat', 'bin')[i % 3]}"
        shutil.copy(src, named)
        record, _ = extract_file(str(named))
        if record["format"] != "netcdf4" or record["reader"] != "netcdf":
            problems[named.name] = f"read as {record['format']} by {record['reader']}"
            continue
        differ = compare_netcdf(record["netcdf"], str(named))
        if differ:
            problems[named.name] = differ
    assert not problems, problems


@pytest.mark.parametrize("block", [4096, 8192, 32768])
def test_hdf5_behind_a_large_user_block_is_found_by_its_signature(pyfive_files, tmp_path, block):
    """Before: a user block of 4 KiB or more (instrument software writes them) made the file unknown binary."""
    plain = [p for p in pyfive_files if p.endswith(".hdf5") and subprocess.run(["h5ls", p], capture_output=True).returncode == 0]
    assert len(plain) >= 10
    block_file = tmp_path / "block.bin"
    block_file.write_bytes(b"instrument header " * (block // 18 - 1))  # h5jam rounds it up to the next power of two
    problems = {}
    for src in plain[:10]:
        jammed = tmp_path / f"ub{block}_{os.path.basename(src)}"
        subprocess.run(["h5jam", "-i", src, "-u", str(block_file), "-o", str(jammed)], check=True, capture_output=True, timeout=60)
        with open(jammed, "rb") as f:
            f.seek(block)
            assert f.read(8) == b"\x89HDF\r\n\x1a\n"
        record, _ = extract_file(str(jammed))
        if record["format"] not in ("hdf5", "netcdf4"):
            problems[jammed.name] = f"read as {record['format']}"
        elif record["format"] == "hdf5":
            differ = compare_hdf5(record["hdf5"], str(jammed))
            if differ:
                problems[jammed.name] = differ
    assert not problems, problems


def _ncdump_enums(path: str) -> dict[str, dict]:
    """{type name: {base, labels}} from ncdump's ``types:`` section."""
    text = subprocess.run(["ncdump", "-h", path], capture_output=True, text=True, check=True, timeout=60).stdout
    section = text.split("types:", 1)[1].split("dimensions:", 1)[0] if "types:" in text else ""
    out = {}
    for base, name, body in re.findall(r"(\w+) enum (\w+) \{(.*?)\} ;", " ".join(section.split())):
        out[name] = {"base": base, "labels": {k.strip(): int(v) for k, v in (pair.split("=") for pair in body.split(","))}}
    return out


def test_enum_variables_keep_their_type_name_and_labels(pyfive_files):
    """Before: an enum variable was a uint8 (ncdump: enum_t with its labels)."""
    files = [p for p in pyfive_files if _ncdump_enums(p)]
    assert len(files) >= 3
    for path in files:
        enums = _ncdump_enums(path)
        record, _ = extract_file(path)
        typed = {n: v for n, v in record["netcdf"]["variables"].items() if v["dtype"] in enums}
        assert typed, (path, {n: v["dtype"] for n, v in record["netcdf"]["variables"].items()})
        for name, var in typed.items():
            expected = enums[var["dtype"]]
            assert var["datatype"]["kind"] == "enum" and var["datatype"]["labels"] == expected["labels"], (path, name)
            assert ncdump_type_name(var["datatype"]["base"]) == expected["base"], (path, name, var["datatype"])


def ncdump_type_name(dtype: str) -> str:
    """A NumPy dtype name as ncdump names the type."""
    from peers import NC_TYPES

    return {v: k for k, v in NC_TYPES.items()}[dtype]


#: (pyfive test file, byte zeroed): a damaged local heap of the root group, where libhdf5 stops listing its links
#: partway (h5py's iteration raises; ``h5ls -r`` lists the links before the damage)
DAMAGED_ROOTS = [("compressed.hdf5", 752), ("dataset_datatypes.hdf5", 184), ("dataset_multidim.hdf5", 736), ("dim_scales.hdf5", 728),
                 ("fillvalue_earliest.hdf5", 736), ("references.hdf5", 1272), ("resizable.hdf5", 752), ("opaque_datetime.hdf5", 744)]


def _h5ls_objects(path: str) -> set[str]:
    done = subprocess.run(["h5ls", "-r", path], capture_output=True, text=True, timeout=60)
    return {m.group(1) for line in done.stdout.splitlines() if (m := re.match(r"^(/\S+)\s+(Group|Dataset|Type)", line))}


def test_a_root_group_listed_only_in_part_keeps_what_h5ls_shows(pyfive_files, tmp_path):
    """Before: one error, "the HDF5 library cannot list its root group"; now every object h5ls lists is in the record,
    with a warning saying where the listing stopped."""
    problems, shown = {}, 0
    for name, offset in DAMAGED_ROOTS:
        src = next(p for p in pyfive_files if p.endswith(name))
        data = bytearray(open(src, "rb").read())
        data[offset] = 0
        damaged = tmp_path / name
        damaged.write_bytes(bytes(data))
        theirs = _h5ls_objects(str(damaged))
        record, _ = extract_file(str(damaged))
        if "error" in record:
            problems[name] = record["error"]
            continue
        section = record["hdf5"]
        ours = set(section["groups"]) | {d["name"] for d in section["datasets"]} | {o["name"] for o in section.get("unreadable_objects", [])} \
            | {link["name"] for link in section.get("links", [])}
        shown += len(theirs)
        if theirs - ours or not any("links listed" in w for w in section["warnings"]):
            problems[name] = f"h5ls {sorted(theirs)}, ours {sorted(ours)}, warnings {section['warnings'][:2]}"
    assert not problems and shown >= 10, (problems, shown)


@pytest.fixture(scope="module")
def netcdf_c_files():
    return public_corpus.netcdf_c_files()


def _cdl_type(name: str) -> str:
    """A type as ncdump writes it, in the record's words: a built-in type's NumPy name, a user-defined type's name."""
    from peers import NC_TYPES

    return NC_TYPES.get(name, name)


def _ncdump_types(path: str) -> dict[str, dict]:
    """{type name: {kind, ...}} from ncdump's ``types:`` section, in the record's form."""
    done = subprocess.run(["ncdump", "-h", path], capture_output=True, text=True, errors="replace", timeout=60)
    text = done.stdout if done.returncode == 0 else ""  # netcdf-c's deliberately bad files are not this test's
    if "types:" not in text:
        return {}
    section = " ".join(re.split(r"\n\s*(?:dimensions:|variables:|// global attributes:)", text.split("types:", 1)[1])[0].split())
    out: dict[str, dict] = {}
    for name, body in re.findall(r"compound (\w+) \{ (.*?) \}; // \1", section):
        members = {}
        for m in filter(None, (m.strip() for m in body.split(" ;"))):
            kind, member = m.split(" ", 1)
            dims = re.match(r"(\w+)\((.*)\)$", member)
            members[dims.group(1) if dims else member] = _cdl_type(kind) + (f"({dims.group(2)})" if dims else "")
        out[name] = {"kind": "compound", "members": members}
    for size, name in re.findall(r"opaque\((\d+)\) (\w+) ;", section):
        out[name] = {"kind": "opaque", "size": int(size)}
    for base, name in re.findall(r"(\w+)\(\*\) (\w+) ;", section):
        out[name] = {"kind": "vlen", "base": _cdl_type(base)}
    for base, name, body in re.findall(r"(\w+) enum (\w+) \{(.*?)\} ;", section):
        labels = {re.sub(r"\\(.)", r"\1", k.strip()): int(v) for k, v in (pair.rsplit("=", 1) for pair in body.split(","))}
        out[name] = {"kind": "enum", "base": _cdl_type(base), "labels": labels}
    return out


def test_user_defined_types_and_their_variables_agree_with_ncdump(netcdf_c_files):
    """Before: opaque variables and compounds holding a vlen were missing (netCDF4-python skips them), a nested
    compound's members were NumPy dtype dicts, vlen variables warned of failed statistics, and a compound holding an
    array of compounds (``ref_tst_xplatform2_2.nc``) failed its file."""
    from peers import ncdump

    files = {p: _ncdump_types(p) for p in netcdf_c_files}
    files = {p: t for p, t in files.items() if t}
    kinds = {t["kind"] for types in files.values() for t in types.values()}
    assert len(files) >= 20 and kinds == {"compound", "opaque", "vlen", "enum"}, (len(files), kinds)
    problems = {}
    for path, expected in files.items():
        record, _ = extract_file(path)
        name = os.path.basename(path)
        if not record.get("success", True) or "netcdf" not in record:
            problems[name] = record.get("error")
            continue
        header = record["netcdf"]
        mine = {t["name"]: {k: v for k, v in t.items() if k != "name"} for t in header.get("types", {}).values()}
        if mine != expected:
            problems[name] = f"types {mine} vs ncdump {expected}"
        peer = ncdump(path)
        for var, theirs in peer["variables"].items():
            ours = header["variables"].get(var)
            if ours is None or ours["dims"] != theirs["dims"] or ours["dtype"] != _cdl_type(theirs["type"]):
                problems[f"{name}:{var}"] = f"{ours and (ours['dtype'], ours['dims'])} vs ncdump {theirs['type']} {theirs['dims']}"
            elif theirs["type"] in expected and ours.get("datatype", {}).get("kind") != expected[theirs["type"]]["kind"]:
                problems[f"{name}:{var}"] = f"datatype {ours.get('datatype')}"
        stats_failed = [w for w in header["warnings"] if "statistics:" in w]
        if stats_failed:
            problems[f"{name}:warnings"] = stats_failed
    assert not problems, problems


def test_every_reference_file_ncdump_reads_agrees_with_it(netcdf_c_files):
    """Each of netcdf-c's reference files that ncdump reads: dimensions, variables (their types by ncdump's names, their
    dimensions), attributes and groups as ``ncdump -h`` lists them. Before: ``ref_tst_interops4.nc``'s variables,
    stored big-endian, were ``>i4`` where ncdump says ``int``."""
    problems, checked = {}, 0
    for path in netcdf_c_files:
        if subprocess.run(["ncdump", "-h", path], capture_output=True, timeout=60).returncode != 0:
            continue  # netcdf-c's deliberately bad files are not this test's
        record, _ = extract_file(path)
        checked += 1
        found = compare_netcdf(record["netcdf"], path) if "netcdf" in record else [str(record.get("error"))]
        if found:
            problems[os.path.basename(path)] = found[:4]
    assert checked >= 40 and not problems, problems
