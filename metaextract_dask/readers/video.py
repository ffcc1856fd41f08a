"""Video and audio containers through ffprobe.

Layout: chunk 0 is the container header (METADATA: ``-show_format
-show_streams``); the rest are FRAME chunks, each a time interval read with
``-read_intervals``, so sampled strategies read only their intervals and full
scans count every packet (frame) and keyframe of each video stream. A packet
belongs to the interval its presentation time falls in, so intervals never
count a frame twice.

ffprobe is run directly, not through ffmpeg-python's ``probe()``, because
every call needs a timeout and must be killed, children included, when it
expires. Paths are passed as ``file:PATH`` so no name is taken for a protocol.

Files are asked in this process through PyAV when it is installed
(``libav.py``: the same libavformat, without ffprobe's 60 to 80 ms start per
file; remote objects through their fsspec file); the setting
``metaextract.video.prober`` (``auto``, ``pyav``, ``ffprobe``) chooses. With
ffprobe, remote objects are served to it on the loopback server.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..core.errors import CorruptFileError, ExtractionTimeout
from ..core.model import ChunkSpec, ChunkType, FileInfo, TimeInterval
from ..core.settings import StreamingConfig
from .base import State, StreamChunkReader
from .detect import VIDEO_FORMATS

#: seconds read past an interval's end, so B-frames reordered across it are seen
REORDER_MARGIN = 1.0

STREAM_FIELDS = ("index", "codec_type", "codec_name", "codec_long_name", "profile", "width", "height", "pix_fmt",
                 "avg_frame_rate", "r_frame_rate", "sample_rate", "channels", "channel_layout", "nb_frames",
                 "duration", "bit_rate")

#: stream fields that stay text although they may look like numbers (a "5.1" channel layout, a "0" profile)
TEXT_FIELDS = frozenset({"codec_type", "codec_name", "codec_long_name", "profile", "pix_fmt", "channel_layout", "avg_frame_rate", "r_frame_rate"})


def ffprobe_path() -> str | None:
    return shutil.which("ffprobe")


def prober_setting() -> str:
    """``metaextract.video.prober``: auto (PyAV when installed, else ffprobe), pyav or ffprobe."""
    from ..core.settings import config_get

    value = str(config_get("video.prober", "auto") or "auto").lower()
    if value not in ("auto", "pyav", "ffprobe"):
        raise ValueError(f"metaextract.video.prober must be auto, pyav or ffprobe, not {value!r}")
    return value


def in_process() -> bool:
    """Whether media are probed in this process (PyAV) rather than by starting ffprobe."""
    from . import libav

    choice = prober_setting()
    return choice != "ffprobe" and (choice == "pyav" or libav.available())


def pyav_probe(path: str, packets: bool = False, probesize: int | None = None) -> dict[str, Any]:
    """``libav.probe``, its failures as this file's ``CorruptFileError``."""
    from . import libav

    try:
        data = libav.probe(path, packets, probesize)
    except libav.failures() as exc:
        raise libav_error(path, exc) from exc
    data["prober"] = libav.prober_name()
    return data


def libav_error(path: str, exc: BaseException) -> CorruptFileError:
    """What libavformat said about a file it cannot read, in the words ffprobe would use."""
    why = str(getattr(exc, "strerror", None) or exc).replace("file:" + path, "").strip(": ")
    if getattr(exc, "errno", None) == errno.EINVAL:  # what libavformat answers when the format it found is not allowed
        why += " (or it takes a format refused here: one that reads other files than the one named, such as an image sequence)"
    return CorruptFileError(path, f"libavformat (ffprobe's library, through PyAV) cannot read it: {why}")


def run_ffprobe(path: str, args: list[str], timeout: float, messages: list[str] | None = None) -> str:
    """Run ffprobe on one file; kill its whole process group on timeout.

    ``messages`` collects what ffprobe printed at error level although it
    succeeded (such as "File ended prematurely").
    """
    exe = ffprobe_path()
    if exe is None:
        raise CorruptFileError(path, "ffprobe is not installed (install ffmpeg)")
    with media_input(path) as (source, options, env):
        return run_bounded([exe, "-v", "error", "-hide_banner", *options, "-format_whitelist", allowed_demuxers(exe), *args, "-i", source],
                           path, timeout, messages, env).decode("utf-8", "replace")


@functools.lru_cache(maxsize=4)
def allowed_demuxers(exe: str) -> str:
    """The demuxers an ffmpeg tool may use here: all it has but those that read anything but the file named
    (``libav.REFUSED_DEMUXERS``), so a crafted file or name cannot make it read outside the scan."""
    from .libav import REFUSED_DEMUXERS

    listed = subprocess.run([exe, "-v", "quiet", "-hide_banner", "-demuxers"], capture_output=True, text=True, timeout=60).stdout
    names: set[str] = set()
    for line in listed.splitlines():
        parts = line.split()
        if len(parts) >= 2 and set(parts[0]) <= set("DE") and "D" in parts[0]:
            names.update(n for n in parts[1].split(",") if n)
    return ",".join(sorted(names - REFUSED_DEMUXERS))


@contextlib.contextmanager
def media_input(path: str) -> Iterator[tuple[str, list[str], dict[str, str] | None]]:
    """(input, input options, environment or None) for an ffmpeg tool: ``file:PATH``, or a remote object on a loopback server.

    A local file may be read through the ``file`` protocol only; a remote
    one through ``http`` and ``tcp`` only, from the loopback server
    (``storage.loopback``), which answers from the object's fsspec file, so
    credentials stay in this process and every fetch is counted. The
    server's token reaches the tool in its environment (``tool_access``),
    never on its command line. ffprobe reads HTTP with byte ranges (an
    MP4's index at its end costs one request).
    """
    from ..storage.urls import is_url

    if not is_url(path):
        from ..core.pin import opened

        yield "file:" + opened(path), ["-protocol_whitelist", "file"], None
        return
    from ..storage.loopback import served, tool_access
    from ..storage.remote import known_size

    with served(path, known_size(path), block_size=1024 * 1024, cache_type="readahead") as (url, _count):  # ffprobe reads on
        source, env = tool_access(url)
        yield source, ["-protocol_whitelist", "http,tcp"], env


def run_bounded(cmd: list[str], path: str, timeout: float, messages: list[str] | None = None,
                env: dict[str, str] | None = None) -> bytes:
    """Run an ffmpeg tool on one file and return its output; kill its process group on timeout."""
    tool = os.path.basename(cmd[0])
    from .. import sandbox

    parent = os.getpid()
    # in the (single-threaded) sandbox child, ffprobe dies with it; elsewhere preexec_fn is unsafe beside threads
    tie = (lambda: sandbox.die_with_parent(parent)) if sandbox.IN_SANDBOX else None
    if threading.active_count() > 1:  # a loopback server's thread: preexec_fn is unsafe beside threads
        tie = None
    from ..core.pin import inherited

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=tie, env=env, pass_fds=inherited(path))  # the pinned file's descriptor, which the input names
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ExtractionTimeout(path, f"{tool} did not finish within {timeout:g} s and was killed") from None
    if proc.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1].replace("file:" + path, "").strip(": ") if lines else f"exit status {proc.returncode}"
        why = re.sub(r"http://(127\.0\.0\.1:\d+|metaextract\.invalid)/\S+", "", why).strip(": ")  # a remote file's loopback URL says nothing to the user
        raise CorruptFileError(path, f"{tool} cannot read it: {why}")
    if messages is not None:
        for line in err.decode("utf-8", "replace").splitlines():
            line = line.split("] ", 1)[-1].strip()
            if line and line not in messages:
                messages.append(line)
    return out


#: poster frames: at most this wide (smaller videos keep their width), taken this far into the video
THUMBNAIL_WIDTH = 160
THUMBNAIL_AT = 0.1
#: a PNG larger than this is not a thumbnail: dropped with a warning
THUMBNAIL_MAX_BYTES = 1 << 20


def poster_frame(path: str, at: float, timeout: float) -> bytes:
    """One frame at ``at`` seconds as a PNG at most ``THUMBNAIL_WIDTH`` wide, made by ffmpeg.

    The command is built with ffmpeg-python and run by ``run_bounded`` (a
    timeout kills ffmpeg's whole process group); the input is ``file:PATH``.
    """
    import ffmpeg

    exe = shutil.which("ffmpeg")
    if exe is None:
        raise CorruptFileError(path, "ffmpeg is not installed")
    seek = {"ss": f"{at:.3f}"} if at > 0 else {}  # some demuxers (SWF) cannot seek at all, not even to 0
    with media_input(path) as (source, options, env):
        seek["protocol_whitelist"] = options[1]
        seek["format_whitelist"] = allowed_demuxers(exe)
        stream = (ffmpeg.input(source, **seek)
                  .filter("scale", f"min({THUMBNAIL_WIDTH},iw)", -2)
                  .output("pipe:", vframes=1, format="image2", vcodec="png", an=None, sn=None))
        png = run_bounded(ffmpeg.compile(stream, cmd=[exe, "-v", "error", "-hide_banner", "-nostdin"]), path, timeout, env=env)
    if not png.startswith(b"\x89PNG\r\n\x1a\n") or len(png) < 24:
        raise CorruptFileError(path, "ffmpeg made no frame (the video stream may hold none at that time)")
    return png


def thumbnail(path: str, record: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The record's ``thumbnail``: ``png`` bytes with their time and size, or why there is none (never raises)."""
    if not any(s.get("codec_type") == "video" and s.get("width") for s in record.get("streams", [])):
        return {"none": "no video stream"}
    duration = record.get("duration")
    at = THUMBNAIL_AT * duration if isinstance(duration, (int, float)) and duration > 0 else 0.0
    try:
        try:
            png = poster_frame(path, at, timeout)
        except CorruptFileError:
            if at <= 0:
                raise
            at = 0.0  # no frame decodes there (a seek into B-frames of MPEG-TS): the first frame
            png = poster_frame(path, at, timeout)
        if len(png) > THUMBNAIL_MAX_BYTES:
            raise CorruptFileError(path, f"its poster frame is {len(png)} bytes, more than a thumbnail")
    except (CorruptFileError, ExtractionTimeout, OSError) as exc:
        return {"error": str(getattr(exc, "message", exc))}
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return {"png": png, "time": round(at, 3), "width": width, "height": height}


def probe_media(path: str, timeout: float) -> str | None:
    """ffprobe's format name when it finds audio or video streams in the file, else None (bounded); a
    ``CorruptFileError`` saying why when libavformat cannot open it at all."""
    if in_process():
        data = pyav_probe(path, probesize=5000000)
        return str(data["format"].get("format_name") or "media") if data["streams"] else None
    try:
        text = run_ffprobe(path, ["-probesize", "5000000", "-show_entries", "format=format_name:stream=codec_type", "-of", "json"], timeout)
        data = json.loads(text or "{}")
    except (ExtractionTimeout, json.JSONDecodeError):  # a CorruptFileError (ffprobe failed) says why, as above
        return None
    if not data.get("streams"):
        return None
    return str((data.get("format") or {}).get("format_name") or "media")


@functools.lru_cache(maxsize=256)
def probe_container(path: str, size: int, mtime: float, timeout: float) -> dict[str, Any]:
    """ffprobe's format and streams (cached per file version in this process)."""
    if in_process():
        data = pyav_probe(path)
    else:
        messages: list[str] = []
        text = run_ffprobe(path, ["-show_format", "-show_streams", "-of", "json"], timeout, messages)
        data = json.loads(text or "{}")
        data["messages"] = messages
    if not data.get("streams"):
        raise CorruptFileError(path, "ffprobe found no audio or video stream in it")
    return data


def file_version(path: str) -> tuple[int, float]:
    """(size, mtime) keying the container cache; a remote object's size (mtime 0: its read ends with an ETag check)."""
    from ..storage.urls import is_url

    if is_url(path):
        from ..storage.remote import known_size

        return known_size(path), 0.0
    st = os.stat(path)
    return st.st_size, st.st_mtime


def _num(value: Any) -> Any:
    """ffprobe prints numbers as strings: make them numbers where they are."""
    if isinstance(value, str):
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
    return value


def _ts(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


#: the packet fields read of each video packet (ffprobe's CSV prints them in this order, PyAV's rows are made so)
PACKET_FIELDS = "stream_index,pts_time,dts_time,duration_time,flags"


def count_packets(text: str, intervals: list[tuple[float | None, float | None]]) -> list[dict[str, list[float]]]:
    """Frames, keyframes, the last packet's time and where the packets end (that time and the packet's own duration:
    a GIF's or a slideshow's last frame lasts), per video stream, per interval, from packet CSV (``PACKET_FIELDS``)."""
    counts: list[dict[str, list[float]]] = [{} for _ in intervals]
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) < 5:
            continue
        index, pts, dts, lasts, flags = fields[0], _ts(fields[1]), _ts(fields[2]), _ts(fields[3]), fields[4]
        t = pts if pts is not None else dts
        for slot, (lo, hi) in zip(counts, intervals):
            if (lo is None or (t is not None and t >= lo)) and (hi is None or (t is not None and t < hi)):
                c = slot.setdefault(index, [0, 0, 0.0, 0.0])
                c[0] += 1
                c[1] += "K" in flags
                c[2] = max(c[2], t or 0.0)
                c[3] = max(c[3], round((t or 0.0) + (lasts or 0.0), 6))
                break
    return counts


def scan_intervals(path: str, intervals: list[tuple[float | None, float | None]], timeout: float) -> list[dict[str, list[float]]]:
    """One ffprobe pass over the span of ``intervals`` (None: open end)."""
    if in_process():
        return count_packets("\n".join(pyav_span(path, intervals)), intervals)
    lo = min((a for a, _ in intervals), default=None, key=lambda x: -1e300 if x is None else x)
    his = [b for _, b in intervals]
    hi = None if any(b is None for b in his) else max(b for b in his if b is not None)
    spec = f"{'' if lo is None else f'{lo:.6f}'}%{'' if hi is None else f'{hi + REORDER_MARGIN:.6f}'}"
    args = ["-select_streams", "v", "-show_entries", f"packet={PACKET_FIELDS}", "-of", "csv=p=0"]
    if spec != "%":
        args = ["-read_intervals", spec, *args]
    return count_packets(run_ffprobe(path, args, timeout), intervals)


def pyav_span(path: str, intervals: list[tuple[float | None, float | None]]) -> list[str]:
    """Video packet rows over the span of ``intervals``, as ``-read_intervals`` reads it: from a seek to its start
    (the keyframe at or before it) to the first packet past its end and the reorder margin."""
    from . import libav

    lo = None if any(a is None for a, _ in intervals) else min(a for a, _ in intervals if a is not None)
    hi = None if any(b is None for _, b in intervals) else max(b for _, b in intervals if b is not None)
    rows: list[str] = []
    try:
        with libav.opened(path) as container:
            video = [s for s in container.streams if s.type == "video"]
            if video and lo is not None:
                container.seek(int(lo * 1_000_000), backward=True, any_frame=False)
            for row in libav.packet_rows(container, video) if video else ():
                _, pts, dts, _, _ = row.split(",")
                when = _ts(pts)
                when = _ts(dts) if when is None else when
                if hi is not None and when is not None and when > hi + REORDER_MARGIN:
                    break  # nothing past the span is read
                rows.append(row)
    except libav.failures() as exc:
        raise libav_error(path, exc) from exc
    return rows


def _interval(spec: ChunkSpec) -> tuple[float | None, float | None]:
    key = spec.key
    if not isinstance(key, TimeInterval):
        raise TypeError(f"chunk {spec.chunk_id} of {spec.path} is a FRAME chunk without a time interval")
    return key.start, key.end


class VideoChunkReader(StreamChunkReader):
    """Video containers (seed name): format, streams, counted frames and keyframes."""

    name = "video"
    version = "2"  # 2: PyAV answers (and says so in ``prober``); channel layouts and profiles stay text
    extras = frozenset({"thumbnail"})
    columns = (("container", "string"), ("media_duration", "float64"), ("codec", "string"), ("width", "int32"),
               ("height", "int32"), ("fps", "float64"), ("audio_codec", "string"), ("n_streams", "int32"), ("frames", "int64"))

    def catalog_row(self, record: dict[str, Any]) -> dict[str, Any]:
        streams = record.get("streams") or []
        video: dict[str, Any] = next((s for s in streams if s.get("codec_type") == "video" and not s.get("attached_pic")), {})
        audio: dict[str, Any] = next((s for s in streams if s.get("codec_type") == "audio"), {})
        counts = record.get("frame_counts") or {}
        duration = record.get("duration")
        return {"container": record.get("container"), "media_duration": duration if isinstance(duration, (int, float)) else None,
                "codec": video.get("codec_name"), "width": video.get("width"), "height": video.get("height"),
                "fps": (_rate(video.get("avg_frame_rate")) or None) if video else None, "audio_codec": audio.get("codec_name"),
                "n_streams": len(streams), "frames": sum(v.get("frames", 0) for v in counts.values()) if counts else None}
    formats = VIDEO_FORMATS
    extensions = {
        ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi", ".flv": "flv", ".ts": "mpegts",
        ".mpg": "mpegps", ".mpeg": "mpegps", ".ogv": "ogg", ".wmv": "asf", ".wma": "asf", ".asf": "asf", ".rm": "realmedia",
        ".rmvb": "realmedia", ".swf": "swf", ".gif": "gif", ".m2v": "mpegvideo", ".m1v": "mpegvideo", ".3gp": "3gp", ".3g2": "3g2",
        ".mxf": "mxf", ".dv": "dv", ".y4m": "y4m", ".mp3": "mp3", ".flac": "flac", ".wav": "wav", ".aiff": "aiff", ".au": "au",
        ".amr": "amr", ".ivf": "ivf",
    }
    #: media types by libavformat's container name (the format name detection gives is coarser); others from the file's name
    containers = {"mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "matroska,webm": "video/webm", "ogg": "video/ogg", "avi": "video/x-msvideo",
                  "mpeg": "video/mpeg", "mpegts": "video/mp2t", "flv": "video/x-flv", "gif": "image/gif"}

    def media_type(self, fmt: str, section: dict[str, Any]) -> str | None:
        return self.containers.get(str(section.get("container") or ""))

    @property
    def native(self) -> bool:  # type: ignore[override]
        """libavformat in this process (PyAV) parses in the sandbox, like libhdf5; ffprobe is a process of its own."""
        return in_process()

    def unavailable(self) -> str | None:
        if in_process() or ffprobe_path():
            return None
        return "ffprobe was not found on PATH: install ffmpeg (Debian: apt-get install ffmpeg), or PyAV (pip install av)"

    def layout(self, info: FileInfo, chunk_size: int) -> Sequence[ChunkSpec]:
        n = max(1, -(-info.size // chunk_size))
        duration = start = 0.0
        if n > 1:  # intervals need the duration; one interval (the whole file) does not
            fmt = probe_container(info.path, *file_version(info.path), 60.0).get("format", {})
            duration = _ts(str(fmt.get("duration", ""))) or 0.0
            start = _ts(str(fmt.get("start_time", ""))) or 0.0
            n = n if duration > 0 else 1
        specs = [ChunkSpec(info.path, 0, ChunkType.METADATA, 0, min(info.size, 4096), "container")]
        for i in range(n):
            lo = None if i == 0 else start + duration * i / n
            hi = None if i == n - 1 else start + duration * (i + 1) / n
            offset = info.size * i // n
            specs.append(ChunkSpec(info.path, i + 1, ChunkType.FRAME, offset, info.size * (i + 1) // n - offset, TimeInterval(lo, hi)))
        return specs

    def summarize(self, spec: ChunkSpec, config: StreamingConfig) -> State:
        return self.summarize_all([spec], config)[0]

    def summarize_all(self, specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        """All FRAME chunks in one ffprobe pass (one process start, not one per chunk)."""
        frames = [s for s in specs if s.chunk_type is ChunkType.FRAME]
        if len(specs) == 2 and len(frames) == 1 and frames[0].key == TimeInterval(None, None):
            return self._whole_file(specs, config)  # one ffprobe run for container, streams and packets
        states: list[State] = []
        intervals = {s.chunk_id: _interval(s) for s in frames}
        counts = iter(scan_intervals(specs[0].path, list(intervals.values()), config.timeout) if frames else [])
        for spec in specs:
            if spec.chunk_type is ChunkType.METADATA:
                size, mtime = file_version(spec.path)
                states.append({"container": probe_container(spec.path, size, mtime, config.timeout), "frames": {}, "seconds": 0.0})
            else:
                states.append({"container": None, "frames": next(counts), "intervals": [intervals[spec.chunk_id]]})
        return states

    @staticmethod
    def _whole_file(specs: Sequence[ChunkSpec], config: StreamingConfig) -> list[State]:
        path = specs[0].path
        if in_process():
            data = pyav_probe(path, packets=True)
            rows = data.pop("packet_rows")
        else:
            messages: list[str] = []
            text = run_ffprobe(path, ["-show_format", "-show_streams", "-show_entries", f"packet={PACKET_FIELDS}", "-of", "json"],
                               config.timeout, messages)
            data = json.loads(text or "{}")
            video = {str(s["index"]) for s in data.get("streams", []) if s.get("codec_type") == "video"}
            rows = [",".join(str(p.get(k, "" if k == "flags" else "N/A")) for k in PACKET_FIELDS.split(","))
                    for p in data.pop("packets", []) if str(p.get("stream_index")) in video]
            data["messages"] = messages
        if not data.get("streams"):
            raise CorruptFileError(path, "ffprobe found no audio or video stream in it")
        meta = specs[0] if specs[0].chunk_type is ChunkType.METADATA else specs[1]
        frame = specs[1] if meta is specs[0] else specs[0]
        counts = count_packets("\n".join(rows), [(None, None)])[0]
        states: dict[ChunkSpec, State] = {meta: {"container": data, "frames": {}}, frame: {"container": None, "frames": counts, "intervals": [(None, None)]}}
        return [states[s] for s in specs]

    def merge(self, a: State, b: State) -> State:
        frames = {k: list(v) for k, v in a["frames"].items()}
        for k, (n, key, last, end) in b["frames"].items():
            c = frames.setdefault(k, [0, 0, 0.0, 0.0])
            c[0] += n
            c[1] += key
            c[2] = max(c[2], last)
            c[3] = max(c[3], end)
        return {"container": a["container"] or b["container"], "frames": frames, "intervals": a.get("intervals", []) + b.get("intervals", [])}

    def public_summary(self, state: State) -> dict[str, Any]:
        return {"frames": {k: v[0] for k, v in state["frames"].items()}, "keyframes": {k: v[1] for k, v in state["frames"].items()}}

    def finalize(self, state: State, info: FileInfo, config: StreamingConfig) -> dict[str, Any]:
        data = state["container"]
        fmt = data.get("format", {})
        streams = [{k: s[k] if k in TEXT_FIELDS else _num(s[k]) for k in STREAM_FIELDS if k in s} for s in data.get("streams", [])]
        for stream, given in zip(streams, data.get("streams", [])):
            if (given.get("disposition") or {}).get("attached_pic"):  # a cover picture: one frame, not a video track
                stream["attached_pic"] = 1
        record = {
            "container": fmt.get("format_name"),
            "container_long_name": fmt.get("format_long_name"),
            "duration": _num(fmt.get("duration")),
            "start_time": _num(fmt.get("start_time")),
            "bit_rate": _num(fmt.get("bit_rate")),
            "size": _num(fmt.get("size", info.size)),
            "streams": streams,
            "tags": fmt.get("tags", {}),
            "prober": data.get("prober", "ffprobe"),
        }
        intervals = state.get("intervals", [])
        full = None in (i[0] for i in intervals) and None in (i[1] for i in intervals) and _contiguous(intervals)
        record["frame_counts"] = {
            k: {"frames": n, "keyframes": key, "exact": full, "last_packet_time": last, "packets_end": end}
            for k, (n, key, last, end) in sorted(state["frames"].items(), key=lambda kv: int(kv[0]))
        }
        said = "ffprobe" if record["prober"] == "ffprobe" else "libavformat"
        record["warnings"] = [f"{said}: {m}" for m in data.get("messages", [])] + _truncation_warnings(record, full)
        if config.thumbnails:
            record["thumbnail"] = thumbnail(info.path, record, config.timeout)
            if "error" in record["thumbnail"]:
                record["warnings"].append(f"thumbnail: {record['thumbnail']['error']}")
        return record


#: codecs whose every frame carries its own delay (an animated GIF, PNG or WebP): a "frame rate" libavformat gives them
#: is its clock's tick (a GIF's 1/100 s), not a rate at which their frames come
PER_FRAME_DELAY = frozenset({"gif", "apng", "webp"})


def _truncation_warnings(record: dict[str, Any], full: bool) -> list[str]:
    """Streamable containers (Matroska, MPEG-TS) stay readable when cut short: say so. Frames are counted against the
    stream's frame rate only where frames come at one (not ``PER_FRAME_DELAY`` codecs)."""
    duration, start = record.get("duration"), record.get("start_time") or 0.0
    if not full or not isinstance(duration, (int, float)) or duration <= 0:
        return []
    warnings = []
    for stream in record["streams"]:
        if stream.get("codec_type") != "video" or stream.get("attached_pic"):
            continue
        counts = record["frame_counts"].get(str(stream["index"]), {})
        covered = max(0.0, counts.get("packets_end", start) - start)
        fps = _rate(stream.get("avg_frame_rate")) if stream.get("codec_name") not in PER_FRAME_DELAY else None
        expected = duration * fps if fps else 0
        frames = counts.get("frames", 0)
        if covered < duration - max(0.25, 0.1 * duration):
            warnings.append(f"video stream {stream['index']}: packets end at {covered:.2f} s of the declared {duration:.2f} s; "
                            "the file may be truncated")
        elif expected and frames < 0.98 * expected - 1:
            warnings.append(f"video stream {stream['index']}: {frames} frames where {duration:.2f} s at {fps:g} fps make about "
                            f"{expected:.0f}; the file may be truncated")
    return warnings


def _rate(text: Any) -> float:
    """An ffprobe rate such as '30000/1001' as a number (0 when unknown)."""
    try:
        num, den = str(text).split("/")
        return float(num) / float(den) if float(den) else 0.0
    except ValueError:
        return 0.0


def _contiguous(intervals: list[tuple[float | None, float | None]]) -> bool:
    """True when the intervals tile the whole timeline."""
    ordered = sorted(intervals, key=lambda iv: -1e300 if iv[0] is None else iv[0])
    if not ordered or ordered[0][0] is not None or ordered[-1][1] is not None:
        return False
    return all(a[1] == b[0] for a, b in zip(ordered, ordered[1:]))
