"""The GeoTIFF reader against GDAL's own ``gdalinfo -json -stats`` (Debian's gdal-bin), on real rasters this project
did not write: the sample GeoTIFFs that R's terra, stars, rgdal, spData and spatstat.data packages ship (Debian's
builds: Landsat bands with internal overviews, DEMs, land cover with a palette, State Plane and user-defined
projections, PixelIsPoint, LZW, PackBits and Deflate, plain TIFFs without georeferencing) and the test rasters of
the ``geotiff`` package's source (Australian DEMs and sand maps in WGS 84, GDA94 and GDA2020, a Landsat band in UTM).

Every file agrees with ``gdalinfo`` on its size, bands, data types, blocks, compression, interleave, overviews,
nodata, band descriptions, geotransform, EPSG code and each band's minimum, maximum and mean.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import pandas as pd
import pytest
from public_corpus import cache_dir, debian_data, fetch_sdist, sdist_data

import metaextract_dask as me

pytestmark = pytest.mark.integration

pytest.importorskip("tifffile")
PACKAGES = ["r-cran-terra", "r-cran-stars", "r-cran-rgdal", "r-cran-spdata", "r-cran-spatstat.data"]
#: tifffile's names of compressions -> GDAL's (IMAGE_STRUCTURE's COMPRESSION)
COMPRESSION = {"LZW": "LZW", "ADOBE_DEFLATE": "DEFLATE", "DEFLATE": "DEFLATE", "PACKBITS": "PACKBITS", "JPEG": "JPEG", "ZSTD": "ZSTD"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Each public raster copied under a distinct name (two packages ship an ``elev.tif``)."""
    if shutil.which("gdalinfo") is None:
        pytest.fail("gdalinfo is needed: apt-get install gdal-bin")
    found = debian_data(PACKAGES, os.path.join(cache_dir(), "debian"), (".tif", ".tiff"))
    sdist = fetch_sdist("geotiff", "0.2.10", os.path.join(cache_dir(), "sdists"))
    found += sdist_data(sdist, os.path.join(cache_dir(), "sdist-data"), (".tif",))
    folder = tmp_path_factory.mktemp("geotiff")
    out = []
    for src in found:
        dst = folder / f"{len(out):02d}_{os.path.basename(src)}"
        shutil.copy(src, dst)
        out.append(str(dst))
    return out


@pytest.fixture(scope="module")
def catalog(files, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("geotiff-catalog") / "cat")
    me.scan(os.path.dirname(files[0]), out)
    return out


def gdalinfo(path: str, *more: str) -> dict:
    """``gdalinfo -json`` with statistics computed, nothing written beside the file (no .aux.xml)."""
    done = subprocess.run(["gdalinfo", "-json", "-stats", *more, path], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GDAL_PAM_ENABLED": "NO"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def close(a, b, rel=1e-6, printed=0.0) -> bool:
    """Equal within ``rel``, or within what gdalinfo printed (``printed``: it gives statistics to three decimals); both
    missing (a band of nodata only has no statistics) is equal too."""
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= max(printed, rel * max(1.0, abs(float(b))))


def differences(record: dict, theirs: dict) -> list[str]:
    """Where the record says otherwise than gdalinfo."""
    section = record["geotiff"]
    image = section["images"][0]
    found = []
    same = lambda what, a, b: found.append(f"{what}: {a!r} vs gdalinfo {b!r}") if a != b else None  # noqa: E731
    same("size", [image["width"], image["height"]], theirs["size"])
    same("bands", image["bands"], len(theirs["bands"]))
    structure = theirs.get("metadata", {}).get("IMAGE_STRUCTURE", {})
    compression = COMPRESSION.get(image["compression"])
    if compression == "JPEG" and image["photometric"] == "YCBCR":
        compression = "YCbCr JPEG"  # GDAL's name for it
    same("compression", compression, structure.get("COMPRESSION"))
    same("interleave", image["interleave"].upper(), structure.get("INTERLEAVE"))
    epsg = theirs.get("stac", {}).get("proj:epsg")
    same("epsg", (section.get("crs") or {}).get("epsg"), epsg)
    gt = section.get("geotransform")
    if "geoTransform" in theirs or gt is not None:
        if gt is None or not all(close(a, b, 1e-9) for a, b in zip(gt, theirs.get("geoTransform", []))):
            found.append(f"geotransform: {gt} vs gdalinfo {theirs.get('geoTransform')}")
    for band, gdal in zip(image["band_info"], theirs["bands"]):
        name = band["name"]
        same(f"{name} type", image["gdal_type"], gdal["type"])
        same(f"{name} block", image["block"], gdal["block"])
        same(f"{name} overviews", image["overviews"], [o["size"] for o in gdal.get("overviews", [])])
        nodata = gdal.get("noDataValue")
        if isinstance(nodata, float) and isinstance(image["nodata"], float):  # gdalinfo prints a Float32 band's to float32's digits
            if not close(image["nodata"], nodata, 1e-7):
                found.append(f"{name} nodata: {image['nodata']!r} vs gdalinfo {nodata!r}")
        else:
            same(f"{name} nodata", image["nodata"], "nan" if nodata == "NaN" else nodata)
        same(f"{name} description", band.get("description"), gdal.get("description"))
        stats = band.get("stats") or {}
        for key, theirs_key in (("min", "minimum"), ("max", "maximum"), ("mean", "mean")):
            if f"STATISTICS_{theirs_key.upper()}" in (band.get("metadata") or {}):
                continue  # gdalinfo repeats what the file's writer stored (terra stores a mean of -9999), it computes nothing
            if not close(stats.get(key), gdal.get(theirs_key), 1e-5, printed=5e-4):
                found.append(f"{name} {key}: {stats.get(key)} vs gdalinfo {gdal.get(theirs_key)}")
    return found


def test_every_raster_agrees_with_gdalinfo(files):
    assert len(files) >= 15
    problems = {}
    for path in files:
        record, _ = me.extract_file(path)
        assert "error" not in record and record["format"] == "tiff" and record["reader"] == "geotiff", (path, record.get("error"))
        found = differences(record, gdalinfo(path))
        if found:
            problems[os.path.basename(path)] = found
    assert not problems, json.dumps(problems, indent=1)


def test_a_scan_gives_rows_boxes_and_bands(files, catalog):
    """A scan's rows: the raster's size, bands and CRS as columns, a longitude/latitude box (through pyproj for a
    projected raster), one variables-table row per band; nothing fails."""
    table = me.read_catalog(catalog)
    assert len(table) == len(files) and table["success"].all() and (table["reader"] == "geotiff").all()
    landsat = table[table["path"].str.endswith("L7_ETMs.tif")].iloc[0]
    assert (landsat["raster_width"], landsat["raster_height"], landsat["bands"], landsat["crs"]) == (349, 352, 6, "EPSG:31985")
    assert list(landsat["variables"]) == [f"band_{b}" for b in range(1, 7)]
    assert -35.0 < landsat["lon_min"] < landsat["lon_max"] < -34.8 and -8.1 < landsat["lat_min"] < landsat["lat_max"] < -7.9  # Olinda
    plain = table[table["path"].str.endswith("vesiclesmask.tif")].iloc[0]
    assert pd.isna(plain["crs"]) and pd.isna(plain["lat_min"])
    variables = me.read_variables(catalog)
    assert len(variables[variables["path"] == landsat["path"]]) == 6


def test_cloud_optimized_geotiff(files, tmp_path):
    """A COG (GDAL's own COG driver applied to the public Landsat raster): tiled, its overviews as gdalinfo lists
    them, said to be cloud-optimized, and STAC's media type with the profile."""
    src = next(p for p in files if p.endswith("L7_ETMs.tif"))
    cog = str(tmp_path / "landsat_cog.tif")
    subprocess.run(["gdal_translate", "-q", "-of", "COG", "-co", "BLOCKSIZE=128", "-co", "COMPRESS=DEFLATE", src, cog], check=True, timeout=120)
    record, _ = me.extract_file(cog)
    assert "error" not in record and not differences(record, gdalinfo(cog)), differences(record, gdalinfo(cog))
    section = record["geotiff"]
    assert section["cog"] is True and section["images"][0]["tiled"] and section["images"][0]["overviews"]
    assert not me.extract_file(src)[0]["geotiff"]["cog"]  # striped: not cloud-optimized
    from metaextract_dask.readers.registry import media_type

    assert media_type("tiff", section) == "image/tiff; application=geotiff; profile=cloud-optimized"


def test_open_gives_the_bands_on_their_grid(files, catalog):
    """``me.open`` of a raster: ``band_data`` (band, y, x) at pixel centres, values as gdalinfo counts them."""
    path = next(p for p in files if p.endswith("olinda_dem_utm25s.tif"))
    theirs = gdalinfo(path)
    with me.open(catalog, path) as ds:
        data = ds["band_data"]
        assert data.dims == ("band", "y", "x") and data.shape == (1, *reversed(theirs["size"]))
        gt = theirs["geoTransform"]
        assert close(float(ds["x"][0]), gt[0] + gt[1] / 2, 1e-12) and close(float(ds["y"][-1]), gt[3] + (data.shape[1] - 0.5) * gt[5], 1e-12)
        assert close(float(data.min()), theirs["bands"][0]["minimum"]) and close(float(data.max()), theirs["bands"][0]["maximum"])


def test_a_damaged_raster_keeps_its_structure(files, tmp_path):
    """A raster cut short: its structure is recorded, its statistics are a warning on its band, the file is a row."""
    src = next(p for p in files if p.endswith("L7_ETMs.tif"))  # its directories first, then its strips
    cut = tmp_path / "cut.tif"
    with open(src, "rb") as f:
        cut.write_bytes(f.read(os.path.getsize(src) // 2))
    record, _ = me.extract_file(str(cut))
    assert "error" not in record and record["geotiff"]["images"][0]["width"] == 349
    assert any("band_1: statistics:" in w and "past the end" in w for w in record["geotiff"]["warnings"]), record["geotiff"]["warnings"]


def test_stac_items_carry_the_projection(files, catalog, tmp_path):
    """The STAC export gives a GeoTIFF's Item STAC's projection extension as gdalinfo describes the raster: its EPSG
    code, shape and affine transform, and its media type."""
    out = me.export(catalog, "stac", str(tmp_path / "stac"))
    items = {}
    for path in glob.glob(os.path.join(os.path.dirname(out), "**", "*.json"), recursive=True):
        if path != out:
            item = json.load(open(path))
            items[os.path.basename(item["assets"]["data"]["href"])] = item
    name = next(n for n in items if n.endswith("L7_ETMs.tif"))
    item, theirs = items[name], gdalinfo(next(p for p in files if p.endswith("L7_ETMs.tif")))
    gt = theirs["geoTransform"]
    assert "https://stac-extensions.github.io/projection/v2.0.0/schema.json" in item["stac_extensions"]
    assert item["properties"]["proj:code"] == f"EPSG:{theirs['stac']['proj:epsg']}"
    assert item["properties"]["proj:shape"] == list(reversed(theirs["size"]))
    assert item["properties"]["proj:transform"] == pytest.approx([gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]])
    assert item["assets"]["data"]["type"] == "image/tiff; application=geotiff"
    plain = next(i for n, i in items.items() if n.endswith("vesiclesmask.tif"))
    assert "proj:shape" not in plain["properties"] and plain["assets"]["data"]["type"] == "image/tiff"


def test_layouts_gdal_writes_agree_with_gdalinfo(tmp_path):
    """Rasters as GDAL writes them (rasterio's test data holds each kind: cogeo.tif, float.tif, rotated.tif,
    float_raster_with_nodata.tif), against gdalinfo: a tiled YCbCr JPEG image with an internal mask and overviews (a
    mask page between the image and its overviews: they were missed), a raster placed by a pixel scale and tiepoint or by
    a rotated model transformation with no GeoKeys (no CRS: its geotransform was missed), and a Float32 band whose
    nodata text is -3.4e+38 as older GDAL wrote it (compared in float32, as GDAL compares: it was counted as a value)."""
    import numpy as np
    import tifffile

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 255, (256, 256, 4), dtype="uint8")
    rgba[..., 3] = 255
    rgba[:40, :40, 3] = 0
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    values = rng.normal(0, 1, (20, 30)).astype("float32")
    values[:3, :5] = np.float32(-3.4e38)
    tifffile.imwrite(tmp_path / "plain.tif", values)
    tifffile.imwrite(tmp_path / "nodata.tif", values, extratags=[(42113, "s", 0, "-3.39999999999999996e+38", True)])
    (tmp_path / "rotated.vrt").write_text(
        '<VRTDataset rasterXSize="30" rasterYSize="20"><GeoTransform>100.0, 17.32, 5.0, 200.0, 10.0, -8.66</GeoTransform>'
        '<VRTRasterBand dataType="Float32" band="1"><SimpleSource><SourceFilename relativeToVRT="1">plain.tif</SourceFilename>'
        '<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')
    mask = ["--config", "GDAL_TIFF_INTERNAL_MASK", "YES"]
    for command in (["gdal_translate", "-q", *mask, "-b", "1", "-b", "2", "-b", "3", "-mask", "4", "-co", "TILED=YES",
                     "-co", "COMPRESS=JPEG", "-co", "PHOTOMETRIC=YCBCR", "rgba.tif", "cog.tif"],
                    ["gdaladdo", "-q", *mask, "-r", "average", "cog.tif", "2", "4"],
                    ["gdal_translate", "-q", "-a_ullr", "0", "20", "30", "0", "plain.tif", "scaled.tif"],
                    ["gdal_translate", "-q", "rotated.vrt", "rotated.tif"]):
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    assert [int(p.subfiletype) for p in tifffile.TiffFile(tmp_path / "cog.tif").pages] == [0, 4, 1, 1, 5, 5]
    problems = {}
    for name in ("cog.tif", "scaled.tif", "rotated.tif", "nodata.tif"):
        record, _ = me.extract_file(str(tmp_path / name))
        found = differences(record, gdalinfo(str(tmp_path / name)))
        if found or record["geotiff"]["warnings"]:
            problems[name] = found + record["geotiff"]["warnings"]
    assert not problems, json.dumps(problems, indent=1)
