"""File type detection: magic bytes first, the extension second.

Only the first ``HEAD_BYTES`` and last ``TAIL_BYTES`` of a file are looked at,
so detection is cheap and safe on any file.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from ..storage.urls import extension

HEAD_BYTES = 4096
TAIL_BYTES = 65536 + 22  # a ZIP end-of-central-directory can sit 64 KiB from the end

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# (format, description) for each known kind
DESCRIPTIONS = {
    "hdf5": "HDF5 file",
    "netcdf4": "NetCDF-4 file (HDF5 storage)",
    "netcdf3": "NetCDF classic file",
    "mp4": "ISO base media file (MP4)",
    "mov": "QuickTime movie (MOV)",
    "matroska": "Matroska video (MKV)",
    "webm": "WebM video",
    "avi": "AVI video (RIFF)",
    "wav": "WAVE audio (RIFF)",
    "flv": "Flash video (FLV)",
    "mpegts": "MPEG transport stream",
    "mpegps": "MPEG program stream",
    "ogg": "Ogg container",
    "asf": "Advanced Systems Format (ASF/WMV/WMA)",
    "realmedia": "RealMedia container",
    "swf": "Shockwave Flash (SWF)",
    "gif": "GIF image or animation",
    "mpegvideo": "MPEG-1/2 video elementary stream",
    "3gp": "3GPP multimedia file (3GP)",
    "3g2": "3GPP2 multimedia file (3G2)",
    "mxf": "Material Exchange Format (MXF)",
    "dv": "DV video",
    "y4m": "YUV4MPEG2 raw video (Y4M)",
    "mp3": "MPEG audio (MP3)",
    "aac": "AAC audio (ADTS)",
    "flac": "FLAC audio",
    "aiff": "AIFF audio",
    "au": "Sun/NeXT audio (AU)",
    "amr": "AMR audio",
    "ivf": "IVF video (VP8/VP9/AV1)",
    "nut": "NUT multimedia container",
    "caf": "Core Audio Format (CAF)",
    "musepack": "Musepack audio (MPC)",
    "wavpack": "WavPack audio",
    "tta": "True Audio (TTA)",
    "ape": "Monkey's Audio (APE)",
    "w64": "Sony Wave64 audio (W64)",
    "dsf": "DSD Stream File (DSF)",
    "dff": "DSDIFF audio (DFF)",
    "zip": "ZIP archive",
    "tar": "tar archive",
    "gzip": "gzip compressed data",
    "png": "PNG image",
    "jpeg": "JPEG image",
    "pdf": "PDF document",
    "zarr": "Zarr store (a folder)",
    "unknown": "unrecognised binary data",
}

#: formats the media reader (ffprobe) takes; "media" is a file ffprobe recognised without a known signature
VIDEO_FORMATS = frozenset({"mp4", "mov", "matroska", "webm", "avi", "flv", "mpegts", "mpegps", "ogg", "wav", "asf", "realmedia",
                           "swf", "gif", "mpegvideo", "3gp", "3g2", "mxf", "dv", "y4m", "mp3", "aac", "flac", "aiff", "au", "amr",
                           "ivf", "nut", "caf", "musepack", "wavpack", "tta", "ape", "w64", "dsf", "dff", "media"})

#: names that suggest media: a file with one of these and no known signature gets one bounded ffprobe look
MEDIA_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".m4a", ".mov", ".mkv", ".mka", ".webm", ".avi", ".flv", ".f4v", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
    ".vob", ".m1v", ".m2v", ".mpv", ".ogv", ".oga", ".ogg", ".opus", ".wmv", ".wma", ".asf", ".rm", ".rmvb", ".ra", ".swf",
    ".gif", ".3gp", ".3g2", ".mxf", ".dv", ".y4m", ".mp3", ".mp2", ".aac", ".ac3", ".eac3", ".dts", ".flac", ".wav", ".aif",
    ".aiff", ".au", ".snd", ".amr", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf", ".nut", ".caf", ".wv", ".ape", ".mjpeg",
    ".mpc", ".mp+", ".tta", ".w64", ".dsf", ".dff", ".spx", ".tak", ".ofr", ".shn", ".mka", ".m4b",
})

#: what starts a gzip stream
GZIP_MAGIC = b"\x1f\x8b"


def detect_magic(head: bytes, ext: str = "") -> str | None:
    """The format named by the leading bytes, or None."""
    if head[257:262] == b"ustar":  # before HDF5: a tar whose first member is HDF5 has that signature at 512
        return "tar"
    if _hdf5_offset(head) is not None:
        return "netcdf4" if ext in (".nc", ".nc4", ".cdf") else "hdf5"
    if head[:3] == b"CDF" and head[3:4] in (b"\x01", b"\x02", b"\x05"):
        return "netcdf3"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"3g2"):
            return "3g2"
        if brand.startswith(b"3gp") or brand.startswith(b"3ge") or brand.startswith(b"3gg"):
            return "3gp"
        return "mov" if brand == b"qt  " else "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free") and ext in (".mov", ".mp4", ".m4v"):
        return "mov" if ext == ".mov" else "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "matroska"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"WAVE"):
        return "avi" if head[8:12] == b"AVI " else "wav"
    if head[:3] == b"FLV":
        return "flv"
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpegts"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpegps"
    if head[:4] == b"OggS":
        return "ogg"
    media = _media_magic(head)
    if media:
        return media
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:2] == GZIP_MAGIC:
        return "gzip"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:5] == b"%PDF-":
        return "pdf"
    return None


#: (offset, bytes, format) of media signatures ffprobe reads
MEDIA_SIGNATURES = (
    (0, bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), "asf"),
    (0, b".RMF", "realmedia"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"\x00\x00\x01\xb3", "mpegvideo"),
    (0, bytes.fromhex("060e2b34020501010d0102010102"), "mxf"),
    (0, b"YUV4MPEG2 ", "y4m"),
    (0, b"ID3", "mp3"),
    (0, b"fLaC", "flac"),
    (0, b".snd", "au"),
    (0, b"#!AMR", "amr"),
    (0, b"DKIF", "ivf"),
    (0, b"nut/multimedia container", "nut"),
    (0, b"caff", "caf"),
    (0, b"MPCK", "musepack"),  # stream version 8
    (0, b"MP+", "musepack"),  # stream version 7
    (0, b"wvpk", "wavpack"),
    (0, b"TTA1", "tta"),
    (0, b"MAC ", "ape"),
    (0, bytes.fromhex("72696666 2e91cf11 a5d628db 04c10000"), "w64"),  # "riff" and the rest of its GUID
    (0, b"DSD \x1c\x00\x00\x00", "dsf"),
    (0, b"FRM8", "dff"),
)


def _media_magic(head: bytes) -> str | None:
    """Media containers and streams by their leading bytes.

    Bare MP3 and ADTS frame syncs are left out: one random byte pair in 2,000
    looks like one. Such files get ffprobe's look when their name says media.
    """
    for offset, magic, fmt in MEDIA_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    if head[:3] in (b"FWS", b"CWS", b"ZWS") and len(head) > 3 and 0 < head[3] < 64:
        return "swf"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:3] == b"\x1f\x07\x00" and head[3:4] in (b"\x3f", b"\xbf"):
        return "dv"
    return None


def suggests_media(head: bytes, path: str) -> bool:
    """No known signature, but the name or an MPEG start code suggests media: worth one ffprobe look."""
    return extension(path) in MEDIA_EXTENSIONS or head[:3] == b"\x00\x00\x01" or head[:4] == b"\x00\x00\x00\x01"


def _hdf5_offset(head: bytes) -> int | None:
    """HDF5 allows a user block: the signature may sit at 0, 512, 1024, ..."""
    offset = 0
    while offset + 8 <= len(head):
        if head[offset : offset + 8] == HDF5_MAGIC:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


#: attribute names only libnetcdf (and h5netcdf) write into an HDF5 file: it is a netCDF-4 file, whatever its name
NETCDF4_MARKERS = (b"_NCProperties", b"_Netcdf4Dimid", b"_Netcdf4Coordinates", b"_nc3_strict")
#: how far into an HDF5 file its netCDF-4 markers are looked for (the root group's attributes; in a large CMIP file the
#: first ones sit 20 to 40 KiB in)
MARKER_BYTES = 65536


def refine(found: tuple[str, str], head: bytes, path: str, size: int, read: Any) -> tuple[str, str]:
    """``detect``'s answer checked past the first bytes, with ``read(offset, n)``: a file named like a format whose
    reader finds it further in (``StreamChunkReader.recognise``), an HDF5 signature after a user block of 4 KiB or
    more (at each power of two up to the size: a few 8-byte reads of a file nothing else recognised), and netCDF-4's
    markers in an HDF5 file not named as netCDF (one read of ``MARKER_BYTES``)."""
    fmt, _ = found
    if fmt == "unknown":  # named like a format whose reader finds it further in (a header before a GRIB message)
        from .registry import recognised

        named = recognised(extension(path), head, size, read)
        if named is not None:
            return named
    base = _hdf5_offset(head)
    if fmt == "unknown":
        offset = 512
        while offset + 8 <= len(head):  # the offsets the head held were looked at
            offset *= 2
        while offset + 8 <= size and base is None:
            if read(offset, 8) == HDF5_MAGIC:
                base, fmt = offset, "hdf5"
            offset *= 2
    if fmt == "hdf5" and base is not None:
        def marked(data: bytes) -> bool:
            return any(marker in data for marker in NETCDF4_MARKERS)

        if marked(head[base:]) or (base + MARKER_BYTES > len(head) and marked(read(base, MARKER_BYTES))):  # most in the head
            fmt = "netcdf4"
    return (fmt, DESCRIPTIONS[fmt]) if fmt != found[0] else found


def detect(head: bytes, path: str = "") -> tuple[str, str]:
    """(format, description) from the leading bytes.

    The extension only names the type when the content agrees; a file named
    ``x.h5`` without the HDF5 signature is ``unknown`` and the description
    says what its name claimed, so no format reader is let loose on it. A
    gzip stream is the format inside when that format's reader reads it
    through gzip (``registry.gzip_wrapped``: ``x.fits.gz``).
    """
    ext = extension(path)
    found = detect_magic(head, ext)
    if found == "gzip":  # a format whose reader's library reads it through gzip (astropy: x.fits.gz)
        from .registry import gzip_wrapped

        return gzip_wrapped(head) or (found, DESCRIPTIONS[found])
    if found:
        return found, DESCRIPTIONS[found]
    from .registry import named_formats, reader_signatures

    for fmt, offset, magic, description in reader_signatures():
        if signature_at(head, offset, magic):
            return fmt, description
    claimed = named_formats().get(ext)
    if claimed:
        return "unknown", f"{DESCRIPTIONS['unknown']} (named {ext} but has no {claimed} signature)"
    return "unknown", DESCRIPTIONS["unknown"]


def signature_at(data: bytes, offset: int, magic: bytes | re.Pattern[bytes]) -> bool:
    """Whether a reader's signature (``StreamChunkReader.signatures``: bytes, or a pattern of bytes) is at ``offset``."""
    return bool(magic.match(data, offset)) if isinstance(magic, re.Pattern) else data[offset:offset + len(magic)] == magic


def trailing_signatures(tail: bytes) -> list[str]:
    """Signatures that formats put at their end, found in the last bytes."""
    found = []
    if tail.rstrip(b"\r\n\x00 ").endswith(b"%%EOF"):
        found.append("pdf-eof")
    eocd = tail.rfind(b"PK\x05\x06")
    if eocd >= 0 and len(tail) - eocd >= 22:
        comment_len = struct.unpack("<H", tail[eocd + 20 : eocd + 22])[0]
        if eocd + 22 + comment_len == len(tail):
            found.append("zip-end-of-central-directory")
    if tail.endswith(b"\xff\xd9"):
        found.append("jpeg-end-of-image")
    if tail.endswith(b"IEND\xaeB`\x82"):
        found.append("png-iend")
    if b"moov" in tail[-65536:] and b"mvhd" in tail[-65536:]:
        found.append("mp4-moov-at-end")
    return found
