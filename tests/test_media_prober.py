"""Local media are probed in-process (PyAV, libavformat) and must give ffprobe's answers.

Starting ffprobe costs 60 to 80 ms a file here, which made a scan of small
media files slower than a loop of ffprobe itself. The in-process prober asks
the same library; these tests hold it to the system's ffprobe on every media
file of the public corpus, and to the rule that nothing outside the scanned
file is read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import public_corpus
import pytest

pytestmark = pytest.mark.integration

#: what both probers must say alike (FFmpeg releases differ in estimated rates and stream bit rates: not compared)
FORMAT_KEYS = ("container", "container_long_name", "duration", "start_time", "bit_rate", "size", "tags")
STREAM_KEYS = ("index", "codec_type", "codec_name", "width", "height", "pix_fmt", "sample_rate", "channels", "channel_layout", "duration")

EXTRACT = (
    "import json, sys\n"
    "from metaextract_dask import extract_file\n"
    "out = {}\n"
    "for path in sys.argv[1:]:\n"
    "    r = extract_file(path)[0]\n"
    "    out[path] = [r['reader'], r.get('video')]\n"
    "print(json.dumps(out))\n"
)


def records(paths: list[str], prober: str) -> dict[str, list]:
    """Each file's (reader, video record), extracted in a fresh process with ``metaextract.video.prober`` set."""
    env = dict(os.environ, DASK_METAEXTRACT__VIDEO__PROBER=prober)
    done = subprocess.run([sys.executable, "-c", EXTRACT, *paths], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def media():
    folder = os.path.join(public_corpus.cache_dir(), "corpus-v1")
    return public_corpus.build(folder)["media"]


def test_pyav_gives_ffprobes_answers_on_every_public_media_file(media):
    ours, theirs = records(media, "pyav"), records(media, "ffprobe")
    problems = {}
    for path in media:
        (reader_a, a), (reader_b, b) = ours[path], theirs[path]
        found = []
        if reader_a != "video" or reader_b != "video":
            found.append(f"readers {reader_a} / {reader_b}")
        else:
            assert a["prober"].startswith("libavformat ") and b["prober"] == "ffprobe"
            found += [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in FORMAT_KEYS if a.get(k) != b.get(k)]
            if len(a["streams"]) != len(b["streams"]):
                found.append(f"{len(a['streams'])} streams vs {len(b['streams'])}")
            for sa, sb in zip(a["streams"], b["streams"]):
                found += [f"stream {sb['index']} {k}: {sa.get(k)!r} vs {sb.get(k)!r}" for k in STREAM_KEYS if sa.get(k) != sb.get(k)]
            counts = lambda rec: {k: (v["frames"], v["keyframes"], v["exact"]) for k, v in rec["frame_counts"].items()}  # noqa: E731
            if counts(a) != counts(b):
                found.append(f"frame counts {counts(a)} vs {counts(b)}")
            if bool(a["warnings"]) != bool(b["warnings"]):
                found.append(f"warnings {a['warnings']} vs {b['warnings']}")
        if found:
            problems[os.path.basename(path)] = found
    assert len(media) >= 40
    assert not problems, json.dumps(problems, indent=1)[:5000]


@pytest.mark.parametrize("prober", ["pyav", "ffprobe"])
def test_a_playlist_cannot_make_either_prober_read_outside_the_scan(tmp_path, media, prober, monkeypatch):
    """An HLS playlist (named .mp4, so it is probed) pointing at a video outside the scanned folder: libavformat's
    HLS demuxer would open that video and report its streams as the playlist's. Neither prober may offer it."""
    outside, inside = tmp_path / "outside", tmp_path / "inside"
    outside.mkdir()
    inside.mkdir()
    video = next(p for p in media if p.endswith(".ts"))
    secret = outside / "secret.ts"
    secret.write_bytes(open(video, "rb").read())
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{secret}\n#EXT-X-ENDLIST\n"
    (inside / "list.mp4").write_text(playlist)
    (inside / "list.m3u8").write_text(playlist)
    env = dict(os.environ, DASK_METAEXTRACT__VIDEO__PROBER=prober)
    done = subprocess.run(["metaextract", "scan", str(inside), "-o", str(tmp_path / "cat"), "-q"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    import pandas as pd

    frame = pd.read_parquet(tmp_path / "cat")
    assert len(frame) == 2
    for row in frame.itertuples():
        record = json.loads(row.metadata) if isinstance(row.metadata, str) else {}
        assert row.reader != "video" and "video" not in record, (row.path, record.get("video"))


def test_a_scan_of_media_starts_no_ffprobe(tmp_path, media):
    """The speed this buys comes from not starting ffprobe: a scan of the corpus's media runs it zero times."""
    folder = tmp_path / "media"
    folder.mkdir()
    for i, path in enumerate(media[:20]):
        shutil.copy(path, folder / f"{i:02d}-{os.path.basename(path)}")
    calls = tmp_path / "calls"
    shim = tmp_path / "bin"
    shim.mkdir()
    real = subprocess.run(["which", "ffprobe"], capture_output=True, text=True, check=True).stdout.strip()
    (shim / "ffprobe").write_text(f"#!/bin/sh\necho x >> {calls}\nexec {real} \"$@\"\n")
    (shim / "ffprobe").chmod(0o755)
    env = dict(os.environ, PATH=f"{shim}:{os.environ['PATH']}")
    frame_of = lambda prober: subprocess.run(  # noqa: E731
        ["metaextract", "scan", str(folder), "-o", str(tmp_path / f"cat-{prober}"), "-q"],
        env={**env, "DASK_METAEXTRACT__VIDEO__PROBER": prober}, capture_output=True, text=True, timeout=300)
    done = frame_of("ffprobe")
    assert done.returncode == 0, done.stderr
    assert calls.exists() and len(calls.read_text().splitlines()) >= 20  # the shim sees ffprobe when it is used
    calls.unlink()
    done = frame_of("auto")
    assert done.returncode == 0, done.stderr
    assert not calls.exists()
    import pandas as pd

    assert pd.read_parquet(tmp_path / "cat-auto")["success"].all()


def test_media_without_a_signature_are_recognised_without_ffprobe(tmp_path, media):
    """A raw AAC stream has no magic number detection knows; libavformat recognises it, with no ffprobe on PATH."""
    aac = next(p for p in media if p.endswith(".aac"))
    target = tmp_path / "sound.aac"
    shutil.copy(aac, target)
    code = ("import json, sys; from metaextract_dask import extract_file\n"
            "r = extract_file(sys.argv[1])[0]\n"
            "print(json.dumps([r['reader'], r['format'], (r.get('video') or {}).get('container')]))")
    env = dict(os.environ, PATH=str(tmp_path))  # no ffprobe
    done = subprocess.run([sys.executable, "-c", code, str(target)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["video", "media", "aac"]


def test_libavformat_would_follow_a_playlist_and_the_prober_does_not(tmp_path, media):
    """The danger is real: PyAV's libavformat, unrestricted, opens the video a playlist names. Through the prober it
    is refused, and the file gets this project's error, not the other file's streams."""
    import av

    from metaextract_dask import CorruptFileError
    from metaextract_dask.readers.video import pyav_probe

    secret = tmp_path / "secret.ts"
    shutil.copy(next(p for p in media if p.endswith(".ts")), secret)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{secret}\n#EXT-X-ENDLIST\n")
    with av.open(str(playlist)) as container:  # what libavformat does by itself
        assert container.format.name == "hls" and container.streams.video
    with pytest.raises(CorruptFileError) as info:
        pyav_probe(str(playlist))
    assert str(playlist) in str(info.value)


def test_what_libavformat_complains_of_is_a_warning_with_either_prober(tmp_path):
    """A Matroska file cut short still plays; the demuxer's complaint reaches the record's warnings, named by who said it."""
    from metaextract_dask.demo import make_video

    whole = open(make_video(str(tmp_path / "whole.mkv"), 2.0), "rb").read()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(whole[: int(len(whole) * 0.6)])
    said = {prober: records([str(cut)], prober)[str(cut)][1]["warnings"] for prober in ("pyav", "ffprobe")}
    assert "libavformat: File ended prematurely" in said["pyav"]
    assert "ffprobe: File ended prematurely" in said["ffprobe"]
    assert [w for w in said["pyav"] if "may be truncated" in w] == [w for w in said["ffprobe"] if "may be truncated" in w] != []


def test_the_prober_setting_holds_in_the_sandbox_when_changed_in_a_running_process(media, tmp_path):
    """A notebook's dask.config.set(...) reaches the parser sandbox (small files parse there in batches, whatever
    the reader): a child started under the other setting is replaced."""
    import dask.config

    from metaextract_dask import scan

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(next(p for p in media if p.endswith(".mp4")), folder / "clip.mp4")

    def prober() -> str:
        frame = scan(str(folder), progress=False, execution="local")
        return json.loads(frame["metadata"].iloc[0])["video"]["prober"]

    assert prober().startswith("libavformat ")  # this thread's sandbox child starts under "auto"
    with dask.config.set({"metaextract.video.prober": "ffprobe"}):
        assert prober() == "ffprobe"
    assert prober().startswith("libavformat ")


def test_streams_without_a_codec_and_tags_that_are_not_utf8_are_read_as_ffprobe_reads_them(tmp_path, media):
    """A QuickTime timecode (data) track, a Matroska font attachment (matplotlib's DejaVu) and RealMedia tags in Latin-1,
    made by ffmpeg from the public clip: PyAV failed the first with "'NoneType' object has no attribute 'profile'" and the
    last with "'utf-8' codec can't decode byte 0xe9". Each now gives the system ffprobe's streams and tags, with a warning
    on what it could not name."""
    import matplotlib

    video = next(p for p in media if p.endswith("bigbuckbunny.mp4"))
    font = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
    made = {"timecode.mov": ["-i", video, "-t", "2", "-c", "copy", "-timecode", "01:00:00:00"],
            "attachment.mkv": ["-i", video, "-t", "1", "-c", "copy", "-attach", font, "-metadata:s:t", "mimetype=application/x-truetype-font"],
            "latin1.rm": ["-i", video, "-t", "2", "-vf", "scale=176:144", "-c:v", "rv10", "-an", "-metadata", b"copyright=\xa9 2000 BBB",
                          "-metadata", b"title=Caf\xe9"]}
    paths = []
    for name, args in made.items():
        paths.append(str(tmp_path / name))
        subprocess.run(["ffmpeg", "-v", "error", "-y", *args, paths[-1]], check=True, timeout=120, stdin=subprocess.DEVNULL)
    ours, theirs = records(paths, "pyav"), records(paths, "ffprobe")
    same = lambda v: v.replace("\\xa9", "\ufffd").replace("\\xe9", "\ufffd") if isinstance(v, str) else v  # noqa: E731 - ffprobe's JSON
    for path in paths:
        (reader_a, a), (reader_b, b) = ours[path], theirs[path]
        assert reader_a == reader_b == "video", (path, a, b)
        assert {k: same(v) for k, v in a["tags"].items()} == b["tags"]
        assert [[s.get(k) for k in STREAM_KEYS] for s in a["streams"]] == [[s.get(k) for k in STREAM_KEYS] for s in b["streams"]], path
    timecode, attachment, latin = (ours[p][1] for p in paths)
    assert [s["codec_type"] for s in timecode["streams"]] == ["video", "audio", "data"] and "codec_name" not in timecode["streams"][2]
    assert any("stream 2: no codec libavformat knows" in w for w in timecode["warnings"])
    assert attachment["streams"][2]["codec_type"] == "attachment" and attachment["streams"][2]["codec_name"] == "ttf"
    assert latin["tags"] == {"copyright": "\\xa9 2000 BBB", "title": "Caf\\xe9"} and any("not UTF-8" in w for w in latin["warnings"])


def test_audio_containers_ffprobe_reads_are_detected_by_their_signatures(tmp_path, media):
    """Musepack (made by Musepack's own mpcenc), WavPack, TTA and Wave64 (ffmpeg's encoders) from the public sound, each
    also without a name that says what it is: before, all but WavPack were unknown binary (no signature, no extension
    entry). Each is read as media and agrees with the system ffprobe."""
    sound = next(p for p in media if p.endswith("house_lo.ogg"))
    wav = str(tmp_path / "s.wav")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", sound, "-t", "3", "-ac", "2", "-ar", "44100", wav], check=True, timeout=120)
    made = [str(tmp_path / "s.mpc")]
    subprocess.run(["mpcenc", "--silent", "--overwrite", wav, made[0]], check=True, timeout=120)
    for name, codec, fmt in (("s.wv", "wavpack", "wv"), ("s.tta", "tta", "tta"), ("s.w64", "pcm_s16le", "w64")):
        made.append(str(tmp_path / name))
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", wav, "-c:a", codec, "-f", fmt, made[-1]], check=True, timeout=120)
    for path in list(made):
        made.append(path + ".dat")
        shutil.copy(path, made[-1])
    ours, theirs = records(made, "pyav"), records(made, "ffprobe")
    for path in made:
        (reader_a, a), (reader_b, b) = ours[path], theirs[path]
        assert reader_a == reader_b == "video", (path, reader_a, reader_b)
        peer = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", path],
                                         capture_output=True, text=True, check=True).stdout)
        assert a["container"] == b["container"] == peer["format"]["format_name"], path
        assert [s["codec_name"] for s in a["streams"]] == [s["codec_name"] for s in peer["streams"]], path
        assert {k: a.get(k) for k in FORMAT_KEYS} == {k: b.get(k) for k in FORMAT_KEYS}, path
