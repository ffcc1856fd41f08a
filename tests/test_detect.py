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


@pytest.mark.unit
def test_a_batch_reads_each_small_plain_file_in_one_open_and_one_read(tmp_path, monkeypatch):
    """The files a batch reads without a parser (``execution.batch.extract_plain``) cost one open and one read each,
    the file's own work: its probe reads it whole and its record is made from those bytes (before, the lane read a
    file's head, then its bytes, then its tail: three reads). The records are those each file's own extraction makes;
    a file past one read piece is left to its own call, unopened."""
    import json
    import os

    from metaextract_dask import StreamingConfig
    from metaextract_dask.execution.batch import extract_plain, extract_with_columns
    from metaextract_dask.readers.binary import READ_PIECE

    files = {
        "random.bin": os.urandom(700),
        "notes.txt": b"a line of text\n" * 40,
        "packed.gz": gzip.compress(b"x" * 5000),
        "paper.pdf": b"%PDF-1.4\n" + b"0" * 300 + b"\n%%EOF\n",
        "image.png": b"\x89PNG\r\n\x1a\n" + os.urandom(200) + b"IEND\xaeB`\x82",
        "claims.h5": b"no HDF5 signature here" * 10,
        "zeros": bytes(3000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    large = tmp_path / "large.bin"
    large.write_bytes(os.urandom(READ_PIECE + 1))
    items = [(str(p), str(p)) for p in sorted(tmp_path.iterdir())]
    calls = {"open": 0, "pread": 0, "read": 0}
    for name in calls:
        real = getattr(os, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, counted)
    config = StreamingConfig()
    block = extract_plain(items, config)
    seen = dict(calls)
    monkeypatch.undo()
    assert sorted(block.paths) == sorted(str(tmp_path / n) for n in files)  # the large file is left to its own call
    assert seen == {"open": len(files), "pread": len(files), "read": 0}
    for i, path in enumerate(block.paths):
        record, columns = extract_with_columns(path, config)
        assert json.loads(block.columns["metadata"][i]) == record
        assert {k: v[i] for k, v in block.columns.items() if v[i] is not None} == columns


@pytest.mark.unit
def test_a_batch_takes_its_plain_files_through_each_stage_a_group_at_a_time(tmp_path, monkeypatch):
    """``extract_plain`` runs each stage for every file of a group (``PLAIN_GROUP`` files) before the next stage: the
    processor's caches keep one stage's code from file to file (a tiny file cost 110 us read stage after stage, 81 us
    so). A file that fails a stage leaves its group alone, and a group's time is shared among its files' records."""
    import os

    from metaextract_dask import StreamingConfig
    from metaextract_dask.execution import batch
    from metaextract_dask.readers import probe

    count = batch.PLAIN_GROUP + 8
    for i in range(count):
        (tmp_path / f"f{i:03d}.bin").write_bytes(os.urandom(300))
    items = [(str(p), str(p)) for p in sorted(tmp_path.iterdir())]
    events: list[tuple[str, str]] = []
    real_probe, real_finalize = probe.probe_whole, batch.finalize_file

    def probed(path, limit):
        events.append(("probe", path))
        return real_probe(path, limit)

    def finalized(reader, info, *args):
        events.append(("record", info.path))
        if info.path == items[3][1]:
            raise OSError("a disk error on this file alone")
        return real_finalize(reader, info, *args)

    monkeypatch.setattr(probe, "probe_whole", probed)
    monkeypatch.setattr(batch, "finalize_file", finalized)
    block = batch.extract_plain(items, StreamingConfig())
    kinds = [kind for kind, _ in events]
    first = batch.PLAIN_GROUP
    assert kinds == ["probe"] * first + ["record"] * first + ["probe"] * 8 + ["record"] * 8
    assert sorted(block.paths) == sorted(path for _, path in items if path != items[3][1])  # left to its own call
    for group in (slice(0, first - 1), slice(first - 1, None)):
        starts, ends = block.starts[group], block.ends[group]
        assert all(s < e for s, e in zip(starts, ends)) and ends[:-1] == starts[1:]  # the group's time, shared out


@pytest.mark.unit
def test_a_gzip_stream_is_the_format_inside_when_its_reader_reads_through_gzip(tmp_path):
    """A gzip stream whose first decompressed bytes are a FITS header is a FITS file (astropy reads ``x.fits.gz``
    itself: ``opens_gzip``); any other gzip stream, a cut one and one that does not decompress stay gzip data."""
    from metaextract_dask.readers.probe import probe

    header = "".join(c.ljust(80) for c in ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    0",
                                           "END"]).ljust(2880).encode()
    cases = {"image.fits.gz": gzip.compress(header), "notes.gz": gzip.compress(b"a line of text\n" * 100),
             "cut.fits.gz": gzip.compress(header)[:12], "broken.fits.gz": gzip.compress(header)[:10] + b"\xff" * 100}
    found = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        info = probe(str(tmp_path / name))
        found[name] = (info.format, info.description)
    assert found["image.fits.gz"] == ("fits", "FITS file, gzip-compressed")
    assert {found[n][0] for n in ("notes.gz", "cut.fits.gz", "broken.fits.gz")} == {"gzip"}
