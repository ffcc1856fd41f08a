"""File type detection: magic bytes first, the extension second.

Only the first ``HEAD_BYTES`` and last ``TAIL_BYTES`` of a file are looked at,
so detection is cheap and safe on any file.
"""

from __future__ import annotations

import os
import struct

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
    "zip": "ZIP archive",
    "gzip": "gzip compressed data",
    "png": "PNG image",
    "jpeg": "JPEG image",
    "pdf": "PDF document",
    "unknown": "unrecognised binary data",
}

VIDEO_FORMATS = frozenset({"mp4", "mov", "matroska", "webm", "avi", "flv", "mpegts", "mpegps", "ogg"})

EXTENSIONS = {
    ".h5": "hdf5", ".hdf5": "hdf5", ".he5": "hdf5", ".hdf": "hdf5",
    ".nc": "netcdf3", ".nc4": "netcdf4", ".cdf": "netcdf3",
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
    ".avi": "avi", ".flv": "flv", ".ts": "mpegts", ".mpg": "mpegps", ".mpeg": "mpegps", ".ogv": "ogg",
    ".zip": "zip", ".gz": "gzip", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf",
}


def detect_magic(head: bytes, ext: str = "") -> str | None:
    """The format named by the leading bytes, or None."""
    if _hdf5_offset(head) is not None:
        return "netcdf4" if ext in (".nc", ".nc4", ".cdf") else "hdf5"
    if head[:3] == b"CDF" and head[3:4] in (b"\x01", b"\x02", b"\x05"):
        return "netcdf3"
    if head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free") and ext in (".mov", ".mp4", ".m4v"):
        return EXTENSIONS[ext]
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
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:5] == b"%PDF-":
        return "pdf"
    return None


def _hdf5_offset(head: bytes) -> int | None:
    """HDF5 allows a user block: the signature may sit at 0, 512, 1024, ..."""
    offset = 0
    while offset + 8 <= len(head):
        if head[offset : offset + 8] == HDF5_MAGIC:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def detect(head: bytes, path: str = "") -> tuple[str, str]:
    """(format, description) from the leading bytes.

    The extension only names the type when the content agrees; a file named
    ``x.h5`` without the HDF5 signature is ``unknown`` and the description
    says what its name claimed, so no format reader is let loose on it.
    """
    ext = os.path.splitext(path)[1].lower()
    found = detect_magic(head, ext)
    if found:
        return found, DESCRIPTIONS[found]
    claimed = EXTENSIONS.get(ext)
    if claimed:
        return "unknown", f"{DESCRIPTIONS['unknown']} (named {ext} but has no {claimed} signature)"
    return "unknown", DESCRIPTIONS["unknown"]


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
