"""Type detection by magic bytes, on real files made by the real tools."""

from __future__ import annotations

import gzip
import subprocess
import zipfile

import pytest

from metaextract_dask import extract_file, probe

FFMPEG_FORMATS = {
    # file name: (ffmpeg args after the inputs, expected format)
    "clip.mp4": (["-c:v", "libx264"], "mp4"),
    "clip.mov": (["-c:v", "mpeg4", "-f", "mov"], "mov"),
    "clip.mkv": (["-c:v", "mpeg4"], "matroska"),
    "clip.webm": (["-c:v", "libvpx", "-b:v", "100k"], "webm"),
    "clip.avi": (["-c:v", "mpeg4"], "avi"),
    "clip.flv": (["-c:v", "flv"], "flv"),
    "clip.ts": (["-c:v", "mpeg2video"], "mpegts"),
    "clip.mpg": (["-c:v", "mpeg2video", "-f", "vob"], "mpegps"),
    "clip.ogv": (["-c:v", "libtheora"], "ogg"),
    "frame.png": (["-frames:v", "1"], "png"),
    "frame.jpg": (["-frames:v", "1"], "jpeg"),
}


def ffmpeg(path, args):
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1", *args, str(path)]
    subprocess.run(cmd, check=True, timeout=120)


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(FFMPEG_FORMATS))
def test_media_made_by_ffmpeg(tmp_path, name):
    args, expected = FFMPEG_FORMATS[name]
    ffmpeg(tmp_path / name, args)
    assert probe(tmp_path / name).format == expected


@pytest.mark.integration
def test_magic_beats_the_extension(tmp_path):
    ffmpeg(tmp_path / "clip.mkv", ["-c:v", "mpeg4"])
    (tmp_path / "clip.mkv").rename(tmp_path / "misnamed.mp4")
    assert probe(tmp_path / "misnamed.mp4").format == "matroska"
    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not hdf5 at all" * 10)
    info = probe(fake)
    assert info.format == "unknown" and "named .h5 but has no hdf5 signature" in info.description


@pytest.mark.unit
def test_scientific_formats(tmp_path):
    import h5py
    import netCDF4
    import numpy as np

    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = np.arange(10)
    with h5py.File(tmp_path / "ub.h5", "w", userblock_size=512) as f:
        f["x"] = np.arange(10)
    for fmt in ("NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA", "NETCDF4"):
        with netCDF4.Dataset(tmp_path / f"{fmt}.nc", "w", format=fmt) as ds:
            ds.createDimension("t", 3)
            ds.createVariable("v", "f4", ("t",))[:] = [1, 2, 3]
    assert probe(tmp_path / "a.h5").format == "hdf5"
    assert probe(tmp_path / "ub.h5").format == "hdf5"
    for fmt in ("NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"):
        assert probe(tmp_path / f"{fmt}.nc").format == "netcdf3"
    assert probe(tmp_path / "NETCDF4.nc").format == "netcdf4"


@pytest.mark.integration
def test_archives_documents_and_trailing_signatures(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("a.txt", "x" * 100)
    (tmp_path / "a.gz").write_bytes(gzip.compress(b"x" * 100))
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    (tmp_path / "a.pdf").write_bytes(pdf)
    ffmpeg(tmp_path / "f.png", ["-frames:v", "1"])
    ffmpeg(tmp_path / "f.jpg", ["-frames:v", "1"])
    expected = {
        "a.zip": ("zip", "zip-end-of-central-directory"),
        "a.gz": ("gzip", None),
        "a.pdf": ("pdf", "pdf-eof"),
        "f.png": ("png", "png-iend"),
        "f.jpg": ("jpeg", "jpeg-end-of-image"),
    }
    for name, (fmt, trailer) in expected.items():
        record = extract_file(tmp_path / name)[0]
        assert record["format"] == fmt
        if trailer:
            assert trailer in record[record["reader"]]["trailing_signatures"]  # binary, or archive for a zip
