"""The video reader agrees with ffprobe's own answers on real files made by ffmpeg."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from metaextract_dask import StreamingConfig, extract_file

pytestmark = pytest.mark.integration

CLIPS = {
    # name: ffmpeg output options (video and audio codecs)
    "h264_aac.mp4": ["-c:v", "libx264", "-bf", "2", "-g", "15", "-c:a", "aac"],
    "mpeg4_pcm.mov": ["-c:v", "mpeg4", "-c:a", "pcm_s16le"],
    "h264_opus.mkv": ["-c:v", "libx264", "-g", "10", "-c:a", "libopus"],
    "vp9_vorbis.webm": ["-c:v", "libvpx-vp9", "-b:v", "200k", "-deadline", "realtime", "-c:a", "libvorbis"],
    "mpeg4_mp3.avi": ["-c:v", "mpeg4", "-c:a", "libmp3lame"],
    "flv_mp3.flv": ["-c:v", "flv", "-c:a", "libmp3lame", "-ar", "44100"],
    "mpeg2_mp2.ts": ["-c:v", "mpeg2video", "-c:a", "mp2"],
}


def make_clip(path, options, seconds=3, size="160x120"):
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={seconds}",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", *options, "-shortest", str(path)]
    subprocess.run(cmd, check=True, timeout=300)
    return str(path)


def ffprobe_json(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", path],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def counted(path):
    """Video packets and keyframes per stream, counted by ffprobe itself."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=stream_index,flags",
                          "-of", "csv=p=0", path], capture_output=True, text=True, check=True).stdout
    counts = {}
    for line in out.splitlines():
        if "," not in line:
            continue  # side-data lines that some containers (MPEG-TS) print between packets
        index, flags = line.split(",")[:2]
        c = counts.setdefault(index, [0, 0])
        c[0] += 1
        c[1] += "K" in flags
    return counts


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("video")
    return {name: make_clip(d / name, opts) for name, opts in CLIPS.items()}


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_agrees_with_ffprobe(clips, name):
    path = clips[name]
    record = extract_file(path, StreamingConfig(strategy="windowed", chunk_size=64 * 1024))[0]
    peer = ffprobe_json(path)
    assert record["reader"] == "video"
    assert record["video"]["container"] == peer["format"]["format_name"]
    assert record["video"]["duration"] == pytest.approx(float(peer["format"]["duration"]))
    assert record["size"] == int(peer["format"]["size"]) == os.path.getsize(path)
    assert len(record["video"]["streams"]) == len(peer["streams"]) == 2
    for ours, theirs in zip(record["video"]["streams"], peer["streams"]):
        assert ours["codec_type"] == theirs["codec_type"] and ours["codec_name"] == theirs["codec_name"]
        for key in ("width", "height", "channels"):
            assert ours.get(key) == theirs.get(key)
        if "sample_rate" in theirs:
            assert ours["sample_rate"] == int(theirs["sample_rate"])
        assert ours["avg_frame_rate"] == theirs["avg_frame_rate"]
    truth = counted(path)
    assert {k: [v["frames"], v["keyframes"]] for k, v in record["video"]["frame_counts"].items()} == truth
    assert all(v["exact"] for v in record["video"]["frame_counts"].values())
    assert record["video"]["warnings"] == []  # an intact file raises no truncation suspicion


def test_every_full_strategy_counts_every_frame_over_many_intervals(tmp_path):
    path = make_clip(tmp_path / "long.mp4", ["-c:v", "libx264", "-bf", "3", "-g", "40", "-b:v", "600k", "-c:a", "aac"], seconds=12, size="320x240")
    truth = counted(path)
    for strategy in ("sequential", "windowed", "adaptive"):
        record = extract_file(path, StreamingConfig(strategy=strategy, chunk_size=64 * 1024, streaming_threshold=1))[0]
        assert record["streaming"]["chunks_read"] > 8
        assert {k: [v["frames"], v["keyframes"]] for k, v in record["video"]["frame_counts"].items()} == truth
    sampled = extract_file(path, StreamingConfig(strategy="sample_based", chunk_size=64 * 1024, sample_count=2))[0]
    assert sampled["streaming"]["chunks_read"] == 2 + 2  # header (the container), footer (last interval), K=2 spaced
    frames = sampled["video"]["frame_counts"]["0"]
    assert frames["exact"] is False and 0 < frames["frames"] < truth["0"][0]


@pytest.mark.parametrize("prober", ["pyav", "ffprobe"])
def test_an_animation_whose_frames_last_unequally_is_not_called_truncated(tmp_path, prober):
    """An animated GIF as Pillow writes one, each frame with its own delay and the last held for 0.5 s: its packets end
    where its duration says (the last packet's time and its own duration, ``packets_end``), and a GIF's "frame rate"
    is its clock's tick, not a rate its frames come at. Before, it was "packets end at 1.66 s of the declared 2.16 s;
    the file may be truncated" (the last packet's start was taken for the end), and under libavformat 8 a GIF of many
    short frames was short of the frames 100 fps would make. Read whole and in intervals, by PyAV and by ffprobe."""
    import dask.config
    from PIL import Image

    path = str(tmp_path / "anim.gif")
    frames = [Image.new("RGB", (32, 32), (i * 40, 255 - i * 40, (i * 90) % 256)) for i in range(6)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[20, 700, 20, 900, 20, 500], loop=0)
    peer = json.loads(subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries", "format=duration:stream=nb_read_packets",
                                      "-of", "json", path], capture_output=True, text=True, check=True).stdout)
    with dask.config.set({"metaextract.video.prober": prober}):
        for config in (StreamingConfig(), StreamingConfig(strategy="windowed", chunk_size=1024, streaming_threshold=1)):
            record = extract_file(path, config)[0]["video"]
            assert record["duration"] == pytest.approx(float(peer["format"]["duration"])) == pytest.approx(2.16)
            assert record["warnings"] == [], record["warnings"]
            counts = record["frame_counts"]["0"]
            assert counts["frames"] == int(peer["streams"][0]["nb_read_packets"]) == 6
            assert (counts["last_packet_time"], counts["packets_end"]) == (pytest.approx(1.66), pytest.approx(2.16))


def test_without_ffprobe_falls_back_to_binary_and_says_why(clips, tmp_path):
    code = (
        "import json, sys; from metaextract_dask import extract_file\n"
        "r = extract_file(sys.argv[1])[0]\n"
        "print(json.dumps([r['reader'], r['format'], r['streaming']['note'], (r.get('video') or {}).get('prober')]))"
    )
    env = dict(os.environ, PATH=str(tmp_path), DASK_METAEXTRACT__VIDEO__PROBER="ffprobe")  # a PATH with no ffprobe on it
    out = subprocess.run([sys.executable, "-c", code, clips["h264_aac.mp4"]], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reader, fmt, note, _ = json.loads(out.stdout)
    assert reader == "binary" and fmt == "mp4" and "ffprobe was not found" in note
    # the default prober (PyAV, in the sandbox process) needs no ffprobe at all
    env.pop("DASK_METAEXTRACT__VIDEO__PROBER")
    out = subprocess.run([sys.executable, "-c", code, clips["h264_aac.mp4"]], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reader, fmt, note, prober = json.loads(out.stdout)
    assert reader == "video" and prober.startswith("libavformat ") and "PyAV" in prober


def test_corrupt_video_is_a_clear_error(clips, tmp_path):
    from metaextract_dask import CorruptFileError

    broken = tmp_path / "broken.mp4"
    data = open(clips["h264_aac.mp4"], "rb").read()
    broken.write_bytes(data[:64] + b"\x00" * 200)
    with pytest.raises(CorruptFileError) as info:
        extract_file(broken)
    assert str(broken) in str(info.value) and "ffprobe" in str(info.value)  # "libavformat (ffprobe's library, through PyAV)"


@pytest.mark.integration
def test_cover_pictures_and_data_tracks_are_what_ffprobe_says(tmp_path):
    """mutagen's test files (its source on PyPI): an M4A with two cover pictures (PNG and JPEG), a WAV and a FLAC with an
    ID3 or picture block, an M4B with a chapter track. A cover picture is a video stream to ffprobe, marked
    ``attached_pic`` in its disposition: one frame, not a video track that ends early (each such file warned "the file
    may be truncated") nor the row's video codec and size. The chapter track's codec is ``bin_data``, as ffprobe names
    it (it was left unnamed, with a warning that libavformat knew no codec)."""
    import public_corpus
    from peers import ffprobe

    import metaextract_dask as me

    archive = public_corpus.fetch_sdist("mutagen", "1.48.1", os.path.join(public_corpus.cache_dir(), "sdists"))
    found = public_corpus.sdist_data(archive, os.path.join(public_corpus.cache_dir(), "sdist-data"), (".m4a", ".m4b", ".wav", ".flac"))
    names = ("has-tags.m4a", "silence-2s-PCM-16000-08-ID3v23.wav", "silence-44-s.flac", "ep7.m4b")
    files = {name: next(p for p in found if p.endswith("__" + name)) for name in names}
    covers = 0
    for name, path in files.items():
        record = extract_file(path)[0]["video"]
        theirs = ffprobe(path)["streams"]
        assert [(s["codec_type"], s.get("codec_name"), bool(s.get("attached_pic"))) for s in record["streams"]] == \
               [(s["codec_type"], s.get("codec_name"), bool(s["disposition"]["attached_pic"])) for s in theirs], name
        assert not record["warnings"], (name, record["warnings"])
        covers += sum(bool(s.get("attached_pic")) for s in record["streams"])
    assert covers >= 4
    data = tmp_path / "data"
    data.mkdir()
    for name, path in files.items():
        shutil.copy(path, data / name)
    frame = me.scan(str(data), str(tmp_path / "cat"), progress=False)
    assert frame["success"].all() and frame["width"].isna().all() and frame["codec"].isna().all()
    assert set(frame["audio_codec"]) == {"aac", "pcm_u8", "flac"}


@pytest.mark.parametrize("prober", ["pyav", "ffprobe"])
def test_a_file_named_like_media_that_libavformat_cannot_open_is_read_as_bytes_with_the_reason(tmp_path, prober):
    """A TypeScript declaration file (``index.d.ts``, as bokeh ships hundreds) is named like an MPEG transport stream,
    and a big-endian WAVE_FORMAT_EXTENSIBLE file (scipy's test data has them) is one libavformat has not implemented:
    ffprobe cannot read either. PyAV raised ``av.error.EOFError`` and ``PatchWelcomeError``, which are no
    ``OSError``: the look meant to decide whether a file is media failed the whole file with a raw PyAV error. Each is
    now read as bytes (checksum, entropy), its description saying what libavformat said, whichever prober looked."""
    import struct

    import dask.config

    from metaextract_dask import extract_metadata

    typescript = tmp_path / "index.d.ts"
    typescript.write_text("".join(f'export {{ {name} }} from "./{module}";\n' for name, module in (  # bokeh 3's models/renderers
        ("ContourRenderer", "contour_renderer"), ("GlyphRenderer", "glyph_renderer"), ("GraphRenderer", "graph_renderer"),
        ("GuideRenderer", "guide_renderer"), ("Renderer", "renderer"), ("RendererGroup", "renderer_group")))
        + "//# sourceMappingURL=index.d.ts.map")
    fmt = struct.pack(">HHIIHHHHI", 0xFFFE, 1, 44100, 4 * 44100, 4, 32, 22, 32, 4) + bytes.fromhex("00000001000000108000 00aa00389b71".replace(" ", ""))
    data = struct.pack(">100f", *([0.25] * 100))
    body = b"WAVE" + b"fmt " + struct.pack(">I", len(fmt)) + fmt + b"data" + struct.pack(">I", len(data)) + data
    wav = tmp_path / "be-float.wav"
    wav.write_bytes(b"RIFX" + struct.pack(">I", len(body)) + body)
    for path, said in ((typescript, "End of file"), (wav, "patches welcome")):
        peer = subprocess.run(["ffprobe", "-v", "error", "-show_format", str(path)], capture_output=True, text=True)
        assert peer.returncode != 0 and said in peer.stderr, peer.stderr  # the peer cannot read it either
        with dask.config.set({"metaextract.video.prober": prober}):
            record = extract_metadata(str(path))
        assert record["reader"] == "binary" and record["checksum"]["value"], path
        described = record["binary"]["signature"]["description"]
        assert said in described and ("libavformat" in described or "ffprobe" in described), described
