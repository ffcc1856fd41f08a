"""The GRIB reader against ecCodes' own ``grib_ls`` (of the same ecCodes version), on the GRIB2 messages ecCodes
ships (its samples: ECMWF's
regular, reduced and rotated Gaussian, lat/lon, polar stereographic, Lambert and spectral fields, Debian's
libeccodes-data) and, where installed, NCAR's GRIB2 files (Debian's libncarg-data: NCEP Eta and WAFS forecasts, a
Meteosat image).

Every message agrees with ``grib_ls -j`` on its edition, centre, parameter, level, date, time, step, grid and number
of points, and its statistics with ``grib_ls``'s min, max and average.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import pytest

import metaextract_dask as me

pytestmark = pytest.mark.integration

pytest.importorskip("eccodes")
SAMPLES = "/usr/share/eccodes/samples"
NCAR = "/usr/share/ncarg/data/grb"
KEYS = ["edition", "centre", "shortName", "typeOfLevel", "level", "dataDate", "dataTime", "stepRange", "gridType", "numberOfPoints"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Each sample as a .grib2 file (a scan sees them by content, whatever their name), and NCAR's GRIB2 files."""
    if not os.path.isdir(SAMPLES):
        pytest.fail("ecCodes' samples are needed: apt-get install libeccodes-data")
    folder = tmp_path_factory.mktemp("grib")
    out = []
    for src in sorted(glob.glob(os.path.join(SAMPLES, "*grib2*.tmpl")) + glob.glob(os.path.join(SAMPLES, "GRIB2.tmpl"))):
        dst = folder / (os.path.basename(src)[:-5] + ".grib2")
        shutil.copy(src, dst)
        out.append(str(dst))
    out += sorted(glob.glob(os.path.join(NCAR, "*.grb2")) + glob.glob(os.path.join(NCAR, "*.grib2")))
    return out + cfgrib_samples() + pygrib_samples()


def cfgrib_samples() -> list[str]:
    """cfgrib's sample data (its 0.9.15.1 source on PyPI: ERA5, CAMS, NCEP and UKMO fields, NCEP's NAM forecast whose
    GRIB2 messages hold several fields each, complex packing with missing values and no bitmap), but for the file
    grib_ls itself cannot read to the end (``era5-levels-corrupted.grib``)."""
    import public_corpus

    archive = public_corpus.fetch_sdist("cfgrib", "0.9.15.1", os.path.join(public_corpus.cache_dir(), "sdists"))
    found = public_corpus.sdist_data(archive, os.path.join(public_corpus.cache_dir(), "sdist-data"), (".grib", ".grib2"), under="cfgrib-0.9.15.1/")
    return [p for p in found if subprocess.run([grib_ls_command(), p], capture_output=True, timeout=120).returncode == 0]


def pygrib_samples() -> list[str]:
    """pygrib's sample data (its 2.1.8 source on PyPI, fetched by URL: pip cannot prepare it without ecCodes' headers):
    GRIB1 and GRIB2 from NCEP, ECMWF's TIGGE, Canada's CMC and Meteo-France, among them NCEP's NDFD files as the
    National Weather Service serves them (``ds.maxt.bin``: each message in a WMO bulletin, the whole file in one more)
    and an ecoclimap file whose first message is 12,000 bytes in."""
    import public_corpus

    archive = public_corpus.pinned_download(
        "https://files.pythonhosted.org/packages/dc/e9/29ebe5a47274afcfb37b17be9097b24cf2ff5640672cb06db12ff9a46346/pygrib-2.1.8.tar.gz",
        "7ad941571c02b9afa685cb92fb85fb5ed2cd0e36c4ec40cb74d7782dc7975400", os.path.join(public_corpus.cache_dir(), "sdists"))
    return public_corpus.sdist_data(archive, os.path.join(public_corpus.cache_dir(), "sdist-data"),
                                    (".grib", ".grib1", ".grib2", ".grb", ".grb2", ".bin"), under="pygrib-2.1.8/sampledata/")


def grib_ls_command() -> str:
    """The grib_ls of the ecCodes the reader uses (the eccodes wheel's own, where it ships one): ecCodes' definitions
    name some parameters and grids differently from one version to the next (Debian's 2.28 says ``pres`` and
    ``reduced_ll`` where 2.50 says ``pcdb`` and ``unknown_PLPresent``), and the record says which version answered."""
    import importlib.util

    spec = importlib.util.find_spec("eccodeslib")
    own = os.path.join(spec.submodule_search_locations[0], "bin", "grib_ls") if spec and spec.submodule_search_locations else ""
    return own if os.path.exists(own) else "grib_ls"


def grib_ls(path: str, keys: list[str]) -> list[dict]:
    done = subprocess.run([grib_ls_command(), "-j", "-p", ",".join(keys), path], capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout)["messages"]


def test_every_message_agrees_with_grib_ls(files):
    assert len(files) >= 15
    problems = {}
    for path in files:
        record, _ = me.extract_file(path)
        assert record["format"] == "grib" and record["reader"] == "grib", (path, record.get("format"), record.get("error"))
        assert record["grib"]["eccodes"].count(".") == 2
        ours, theirs = record["grib"]["messages"], grib_ls(path, KEYS + ["max", "min", "average"])
        found = [] if len(ours) == len(theirs) == record["grib"]["n_messages"] else [f"{len(ours)} messages vs {len(theirs)}"]
        for i, (a, b) in enumerate(zip(ours, theirs)):
            b = {k: v for k, v in b.items() if v != "not_found"}  # a key this template lacks
            found += [f"message {i} {k}: {a.get(k)!r} vs {b.get(k)!r}" for k in KEYS if str(a.get(k)) != str(b.get(k))]
            stats = a["stats"]
            if stats.get("count") == 0 and b.get("max") == b.get("min") == b.get("average"):
                continue  # every point missing: no statistics, where grib_ls prints the missing value itself
            for key, mine in (("max", stats.get("max")), ("min", stats.get("min")), ("average", stats.get("mean"))):
                if (key in b) != (mine is not None):  # a spectral field has no min or max of grid values
                    found.append(f"message {i} {key}: {mine} vs {b.get(key)}")
                elif key in b and abs(mine - float(b[key])) > 1e-5 * max(1.0, abs(float(b[key]))):  # grib_ls: 6 digits
                    found.append(f"message {i} {key}: {mine} vs {b[key]}")
        if found:
            problems[os.path.basename(path)] = found[:5]
    assert not problems, json.dumps(problems, indent=1)[:4000]


def test_grib_sent_as_wmo_bulletins_reads_as_grib_ls_reads_it(files, tmp_path):
    """GRIB as weather services' feeds keep it, each message in a WMO bulletin: NCEP's ``****length****`` line and a
    heading (as iris-test-data's GRIB/bulletin_40bytes.grib), the GTS FTP form (length, format ``00``, start of heading,
    sequence number, heading: as its bulletin_41bytes.grib, here with the end of text after the message) and two such
    bulletins in one file. Each is a GRIB row whose messages agree with grib_ls (which reads past the headings), with
    no warning; a text file that starts like a bulletin but holds no GRIB stays unknown."""
    sample = next(f for f in files if "regular_ll_sfc_grib2" in f)
    message = open(sample, "rb").read()
    ncep = b"****%010d****\nYHXF02 KWBC 210600\r\r\n" % (len(message) + 24) + message
    gts = b"%08d00\x01\r\r\n673\r\r\nHPHK89 LFPW 300000\r\r\n" % (len(message) + 31) + message + b"\r\r\n\x03"
    bulletins = {"ncep.grib": ncep, "gts.bin": gts, "two.grib": gts + gts.replace(b"673", b"674")}
    for name, data in bulletins.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "notes.txt").write_bytes(b"****0000000099****\nYHXF02 KWBC 210600\r\r\nno message here\n")
    for name in bulletins:
        path = str(tmp_path / name)
        record, _ = me.extract_file(path)
        assert (record["format"], record["reader"]) == ("grib", "grib"), (name, record.get("format"), record.get("error"))
        theirs = grib_ls(path, KEYS)
        assert record["grib"]["n_messages"] == len(theirs) == (2 if name == "two.grib" else 1) and not record["grib"]["warnings"]
        assert [[str(m.get(k)) for k in KEYS] for m in record["grib"]["messages"]] == [[str(m[k]) for k in KEYS] for m in theirs]
    assert me.extract_file(str(tmp_path / "notes.txt"))[0]["format"] == "unknown"


def test_a_file_named_grib_whose_first_message_is_further_in_is_grib_only_when_a_whole_message_is_there(files, tmp_path):
    """A header before the first message (12,000 bytes in Meteo-France's ecoclimap files, which grib_ls reads): a file
    named as GRIB is GRIB when a whole message, ``GRIB`` to its ``7777``, starts in its first 64 KiB; the same bytes
    under another name, or ``GRIB`` with no whole message after it, stay unknown."""
    message = open(next(f for f in files if "regular_ll_sfc_grib2" in f), "rb").read()
    header = os.urandom(12000).replace(b"GRIB", b"grib")
    (tmp_path / "model.grib1").write_bytes(header + message + message)
    (tmp_path / "model.dat").write_bytes(header + message)
    (tmp_path / "cut.grb").write_bytes(header + message[:-10])
    (tmp_path / "text.grib").write_bytes(b"Notes: GRIB files are described in WMO-No. 306\n" * 50)
    record, _ = me.extract_file(str(tmp_path / "model.grib1"))
    assert (record["format"], record["grib"]["n_messages"], record["grib"]["warnings"]) == ("grib", 2, [])
    assert [m["shortName"] for m in record["grib"]["messages"]] == [m["shortName"] for m in grib_ls(str(tmp_path / "model.grib1"), KEYS)]
    for name in ("model.dat", "cut.grb", "text.grib"):
        assert me.extract_file(str(tmp_path / name))[0]["format"] == "unknown", name


def test_a_scan_makes_grib_rows_and_large_files_read_their_messages_as_chunk_tasks(files, tmp_path):
    many = [f for f in files if f.startswith(NCAR)]
    data = tmp_path / "data"
    data.mkdir()
    for path in files[:5] + many:
        shutil.copy(path, data)
    frame = me.scan(str(data), str(tmp_path / "cat"), progress=False)
    assert frame["success"].all() and set(frame["format"]) == {"grib"}
    if many:  # NCEP's Eta forecast, 181 messages in 500 KB: read as several chunk tasks at a small chunk size
        biggest = max(many, key=os.path.getsize)
        record, metrics = me.extract_file(biggest, me.StreamingConfig(strategy="windowed", chunk_size=64 * 1024))
        assert record["streaming"]["chunks_read"] > 2 and record["grib"]["n_messages"] == len(grib_ls(biggest, ["shortName"]))
        row = frame[frame["path"].str.endswith(os.path.basename(biggest))].iloc[0]
        assert row["n_messages"] == record["grib"]["n_messages"] and len(row["variables"]) == len(record["grib"]["parameters"])


def test_open_reads_a_grib_row_through_cfgrib_and_says_how_to_open_a_mixed_file(files, tmp_path):
    """me.open of a GRIB row gives cfgrib's dataset (values equal ecCodes' decoding) and writes no index file beside the
    data; a file of several kinds of level says which filter_by_keys open a part of it."""
    import eccodes
    import numpy as np

    data = tmp_path / "data"
    data.mkdir()
    sample = next(f for f in files if os.path.basename(f).startswith("regular_ll_sfc_grib2"))
    shutil.copy(sample, data)
    mixed = max((f for f in files if f.startswith(NCAR)), key=os.path.getsize, default=None)
    if mixed:
        shutil.copy(mixed, data)
    cat = str(tmp_path / "cat")
    me.scan(str(data), cat, progress=False)
    before = sorted(os.listdir(data))
    ds = me.open(cat, str(data / os.path.basename(sample)))
    with open(sample, "rb") as f:
        handle = eccodes.codes_grib_new_from_file(f)
        expected = eccodes.codes_get_values(handle).reshape(eccodes.codes_get(handle, "Nj"), eccodes.codes_get(handle, "Ni"))
        eccodes.codes_release(handle)
    np.testing.assert_allclose(ds["t"].values, expected, rtol=1e-6)
    assert sorted(os.listdir(data)) == before  # no .idx written
    if mixed:
        with pytest.raises(ValueError, match="not one hypercube.*filter_by_keys"):
            me.open(cat, str(data / os.path.basename(mixed)))
        part = me.open(cat, str(data / os.path.basename(mixed)), backend_kwargs={"filter_by_keys": {"typeOfLevel": "isobaricInhPa"}})
        assert part.sizes["isobaricInhPa"] >= 2 and len(part.data_vars) >= 1


def test_a_grib_file_cut_short_keeps_its_whole_messages_and_says_where_it_ends(files, tmp_path):
    """NCEP's Eta forecast cut at 60 %: the messages before the cut are read (as grib_ls reads them), the cut one is a
    warning; a message whose header declares 2**62 bytes is one clear error, nothing read past the file."""
    source = max((f for f in files if f.startswith(NCAR)), key=os.path.getsize, default=None) or files[0]
    data = open(source, "rb").read()
    cut = tmp_path / "cut.grib2"
    cut.write_bytes(data[: len(data) * 3 // 5])
    whole = [m for m in grib_ls(source, ["offset", "totalLength"]) if int(m["offset"]) + int(m["totalLength"]) <= len(data) * 3 // 5]
    record, _ = me.extract_file(str(cut))
    assert record["grib"]["n_messages"] == len(whole) and any("cut short" in w for w in record["grib"]["warnings"])
    lying = tmp_path / "lying.grib2"
    lying.write_bytes(b"GRIB\x00\x00\x00\x02" + (2**62).to_bytes(8, "big") + b"\x00" * 200)
    from metaextract_dask.core.errors import CorruptFileError

    with pytest.raises(CorruptFileError, match="no GRIB message found.*cut short"):
        me.extract_file(str(lying))
