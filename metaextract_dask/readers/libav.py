"""ffprobe's answers without starting ffprobe: libavformat in this process, through PyAV.

Starting ffprobe costs 60 to 80 ms on these machines (it maps and relocates
215 shared libraries) while probing a small file takes under 1 ms: in a scan
of many small media files the process start was the whole cost
(benchmarks/RESULTS-cli.md, case b). PyAV wraps the same libavformat that
ffprobe prints from, so this module asks it the same questions and returns
them in ffprobe's JSON shape (``format``, ``streams``, video ``packets``)
for ``video.py`` to read as before.

PyAV bundles its own FFmpeg, usually newer than the system's ffprobe: where
two FFmpeg releases estimate differently (a GIF's frame rates, a DV stream's
bit rate, an r_frame_rate of 50/1 where 5.1 said 25/1 for MPEG-1 video,
a GIF's average rate that 5.1 left at 0/0) the record says which one
answered (``prober``); containers, durations, codecs, sizes, sample rates,
channels and frame and keyframe counts agree on every file of the public
corpus (``tests/test_media_prober.py``). Parsing runs in
the sandbox child like libhdf5 (``VideoChunkReader.native``): a crash or a
hang in libavcodec costs one file. Only the ``file`` protocol is allowed, and
demuxers that open other files named inside a file (HLS and DASH playlists,
concat lists, IMF) are not offered: nothing outside the scanned file is read.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import importlib.util
import os
import threading
from fractions import Fraction
from typing import Any, Iterator

from ..core.text import safe_text

#: PyAV's log level is process-wide: threads parsing in one process (``--no-isolate``) take turns setting it
_LOG_LEVEL = threading.Lock()

#: demuxers that read anything but the one file named: never offered, to PyAV, ffprobe or ffmpeg.
#: Files or URLs a file names (playlists, concat lists, IMF); numbered siblings of a name that is a pattern
#: (image2: ``v%d.png``, or a folder ``d%d/``, reads ``v1.png``... even when they link out of the tree);
#: the ``.sub`` beside a ``.idx`` (vobsub); network sessions (SDP, RTSP, RTP, SAP); scripts (AviSynth,
#: VapourSynth); DVD structures; and input devices, among them lavfi, whose ``movie`` filter opens any file.
REFUSED_DEMUXERS = frozenset({
    "hls", "dash", "concat", "ffconcat", "imf", "image2", "vobsub", "dvdvideo", "sdp", "rtsp", "rtp", "rtp_mpegts", "sap",
    "avisynth", "vapoursynth", "lavfi", "alsa", "fbdev", "iec61883", "jack", "kmsgrab", "libcdio", "libdc1394", "openal", "oss",
    "pulse", "video4linux2", "v4l2", "x11grab", "xcbgrab", "dshow", "gdigrab", "avfoundation", "decklink", "android_camera",
})


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether PyAV is installed (without importing it: 50 ms and 200 MB of address space); asked once per process,
    not for every file and chunk (a ``find_spec`` walks ``sys.path``: 20 us)."""
    return importlib.util.find_spec("av") is not None


@functools.lru_cache(maxsize=1)
def prober_name() -> str:
    """What answered, as stored in records: the library versions a reader of the catalog can look up."""
    import av

    fmt = ".".join(str(v) for v in av.library_versions.get("libavformat", ()))
    return f"libavformat {fmt} (PyAV {av.__version__})"


@functools.lru_cache(maxsize=1)
def _open_options() -> dict[str, str]:
    import av

    allowed = sorted(name for name in av.formats_available if name not in REFUSED_DEMUXERS and _is_demuxer(name))
    return {"protocol_whitelist": "file", "format_whitelist": ",".join(allowed)}


def _is_demuxer(name: str) -> bool:
    import av

    try:
        return av.ContainerFormat(name, "r") is not None
    except Exception:  # noqa: BLE001 - a muxer only (or a name PyAV cannot describe)
        return False


class _Descriptor(ctypes.Structure):
    """The head of libavcodec's ``AVCodecDescriptor``, unchanged since FFmpeg 1.0 (``mime_types`` since 2.3)."""

    _fields_ = [("id", ctypes.c_int), ("type", ctypes.c_int), ("name", ctypes.c_char_p), ("long_name", ctypes.c_char_p),
                ("props", ctypes.c_int), ("mime_types", ctypes.POINTER(ctypes.c_char_p))]


@functools.lru_cache(maxsize=1)
def _libavcodec() -> Any:
    """The libavcodec PyAV loaded (ctypes), or None when it cannot be found."""
    import av

    folder = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
    for path in glob.glob(os.path.join(folder, "libavcodec*.so*")):
        try:
            lib = ctypes.CDLL(path)
            lib.avcodec_descriptor_get_by_name.restype = ctypes.POINTER(_Descriptor)
            lib.avcodec_descriptor_get_by_name.argtypes = [ctypes.c_char_p]
            lib.avcodec_descriptor_next.restype = ctypes.POINTER(_Descriptor)
            lib.avcodec_descriptor_next.argtypes = [ctypes.POINTER(_Descriptor)]
        except (OSError, AttributeError):
            continue
        return lib
    return None


def _descriptor_lookup() -> Any:
    """``avcodec_descriptor_get_by_name`` of the libavcodec PyAV loaded, or None when it cannot be found."""
    lib = _libavcodec()
    return lib.avcodec_descriptor_get_by_name if lib is not None else None


@functools.lru_cache(maxsize=1)
def _codecs_by_mime() -> dict[str, str]:
    """{MIME type: codec name} from libavcodec's descriptors: how ffprobe names an attachment's codec (``ttf``), which
    PyAV does not expose (an attachment stream has no codec context)."""
    lib, out = _libavcodec(), dict[str, str]()
    if lib is None:
        return out
    found = lib.avcodec_descriptor_next(None)
    while found:
        mimes = found.contents.mime_types
        for i in range(16 if mimes else 0):
            if not mimes[i]:
                break
            out.setdefault(mimes[i].decode("ascii", "replace"), found.contents.name.decode("ascii", "replace"))
        found = lib.avcodec_descriptor_next(found)
    return out


@functools.lru_cache(maxsize=256)
def codec_long_name(name: str, fallback: str) -> str:
    """The codec descriptor's long name, which ffprobe prints (a decoder's own may differ: "GIF" vs "CompuServe GIF")."""
    lookup = _descriptor_lookup()
    found = lookup(name.encode()) if lookup is not None else None
    if found and found.contents.long_name:
        return found.contents.long_name.decode("utf-8", "replace")
    return fallback


def _rate(value: Fraction | None) -> str:
    return f"{value.numerator}/{value.denominator}" if value else "0/0"


def _time(value: int | None, base: Fraction | None) -> str | None:
    """A timestamp as ffprobe prints it: seconds with six decimals."""
    if value is None or base is None:
        return None
    return f"{float(value * base):.6f}"


def _format(container: Any, size: int) -> dict[str, Any]:
    fmt: dict[str, Any] = {"format_name": container.format.name, "format_long_name": container.format.long_name}
    if container.start_time is not None:
        fmt["start_time"] = f"{container.start_time / 1e6:.6f}"
    if container.duration is not None:
        fmt["duration"] = f"{container.duration / 1e6:.6f}"
    fmt["size"] = str(size)
    if container.bit_rate:
        fmt["bit_rate"] = str(container.bit_rate)
    if container.metadata:
        fmt["tags"] = {safe_text(k): safe_text(v) for k, v in container.metadata.items()}  # undecodable bytes as \xa9
    return fmt


def _not_utf8(container: Any) -> bool:
    """Whether the container's tags hold bytes that are not UTF-8 (a RealMedia copyright sign in Latin-1): read with
    ``surrogateescape``, they are kept as escapes instead of failing the file."""
    return any(not str(t).isascii() and safe_text(t) != t for kv in container.metadata.items() for t in kv)


#: frames per second beyond which an average rate is a demuxer's tick rate, not the video's
MAX_PLAUSIBLE_FPS = 1000


def average_rate(stream: Any) -> Fraction | None:
    """The stream's average frame rate; FFmpeg 8's DV demuxer reports its 1/60000 s tick as one (60000 fps, where
    ffprobe 5.1 said 25): such a rate is replaced by libavformat's own guess."""
    rate = stream.average_rate
    if rate and rate > MAX_PLAUSIBLE_FPS and stream.guessed_rate:
        return stream.guessed_rate
    return rate


def _disposition(stream: Any) -> dict[str, int]:
    """ffprobe's ``disposition``: each flag libavformat sets on the stream (``attached_pic``: a cover picture), 0 or 1."""
    import av

    flags = int(getattr(stream, "disposition", 0) or 0)
    return {name: int(bool(flags & int(flag))) for name, flag in av.stream.Disposition.__members__.items()}


def _stream(stream: Any) -> dict[str, Any]:
    """One stream's fields, named and printed as ffprobe's ``-show_streams`` does."""
    cc = stream.codec_context
    out: dict[str, Any] = {"index": stream.index, "codec_type": stream.type, "disposition": _disposition(stream)}
    if cc is None:  # a data track (timecode, hint), an attachment, a codec libavformat does not know: ffprobe's JSON names none
        mimetype = getattr(stream, "mimetype", None)  # an attachment's codec is named by its MIME type
        name = _codecs_by_mime().get(mimetype or "")
        if stream.type == "data" and getattr(stream, "name", "none") not in ("none", None):
            name = stream.name  # a data track's codec as libavformat names it (an M4B's chapter track: bin_data)
        if name is not None:
            out["codec_name"] = name
        if stream.type == "attachment":
            out["tags"] = {k: safe_text(v) for k, v in (("filename", getattr(stream, "name", None)), ("mimetype", mimetype)) if v}
        duration = _time(stream.duration, stream.time_base)
        if duration is not None:
            out["duration"] = duration
        return out
    codec = getattr(cc, "codec", None)
    if codec is not None:
        out["codec_name"] = codec.canonical_name
        out["codec_long_name"] = codec_long_name(codec.canonical_name, codec.long_name)
    if cc.profile:
        out["profile"] = cc.profile
    if stream.type == "video":
        out["width"], out["height"] = cc.width, cc.height
        if cc.pix_fmt:
            out["pix_fmt"] = cc.pix_fmt
        out["r_frame_rate"], out["avg_frame_rate"] = _rate(stream.base_rate), _rate(average_rate(stream))
    else:
        out["r_frame_rate"] = out["avg_frame_rate"] = "0/0"
    if stream.type == "audio":
        out["sample_rate"] = str(cc.sample_rate)
        out["channels"] = cc.channels
        layout = getattr(cc.layout, "name", "")
        if layout and not layout.endswith(" channels"):  # an unspecified order: ffprobe prints none
            out["channel_layout"] = layout
    duration = _time(stream.duration, stream.time_base)
    if duration is not None:
        out["duration"] = duration
    if cc.bit_rate:
        out["bit_rate"] = str(cc.bit_rate)
    if stream.frames:
        out["nb_frames"] = str(stream.frames)
    return out


def failures() -> tuple[type[BaseException], ...]:
    """What a failure of libavformat raises through PyAV: ``av.FFmpegError`` (its ``EOFError`` and
    ``PatchWelcomeError`` are no ``OSError``: a text file named ``.ts`` ended libav's look with the first), and the
    OS, value and runtime errors PyAV raises itself."""
    import av

    return (OSError, ValueError, RuntimeError, av.FFmpegError)


@contextlib.contextmanager
def opened(path: str, probesize: int | None = None) -> Iterator[Any]:
    """The container, read-only: a local file through libavformat's ``file`` protocol only, a remote object through
    its fsspec file (ranged reads, counted like every other reader's)."""
    import av

    from ..storage.urls import is_url

    options = dict(_open_options())
    if probesize:
        options["probesize"] = str(probesize)
    if not is_url(path):
        from ..core.pin import opened

        with av.open("file:" + opened(path), "r", options=options, metadata_errors="surrogateescape") as container:
            yield container
        return
    from ..storage.remote import open_remote

    with open_remote(path) as source, av.open(source, "r", options=options, metadata_errors="surrogateescape") as container:
        yield container


def file_size(path: str) -> int:
    from ..storage.urls import is_url

    if is_url(path):
        from ..storage.remote import known_size

        return known_size(path)
    return os.path.getsize(path)


def probe(path: str, packets: bool = False, probesize: int | None = None) -> dict[str, Any]:
    """ffprobe's ``-show_format -show_streams`` (and video packets as ``index,pts_time,dts_time,duration_time,flags`` rows).

    Raises ``av.FFmpegError`` (an ``OSError`` or ``ValueError``) when libavformat cannot open it.
    """
    import av
    import av.logging

    with _LOG_LEVEL, av.logging.Capture(local=True) as logs:  # this thread's messages only: never another file's
        previous = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        try:
            with opened(path, probesize) as container:
                data: dict[str, Any] = {"format": _format(container, file_size(path)),
                                        "streams": [_stream(s) for s in container.streams]}
                odd_tags = _not_utf8(container)
                video = [s for s in container.streams if s.type == "video"]
                if packets:
                    data["packet_rows"] = list(packet_rows(container, video)) if video else []
        finally:
            av.logging.set_level(previous)
    data["messages"] = [str(message).strip() for level, _name, message in logs if level <= av.logging.ERROR and str(message).strip()]
    if odd_tags:
        data["messages"].append("the container's tags are not UTF-8: their undecodable bytes are kept as \\x escapes")
    without = [st["index"] for st in data["streams"] if "codec_name" not in st]
    if without:
        data["messages"].append(f"stream{'s' if len(without) > 1 else ''} {', '.join(map(str, without))}: no codec libavformat "
                                "knows (a data track, an unknown attachment): listed without codec fields")
    return data


def packet_rows(container: Any, video: list[Any]) -> Iterator[str]:
    """Video packets as they are demuxed (never decoded), as ffprobe's packet CSV rows: a caller that stops early
    reads no further."""
    for packet in container.demux(*video):
        if packet.size == 0 and packet.pts is None and packet.dts is None:
            continue  # the empty packet PyAV yields at the end of each stream
        base = packet.time_base or packet.stream.time_base
        pts, dts = _time(packet.pts, base) or "N/A", _time(packet.dts, base) or "N/A"
        duration = _time(packet.duration, base) if packet.duration else None
        yield f"{packet.stream.index},{pts},{dts},{duration or 'N/A'},{'K' if packet.is_keyframe else '_'}"
