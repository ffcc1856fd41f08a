"""TIFF and GeoTIFF / Cloud-Optimized GeoTIFF rasters through tifffile: images, bands, georeferencing, statistics.

The record describes each full-resolution image as ``gdalinfo`` does (size,
bands, data type, block, compression, interleave, overviews, nodata, the
bands' descriptions, scales and offsets from GDAL's own metadata tag) and
the georeferencing from the GeoTIFF keys: the CRS (its EPSG code when the
keys name one, the keys themselves always), the geotransform in GDAL's
convention (the top-left pixel's corner, half a pixel shifted for a
PixelIsPoint raster) and the longitude/latitude box (through pyproj for a
projected CRS that an EPSG code names). Statistics
are read block by block in storage order (a strip or tile is a cell, blocks
packed into chunk tasks as for HDF5), each block decoded once for all its
bands, nodata left out as ``gdalinfo -stats`` does. Install with
``pip install 'metaextract_dask[geotiff]'`` (tifffile; imagecodecs decodes
LZW, JPEG, ZSTD and the rest; pyproj names the CRS).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import threading
from typing import Any, Iterator

from ..core.model import ChunkSpec, ChunkType, FileInfo
from ..core.settings import StreamingConfig
from . import arrays
from .base import State
from .probe import open_source

EXTRA_HINT = "GeoTIFF support needs tifffile: pip install 'metaextract_dask[geotiff]'"
#: GeoTIFF's "user-defined" code: the keys then spell the CRS out instead of naming it
USER_DEFINED = 32767
#: GDAL's data type names, for the record's ``gdal_type`` (what ``gdalinfo`` prints)
GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32", "int32": "Int32",
              "uint64": "UInt64", "int64": "Int64", "float32": "Float32", "float64": "Float64", "complex64": "CFloat32",
              "complex128": "CFloat64"}
#: STAC's projection extension
PROJECTION_SCHEMA = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
#: the longest GDAL metadata XML parsed (a tag of more is left out with a warning)
MAX_GDAL_METADATA = 1 << 20


@contextlib.contextmanager
def open_tiff(path: str) -> Iterator[Any]:
    """The TIFF file, read-only, through the scan's pinned descriptor or a remote object's ranged reads; what tifffile
    logs of it while open (a tag that does not parse, a directory past the end) is its ``said`` list."""
    import tifffile

    said = _Said()
    logger = logging.getLogger("tifffile")
    logger.addHandler(said)
    try:
        with open_source(path) as f, tifffile.TiffFile(f) as tif:
            setattr(tif, "said", said.messages)  # noqa: B010 - read back by describe_tiff
            yield tif
    finally:
        logger.removeHandler(said)


class _Said(logging.Handler):
    """Keeps the warnings tifffile logs of the file being read (of this thread only)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if threading.get_ident() != self.thread or len(self.messages) >= 100:
            return
        text = " ".join(record.getMessage().split())
        text = text.split("> ", 1)[-1] if text.startswith("<tifffile.") else text  # without tifffile's object repr
        if text not in self.messages:
            self.messages.append(text)


def _enum_name(value: Any) -> Any:
    """A tifffile enum as its name (``LZW``), anything else as it is."""
    name = getattr(value, "name", None)
    return name if isinstance(name, str) else value


def _geokeys(tif: Any) -> dict[str, Any]:
    """The GeoTIFF keys and model tags as JSON-friendly values ({} for a plain TIFF)."""
    found = getattr(tif, "geotiff_metadata", None) or _model_tags(tif)
    out: dict[str, Any] = {}
    for key, value in found.items():
        if hasattr(value, "value") and hasattr(value, "name"):  # an enum: its code, which GDAL and EPSG use
            value = int(value.value)
        out[str(key)] = arrays.to_jsonable(value)
    return out


#: the model tags that place a raster without GeoKeys (a TIFF georeferenced with no CRS, as GDAL writes one): tag code
#: -> the name ``geotiff_metadata`` gives them
MODEL_TAGS = {33550: "ModelPixelScale", 33922: "ModelTiepoint", 34264: "ModelTransformation"}


def _model_tags(tif: Any) -> dict[str, Any]:
    """The first page's model tags when it has no GeoKey directory (tifffile then gives no GeoTIFF metadata): GDAL still
    places such a raster (its geotransform), in no CRS. The transformation as tifffile gives it: four rows of four."""
    pages = list(tif.pages[:1])
    tags = pages[0].tags if pages else {}
    out: dict[str, Any] = {}
    for code, name in MODEL_TAGS.items():
        tag = tags.get(code)
        values = list(tag.value) if tag is not None and isinstance(tag.value, (tuple, list)) else None
        if values and all(isinstance(v, (int, float)) for v in values):
            out[name] = [values[i:i + 4] for i in range(0, 16, 4)] if name == "ModelTransformation" and len(values) == 16 else values
    return out


def crs_of(keys: dict[str, Any]) -> dict[str, Any]:
    """The CRS the keys declare: its model, the EPSG code when one names it (and, with pyproj, its name), the citations.

    A code whose linear units the keys replace (a State Plane zone in feet where EPSG's is in metres) is not that
    CRS: its code is kept as ``declared_epsg``, as GDAL then makes a CRS of its own from the keys.
    """
    model = {1: "projected", 2: "geographic", 3: "geocentric"}.get(keys.get("GTModelTypeGeoKey"), None)  # type: ignore[arg-type]
    code = keys.get("ProjectedCSTypeGeoKey") if model == "projected" else keys.get("GeographicTypeGeoKey") if model else None
    epsg = code if isinstance(code, int) and 1024 <= code < USER_DEFINED else None
    out: dict[str, Any] = {"model": model, "epsg": epsg}
    for key in ("GTCitationGeoKey", "GeogCitationGeoKey", "PCSCitationGeoKey"):
        if isinstance(keys.get(key), str):
            out[key[:-len("GeoKey")].lower()] = keys[key].strip().strip("|")
    crs = _pyproj_crs(epsg)
    if crs is not None:
        out["name"] = crs.name
        units = keys.get("ProjLinearUnitsGeoKey") if model == "projected" else None
        if isinstance(units, int) and units != USER_DEFINED and str(units) not in {a.unit_code for a in crs.axis_info}:
            out["epsg"], out["declared_epsg"] = None, epsg
            out["note"] = f"EPSG:{epsg} with its linear units replaced (EPSG unit {units}): a CRS of its own"
    return out


def _pyproj_crs(epsg: int | None) -> Any:
    """pyproj's CRS of an EPSG code, or None (no code, pyproj not installed, or a code PROJ does not know)."""
    if epsg is None or importlib.util.find_spec("pyproj") is None:
        return None
    import pyproj

    try:
        return pyproj.CRS.from_epsg(epsg)
    except pyproj.exceptions.CRSError:
        return None


def lonlat_box(crs: dict[str, Any], extent: list[float]) -> list[float] | None:
    """[lon_min, lat_min, lon_max, lat_max] of an extent: as it is in a geographic CRS, through pyproj from a projected
    one named by its EPSG code; None otherwise (a CRS of the keys' own making, or no pyproj)."""
    if crs.get("model") == "geographic" and crs.get("epsg") is not None:
        box = list(extent)
    else:
        source = _pyproj_crs(crs.get("epsg")) if crs.get("model") == "projected" else None
        if source is None:
            return None
        import pyproj

        try:
            left, bottom, right, top = extent
            box = list(pyproj.Transformer.from_crs(source, 4326, always_xy=True).transform_bounds(left, bottom, right, top, densify_pts=21))
        except Exception:  # noqa: BLE001 - an extent outside the projection's domain: no box rather than a wrong one
            return None
    if not all(math.isfinite(v) for v in box) or not -90 <= box[1] <= box[3] <= 90:
        return None
    return box


def geotransform(keys: dict[str, Any]) -> tuple[list[float] | None, str]:
    """(GDAL's six-number geotransform or None, "area" or "point"): from the model transformation, or the pixel scale
    and one tiepoint; a PixelIsPoint raster's is shifted half a pixel to the corner, as GDAL does."""
    raster = "point" if keys.get("GTRasterTypeGeoKey") == 2 else "area"
    matrix, scale, ties = keys.get("ModelTransformation"), keys.get("ModelPixelScale"), keys.get("ModelTiepoint")
    gt: list[float] | None = None
    flat = [v for row in matrix for v in (row if isinstance(row, list) else [row])] if isinstance(matrix, list) else []
    if len(flat) >= 8:  # the 4x4 matrix, row by row
        gt = [float(flat[i]) for i in (3, 0, 1, 7, 4, 5)]
    elif isinstance(scale, list) and len(scale) >= 2 and isinstance(ties, list) and len(ties) == 6:
        i, j, _, x, y, _ = (float(v) for v in ties)
        sx, sy = float(scale[0]), float(scale[1])
        gt = [x - i * sx, sx, 0.0, y + j * sy, 0.0, -sy]
    if gt is not None and raster == "point":
        gt[0] -= gt[1] * 0.5 + gt[2] * 0.5
        gt[3] -= gt[4] * 0.5 + gt[5] * 0.5
    return gt, raster


def _gdal_metadata(page: Any, warnings: list[str]) -> tuple[dict[str, str], dict[int, dict[str, Any]]]:
    """GDAL's metadata tag (42112): the dataset's items, and per band (0-based) its description, scale, offset, unit
    and other items."""
    import xml.etree.ElementTree as ET

    tag = page.tags.get(42112)
    text = tag.value if tag is not None else None
    if not isinstance(text, str) or not text.strip():
        return {}, {}
    if len(text) > MAX_GDAL_METADATA:
        warnings.append(f"GDAL metadata tag of {len(text)} characters not read")
        return {}, {}
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        warnings.append(f"GDAL metadata tag does not parse: {exc}")
        return {}, {}
    dataset: dict[str, str] = {}
    bands: dict[int, dict[str, Any]] = {}
    for item in root.iter("Item"):
        name, value, role, sample = item.get("name") or "", (item.text or "").strip(), item.get("role"), item.get("sample")
        if sample is None:
            dataset[name] = value
            continue
        band = bands.setdefault(int(sample) if sample.isdigit() else -1, {})
        if role in ("description", "scale", "offset", "unittype"):
            band[{"unittype": "unit"}.get(role, role)] = _number(value) if role in ("scale", "offset") else value
        else:
            band.setdefault("metadata", {})[name] = value
    return dataset, bands


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _nodata(page: Any) -> Any:
    """GDAL's nodata tag (42113) as a number (NaN as the text "nan"), or None."""
    tag = page.tags.get(42113)
    text = tag.value if tag is not None else None
    if not isinstance(text, str) or not text.strip().strip("\x00"):
        return None
    value = _number(text.strip().strip("\x00"))
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def _block(page: Any) -> tuple[int, int]:
    """(rows, columns) of one strip or tile."""
    if page.is_tiled:
        return int(page.tilelength), int(page.tilewidth)
    return max(1, min(int(page.rowsperstrip or page.imagelength), int(page.imagelength))), int(page.imagewidth)


def _full_images(tif: Any) -> list[tuple[int, Any]]:
    """(page index, page) of every full-resolution image (overviews and masks are not images of their own)."""
    out = []
    for index, page in enumerate(tif.pages):
        if not (int(page.subfiletype) & 0b101):  # 1: reduced resolution (an overview), 4: a transparency mask
            out.append((index, page))
    return out


def _overviews(tif: Any, after: int) -> list[list[int]]:
    """[width, height] of the reduced-resolution pages that follow image ``after`` (its overviews), its own and its
    overviews' masks between them (GDAL's cloud-optimized layout: image, mask, overview, overview's mask...)."""
    out = []
    for page in list(tif.pages)[after + 1:]:
        flags = int(page.subfiletype)
        if not flags & 0b101:  # the next full-resolution image
            break
        if not flags & 4:
            out.append([int(page.imagewidth), int(page.imagelength)])
    return out


def _band_name(image: int, band: int) -> str:
    """A band's array name: ``band_1``... for the first image, ``image2_band_1``... for the others."""
    return f"band_{band + 1}" if image == 0 else f"image{image + 1}_band_{band + 1}"


def _is_cog(tif: Any) -> bool:
    """Cloud-optimized: tiled, overviews tiled too, and every directory before the first tile's data."""
    pages = list(tif.pages)
    if not pages or not all(p.is_tiled for p in pages):
        return False
    first_data = min((int(o) for p in pages for o in p.dataoffsets if o), default=0)
    return all(int(p.offset) < first_data for p in pages)


def describe_tiff(tif: Any) -> dict[str, Any]:
    """The images, bands and georeferencing of an open TIFF."""
    warnings: list[str] = []
    keys = _geokeys(tif)
    images = []
    for number, (index, page) in enumerate(_full_images(tif)):
        entry: dict[str, Any] = {"page": index}
        try:
            samples = int(page.samplesperpixel)
            rows, cols = _block(page)
            dtype = str(page.dtype) if page.dtype is not None else None
            entry.update({"width": int(page.imagewidth), "height": int(page.imagelength), "bands": samples, "dtype": dtype,
                          "gdal_type": GDAL_TYPES.get(str(dtype)), "block": [cols, rows], "tiled": bool(page.is_tiled),
                          "compression": _enum_name(page.compression), "predictor": _enum_name(page.predictor),
                          "photometric": _enum_name(page.photometric),
                          "interleave": "pixel" if samples > 1 and int(page.planarconfig) == 1 else "band",
                          "colormap": page.tags.get(320) is not None, "nodata": _nodata(page),
                          "overviews": _overviews(tif, index)})
            metadata, described = _gdal_metadata(page, warnings)
            if metadata:
                entry["metadata"] = metadata
            entry["band_info"] = [{"name": _band_name(number, b), **described.get(b, {})} for b in range(samples)]
        except Exception as exc:  # noqa: BLE001 - one image's odd tags: a warning on it, the others go on
            entry.setdefault("warnings", []).append(f"not described: {exc} [{type(exc).__name__}]")
            warnings.append(f"image {number + 1}: not described: {exc}")
        images.append(entry)
    if not images:
        warnings.append("no image directory could be read (the file is cut short, or its first directory's offset is wrong)")
    # tifffile's own reading of GDAL's nodata text may fail (a value float32 cannot hold exactly); _nodata reads the text
    warnings += [w for w in getattr(tif, "said", []) if w not in warnings and "GDAL_NODATA" not in w]
    gt, raster = geotransform(keys)
    ties = keys.get("ModelTiepoint")
    out: dict[str, Any] = {"images": images, "bigtiff": bool(tif.is_bigtiff), "cog": _is_cog(tif), "georeferenced": bool(keys),
                           "crs": crs_of(keys) if keys else None, "geotransform": gt, "raster_type": raster if keys else None,
                           "geokeys": keys, "warnings": warnings}
    if isinstance(ties, list) and len(ties) > 6:
        out["gcps"] = len(ties) // 6
    if gt is not None and images and "width" in images[0]:
        out["extent"] = _extent(gt, images[0]["width"], images[0]["height"])
        out["bbox"] = lonlat_box(out["crs"] or {}, out["extent"])
    return out


def _extent(gt: list[float], width: int, height: int) -> list[float]:
    """[xmin, ymin, xmax, ymax] of the raster in its CRS's units."""
    xs = [gt[0] + c * gt[1] + r * gt[2] for c in (0, width) for r in (0, height)]
    ys = [gt[3] + c * gt[4] + r * gt[5] for c in (0, width) for r in (0, height)]
    return [min(xs), min(ys), max(xs), max(ys)]


class _Image:
    """One full-resolution image, sliced like a NumPy array of (rows, columns, bands): only the strips or tiles that
    a slab touches are read and decoded, each once for all its bands."""

    def __init__(self, tif: Any, page: Any) -> None:
        self.tif, self.page = tif, page
        self.shape = (int(page.imagelength), int(page.imagewidth))
        self.samples = int(page.samplesperpixel)
        self.separate = self.samples > 1 and int(page.planarconfig) == 2
        self.block = _block(page)

    def __getitem__(self, slices: tuple[slice, ...]) -> Any:
        import numpy as np

        (r0, r1, _), (c0, c1, _) = (s.indices(n) for s, n in zip(slices, self.shape))
        th, tw = self.block
        across = -(-self.shape[1] // tw)
        per_plane = across * -(-self.shape[0] // th)
        out = np.zeros((r1 - r0, c1 - c0, self.samples), dtype=self.page.dtype)
        planes = range(self.samples) if self.separate else [None]
        for ty in range(r0 // th, -(-r1 // th)):
            for tx in range(c0 // tw, -(-c1 // tw)):
                for plane in planes:
                    index = ty * across + tx + (plane or 0) * per_plane
                    block = self._segment(index)
                    if block is None:  # a sparse (unwritten) block: GDAL reads it as 0 (or nodata)
                        continue
                    y0, x0 = ty * th, tx * tw
                    ys, xs = slice(max(r0, y0), min(r1, y0 + th)), slice(max(c0, x0), min(c1, x0 + tw))
                    part = block[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
                    bands = slice(plane, plane + 1) if plane is not None else slice(None)
                    out[ys.start - r0:ys.stop - r0, xs.start - c0:xs.stop - c0, bands] = part
        return out

    def _segment(self, index: int) -> Any:
        """One strip or tile decoded as (rows, columns, samples), or None when the file holds no data for it."""
        page = self.page
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if not offset or not count:
            return None
        fh = self.tif.filehandle
        with fh.lock:
            fh.seek(offset)
            data = fh.read(count)
        if len(data) < count:
            raise ValueError(f"block {index} ends past the end of the file (offset {offset}, {count} bytes)")
        segment, _, shape = page.decode(data, index, jpegtables=page.jpegtables)
        if segment is None:
            raise ValueError(f"block {index} does not decode")
        return segment.reshape(shape[-3:])


def _masked(values: Any, nodata: Any) -> Any:
    """The band's values with its nodata masked (left out of the statistics, counted as fill)."""
    import numpy as np

    if not isinstance(nodata, (int, float)):  # none, NaN ("nan": counted and left out already), or text that is no number
        return values
    dtype = values.dtype
    if dtype.kind in "iu" and not (float(nodata).is_integer() and np.iinfo(dtype).min <= nodata <= np.iinfo(dtype).max):
        return values  # a nodata outside the type's range, or a fraction: no value of the band is nodata
    with np.errstate(over="ignore"):  # compared in the band's type, as GDAL does: -3.4e+38 is float32's -3.3999999521e+38
        return np.ma.masked_equal(values, dtype.type(nodata))


class GeoTIFFReader(arrays.ArrayFileReader):
    """TIFF and GeoTIFF rasters: images, bands, georeferencing and band statistics."""

    name = "geotiff"
    formats = frozenset({"tiff"})
    signatures = (("tiff", 0, b"II*\x00", "TIFF image (little-endian)"), ("tiff", 0, b"MM\x00*", "TIFF image (big-endian)"),
                  ("tiff", 0, b"II+\x00", "BigTIFF image (little-endian)"), ("tiff", 0, b"MM\x00+", "BigTIFF image (big-endian)"))
    extensions = {".tif": "tiff", ".tiff": "tiff", ".gtiff": "tiff"}
    media_types = {"tiff": "image/tiff"}
    columns = (("raster_width", "int64"), ("raster_height", "int64"), ("bands", "int32"), ("crs", "string"), ("cog", "bool"),
               ("lat_min", "float64"), ("lat_max", "float64"), ("lon_min", "float64"), ("lon_max", "float64"), *arrays.ARRAY_COLUMNS)
    metadata_key = "images"
    array_word = "bands"

    def unavailable(self) -> str | None:
        return None if importlib.util.find_spec("tifffile") else EXTRA_HINT

    def media_type(self, fmt: str, section: dict[str, Any]) -> str | None:
        """STAC's types: a GeoTIFF's (``application=geotiff``), a cloud-optimized one's with its profile."""
        if not section.get("georeferenced"):
            return "image/tiff"
        return "image/tiff; application=geotiff" + ("; profile=cloud-optimized" if section.get("cog") else "")

    def stac_properties(self, section: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """STAC's projection extension: ``proj:code``, ``proj:shape``, ``proj:transform`` (the affine's six numbers) and
        ``proj:bbox`` in the raster's own CRS."""
        first = (section.get("images") or [{}])[0] or {}
        gt, crs = section.get("geotransform"), section.get("crs") or {}
        if not section.get("georeferenced") or not isinstance(gt, list) or "width" not in first:
            return {}, []
        props: dict[str, Any] = {"proj:code": f"EPSG:{crs['epsg']}" if isinstance(crs.get("epsg"), int) else None,
                                 "proj:shape": [first["height"], first["width"]], "proj:transform": [gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]]}
        if isinstance(section.get("extent"), list):
            props["proj:bbox"] = section["extent"]
        return props, [PROJECTION_SCHEMA]

    def open(self, path: str) -> Any:
        return open_tiff(path)

    def arrays_of(self, handle: Any) -> list[arrays.ArrayInfo]:
        found = []
        for number, (_, page) in enumerate(_full_images(handle)):
            try:
                itemsize = page.dtype.itemsize * int(page.samplesperpixel)
                found.append(arrays.ArrayInfo(f"image{number}", (int(page.imagelength), int(page.imagewidth)), itemsize,
                                              _block(page), int(min(page.dataoffsets, default=0)), int(sum(page.databytecounts))))
            except Exception:  # noqa: BLE001 - an image whose tags do not read: structure only (its record says why)
                continue
        return found

    def describe(self, handle: Any, metadata_only: bool = False) -> dict[str, Any]:
        return describe_tiff(handle)

    def array(self, handle: Any, name: str) -> tuple[Any, Any]:
        page = _full_images(handle)[int(name[5:])][1]
        return _Image(handle, page), _nodata(page)

    def _summarize(self, handle: Any, spec: ChunkSpec, config: StreamingConfig) -> State:
        if spec.chunk_type is ChunkType.METADATA:
            return super()._summarize(handle, spec, config)
        out: dict[str, Any] = {}
        parts: Any = spec.key  # a SECTION's (array cells) parts
        for part in parts:
            number = int(part.name[5:])
            names = []
            try:
                image, nodata = self.array(handle, part.name)
                names = [_band_name(number, b) for b in range(image.samples)]
                total = math.prod(arrays.grid(image.shape, part.cell))
                for slices, cells in arrays.box_reads(image.shape, part):
                    block = image[slices]
                    for band, name in enumerate(names):
                        s = arrays.cell_stats(_masked(block[..., band], nodata))
                        s["cells"], s["cells_total"] = cells, total
                        out[name] = arrays.merge_stats(out.get(name), s)
            except Exception as exc:  # noqa: BLE001 - recorded on this image's bands, never raised: other images go on
                for name in names or [_band_name(number, 0)]:
                    out[name] = {"error": f"{exc} [{type(exc).__name__}]"}
        return {"meta": None, "stats": out}

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        described = state["meta"]
        for image in described["images"]:
            for band in image.get("band_info", []):
                stats = state["stats"].get(band["name"])
                if stats is not None and "error" in stats:
                    band.setdefault("warnings", []).append(f"statistics: {stats['error']}")
                    described["warnings"].append(f"{band['name']}: statistics: {stats['error']}")
                elif stats is not None:
                    band["stats"] = arrays.final_stats(stats, stats.get("cells_total", 0))
        return described

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        first = (record.get("images") or [{}])[0] or {}
        crs = record.get("crs") or {}
        out = {"raster_width": first.get("width"), "raster_height": first.get("height"), "bands": first.get("bands"),
               "crs": f"EPSG:{crs['epsg']}" if isinstance(crs.get("epsg"), int) else None, "cog": record.get("cog"),
               **arrays.array_columns(self.variable_rows(record))}
        box = record.get("bbox")
        if isinstance(box, list) and len(box) == 4:
            lon_min, lat_min, lon_max, lat_max = box
            whole = lon_max - lon_min >= 360
            out.update({"lat_min": lat_min, "lat_max": lat_max, "lon_min": -180.0 if whole else ((lon_min + 180) % 360) - 180,
                        "lon_max": 180.0 if whole else ((lon_max + 180) % 360) - 180})
        return out

    def variable_rows(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for image in record.get("images") or []:
            for band in image.get("band_info") or []:
                entry = {"shape": [image.get("height"), image.get("width")], "dtype": image.get("dtype"),
                         "chunks": list(reversed(image.get("block") or [])) or None, "stats": band.get("stats"),
                         "attrs": {"units": band.get("unit"), "long_name": band.get("description")}}
                filters = [str(image["compression"]).lower()] if image.get("compression") not in (None, "NONE") else []
                rows.append(arrays.variable_row(band["name"], entry, ["y", "x"], filters, image.get("nodata")))
        return rows

    def open_dataset(self, path: str, fmt: str, **kwargs: Any) -> Any:
        """The first image as ``band_data`` (band, y, x), read lazily through tifffile's Zarr view, with ``x`` and ``y``
        at pixel centres from the geotransform (as rioxarray gives them) and the nodata as ``_FillValue``."""
        import dask.array as da
        import numpy as np
        import tifffile
        import xarray as xr
        import zarr

        with open_tiff(path) as tif:
            described = describe_tiff(tif)
        store = tifffile.imread(path, aszarr=True, level=0)
        z = zarr.open(store, mode="r")
        data = da.from_zarr(z)
        image = described["images"][0]
        if data.ndim == 2:
            data = data[None]
        elif image.get("interleave") == "pixel":
            data = data.transpose(2, 0, 1)
        height, width = data.shape[1:]
        gt = described.get("geotransform") or [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        coords = {"band": np.arange(1, data.shape[0] + 1), "x": gt[0] + (np.arange(width) + 0.5) * gt[1],
                  "y": gt[3] + (np.arange(height) + 0.5) * gt[5]}
        attrs = {} if image.get("nodata") is None else {"_FillValue": float("nan") if image["nodata"] == "nan" else image["nodata"]}
        ds = xr.Dataset({"band_data": (("band", "y", "x"), data, attrs)}, coords=coords,
                        attrs={"crs": f"EPSG:{described['crs']['epsg']}" if (described.get("crs") or {}).get("epsg") else None} if described.get("crs") else {})
        ds.set_close(store.close)
        return ds
