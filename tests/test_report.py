"""``metaextract report``: one self-contained HTML page whose plots draw in a real browser, offline."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

import numpy as np
import public_corpus
import pytest

from metaextract_dask import read_catalog
from metaextract_dask.demo import make_bin, make_h5

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = os.path.join(os.path.dirname(__file__), "artifacts")

READ = """() => {
  const doc = Bokeh.documents[0];
  const out = {};
  for (const name of ["report-formats", "report-timeline", "report-space", "report-slowest", "report-error-types", "report-failures"]) {
    const data = doc.get_model_by_name(name).data;
    const keys = data instanceof Map ? Array.from(data.keys()) : Object.keys(data);
    out[name] = Object.fromEntries(keys.map((k) => [k, Array.from(data instanceof Map ? data.get(k) : data[k])]));
  }
  return out;
}"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """A scanned folder of real CF files (Iris' sample data) beside HDF5, binary and two broken files."""
    folder = tmp_path_factory.mktemp("report")
    data = folder / "data"
    data.mkdir()
    iris = public_corpus.fetch_wheels(os.path.join(public_corpus.cache_dir(), "wheels"))
    unpacked = public_corpus.unpack_data(next(w for w in iris if "iris_sample_data" in os.path.basename(w)),
                                         os.path.join(public_corpus.cache_dir(), "corpus-v1"))
    for p in [p for p in unpacked if p.endswith(".nc")][:12]:
        shutil.copy(p, data)
    make_h5(str(data / "a.h5"), 4)
    make_bin(data / "b.bin", 50_000, 1)
    (data / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    (data / "broken.nc").write_bytes(b"CDF\x01" + b"\xff" * 64)
    out = str(folder / "cat")
    subprocess.run(["metaextract", "scan", str(data), "-o", out, "-q"], check=False, timeout=600)
    return out


def test_report_page_draws_its_plots_offline(catalog, tmp_path):
    from playwright.sync_api import sync_playwright

    html = str(tmp_path / "report.html")
    done = subprocess.run(["metaextract", "report", catalog, "-o", html], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and html in done.stdout, done.stderr
    text = open(html, encoding="utf-8").read()
    assert "<script src=" not in text.replace('<script src="data:', "")  # JavaScript inline: it works offline
    frame = read_catalog(catalog)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"file://{html}")
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60_000)
        page.wait_for_selector("canvas", timeout=30_000)
        page.wait_for_timeout(1500)
        shown = page.evaluate(READ)
        canvases = page.locator("canvas").count()  # inside Bokeh's shadow roots: the locator pierces them
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "report.png")
        page.screenshot(path=shot, full_page=True)
        browser.close()
    assert not errors, errors
    assert all(u.startswith(("file://", "data:")) for u in requests), requests  # nothing fetched from a network

    fmt = shown["report-formats"]
    truth = frame.groupby(frame["format"].fillna("unknown")).size()
    assert dict(zip(fmt["format"], fmt["count"])) == {k: int(v) for k, v in truth.items()}
    assert sum(fmt["bytes"]) == int(frame["size"].sum())
    # the timeline has every file with a decoded time range, the map every file with lat/lon bounds
    timed = {p for p, m in zip(frame["path"], frame["metadata"]) if isinstance(m, str)
             and ((json.loads(m).get("netcdf") or {}).get("cf_coverage") or {}).get("time", {}).get("start")}
    assert timed and set(shown["report-timeline"]["path"]) <= timed and len(shown["report-timeline"]["path"]) >= len(timed) - 1
    assert len(shown["report-space"]["path"]) >= 3 and all(-90 <= b <= 90 for b in shown["report-space"]["bottom"])
    failed = frame[~frame["success"]]
    assert sorted(shown["report-failures"]["path"]) == sorted(failed["path"]) and len(failed) >= 2
    assert dict(zip(shown["report-error-types"]["error_type"], shown["report-error-types"]["count"])) == \
        {k: int(v) for k, v in failed.groupby("error_type").size().items()}
    assert shown["report-slowest"]["path"][0] == frame.sort_values("duration", ascending=False)["path"].iloc[0]
    assert canvases >= 5

    # the plots drew: the screenshot's plot areas are not blank
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    coloured = (np.abs(img - img[:, :, :1]).max(axis=2) > 40)  # bars and boxes are coloured, the page is white and grey
    assert coloured.sum() > 5000, "no coloured marks drawn"


def test_report_of_something_that_is_not_a_catalog(tmp_path):
    done = subprocess.run(["metaextract", "report", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a catalog" in done.stderr and "Traceback" not in done.stderr


def test_report_in_python_returns_the_layout(catalog, tmp_path):
    import metaextract_dask as me

    layout = me.report(catalog, str(tmp_path / "r.html"))
    assert os.path.getsize(tmp_path / "r.html") > 100_000 and layout.select_one({"name": "report-formats"}) is not None
    assert glob.glob(str(tmp_path / "r.html*")) == [str(tmp_path / "r.html")]  # no temporary left
