"""``metaextract report``: one self-contained HTML page whose plots draw in a real browser, offline."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import public_corpus
import pytest

from metaextract_dask import read_catalog, read_variables
from metaextract_dask.demo import make_bin, make_h5

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = os.path.join(os.path.dirname(__file__), "artifacts")
BENCH = os.path.join(os.path.dirname(__file__), "..", "benchmarks")

NAMES = ["report-formats", "report-timeline", "report-groups", "report-space", "report-slowest", "report-largest", "report-error-types",
         "report-failures", "report-duplicates", "report-variables", "report-folders"]
READ = """(names) => {
  const doc = Bokeh.documents[0];
  const out = {};
  for (const name of names) {
    const data = doc.get_model_by_name(name).data;
    const keys = data instanceof Map ? Array.from(data.keys()) : Object.keys(data);
    out[name] = Object.fromEntries(keys.map((k) => [k, Array.from(data instanceof Map ? data.get(k) : data[k])]));
  }
  return out;
}"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """300 real CF files (ten of Iris' and xarray's sample files in each of 30 folders: the same names in every folder,
    as archives have) beside HDF5, binary and two broken files, scanned."""
    folder = tmp_path_factory.mktemp("report")
    data = folder / "data"
    data.mkdir()
    iris = public_corpus.fetch_wheels(os.path.join(public_corpus.cache_dir(), "wheels"))
    unpacked = public_corpus.unpack_data(next(w for w in iris if "iris_sample_data" in os.path.basename(w)),
                                         os.path.join(public_corpus.cache_dir(), "corpus-v1"))
    small = sorted((p for p in unpacked if p.endswith(".nc")), key=os.path.getsize)[:10]
    for year in range(30):
        (data / str(2000 + year)).mkdir()
        for p in small:
            os.link(p, data / str(2000 + year) / os.path.basename(p).split("__")[-1])  # the same name in 30 folders
    make_h5(str(data / "a.h5"), 4)
    make_bin(data / "b.bin", 50_000, 1)
    (data / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    (data / "broken.nc").write_bytes(b"CDF\x01" + b"\xff" * 64)
    out = str(folder / "cat")
    subprocess.run(["metaextract", "scan", str(data), "-o", out, "-q"], check=False, timeout=600)
    return out


def _draw(html: str, shot: str | None = None) -> tuple[dict, int, int, list[str], list[str]]:
    """The page in chromium: (the named sources' data, the page's height in pixels, canvases, page errors, URLs fetched)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # Bokeh's own errors go to the console
        page.goto(f"file://{html}")
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60_000)
        page.wait_for_selector("canvas", state="attached", timeout=30_000)
        page.wait_for_timeout(1500)
        shown = page.evaluate(READ, NAMES)
        height = page.evaluate("() => document.documentElement.scrollHeight")
        canvases = page.locator("canvas").count()  # inside Bokeh's shadow roots: the locator pierces them
        if shot:
            page.screenshot(path=shot, full_page=True)
        browser.close()
    return shown, height, canvases, errors, requests


def test_report_page_draws_its_plots_offline(catalog, tmp_path):
    html = str(tmp_path / "report.html")
    done = subprocess.run(["metaextract", "report", catalog, "-o", html], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and html in done.stdout, done.stderr
    text = open(html, encoding="utf-8").read()
    assert "<script src=" not in text.replace('<script src="data:', "")  # JavaScript inline: it works offline
    frame = read_catalog(catalog)
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "report.png")
    shown, height, canvases, errors, requests = _draw(html, shot)
    assert not errors, errors  # before: "duplicate factor or subfactor" with two folders holding the same names, nothing drawn
    assert all(u.startswith(("file://", "data:")) for u in requests), requests  # nothing fetched from a network
    assert height < 3000 and os.path.getsize(html) < 5_000_000, (height, os.path.getsize(html))

    fmt = shown["report-formats"]
    truth = frame.groupby(frame["format"].fillna("unknown")).size()
    assert dict(zip(fmt["format"], fmt["count"])) == {k: int(v) for k, v in truth.items()}
    assert sum(fmt["bytes"]) == int(frame["size"].sum())
    # every file with a decoded time range is in one stretch of its folder's line
    timed = frame[frame["time_start"].notna() & frame["time_end"].notna()]
    assert len(timed) >= 60
    assert sum(shown["report-timeline"]["files"]) == len(timed)
    folders = {os.path.dirname(p) for p in timed["path"]}
    assert set(shown["report-groups"]["group"]) == folders and len(set(shown["report-groups"]["label"])) == len(folders) == 30
    # every file with a box counts on the map, in -180..180
    space = shown["report-space"]
    boxed = frame[frame[["lat_min", "lat_max", "lon_min", "lon_max"]].notna().all(axis=1) & frame["success"]]
    assert len(boxed) >= 60 and sum(space["files"]) >= len(boxed)  # a box across the antimeridian is drawn as its two halves
    assert all(-180 <= v <= 180 for v in space["left"] + space["right"]) and all(-90 <= b <= 90 for b in space["bottom"])
    failed = frame[~frame["success"]]
    assert sorted(shown["report-failures"]["path"]) == sorted(failed["path"]) and len(failed) >= 2
    assert dict(zip(shown["report-error-types"]["error_type"], shown["report-error-types"]["count"])) == \
        {k: int(v) for k, v in failed.groupby("error_type").size().items()}
    assert shown["report-slowest"]["path"][0] == frame.sort_values("duration", ascending=False)["path"].iloc[0]
    sizes = dict(zip(frame["path"], frame["size"]))
    assert [sizes[p] for p in shown["report-largest"]["path"]] == sorted(frame["size"], reverse=True)[:50]
    assert all(s.endswith(("iB", " B")) for s in shown["report-largest"]["size"])  # human units, not raw integers
    # the same content in 30 folders: 10 sets of 30 copies each, found by checksum
    assert len(shown["report-duplicates"]["copies"]) >= 10 and set(shown["report-duplicates"]["copies"][:10]) == {30}
    variables = read_variables(catalog)
    assert set(shown["report-variables"]["name"]) <= set(variables["name"]) and len(shown["report-variables"]["name"]) >= 10
    assert canvases >= 5

    # the rows behind the marks, beside the page
    rows = tmp_path / "report.rows"
    coverage = pd.read_csv(rows / "coverage.csv")
    assert sorted(coverage["path"]) == sorted(timed["path"])
    assert sorted(pd.read_csv(rows / "boxes.csv")["path"]) == sorted(boxed["path"])
    assert sorted(pd.read_csv(rows / "failed.csv")["path"]) == sorted(failed["path"])
    assert len(pd.read_csv(rows / "duplicates.csv")) >= 300

    # the plots drew: the screenshot's plot areas are not blank
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    coloured = (np.abs(img - img[:, :, :1]).max(axis=2) > 40)  # bars and boxes are coloured, the page is white and grey
    assert coloured.sum() > 5000, "no coloured marks drawn"


@pytest.mark.parametrize("rows", [5_000, 100_000])
def test_report_of_a_large_catalog_keeps_its_size(rows, tmp_path_factory):
    """Synthetic catalogs of 5,000 and 100,000 CF rows (benchmarks/bench_scale.make_catalog, 100 folders and more): the
    page draws every plot, stays under 3,000 pixels and 5 MB (before: an 18-pixel row per file, 100,000 pixels)."""
    sys.path.insert(0, BENCH)
    import bench_scale

    cat = bench_scale.make_catalog(str(tmp_path_factory.mktemp("big") / "cat"), rows)
    html = str(tmp_path_factory.mktemp("page") / "report.html")
    done = subprocess.run(["metaextract", "report", cat, "-o", html], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    shown, height, canvases, errors, _ = _draw(html)
    assert not errors, errors
    assert height < 3000 and os.path.getsize(html) < 5_000_000 and canvases >= 4, (height, os.path.getsize(html))
    assert sum(shown["report-groups"]["files"]) <= rows and len(shown["report-groups"]["group"]) <= 40
    assert sum(shown["report-formats"]["count"]) == rows


def test_report_of_something_that_is_not_a_catalog(tmp_path):
    done = subprocess.run(["metaextract", "report", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a catalog" in done.stderr and "Traceback" not in done.stderr


def test_report_in_python_returns_the_layout(catalog, tmp_path):
    import metaextract_dask as me

    layout = me.report(catalog, str(tmp_path / "r.html"))
    assert os.path.getsize(tmp_path / "r.html") > 100_000 and layout.select_one({"name": "report-formats"}) is not None
    assert glob.glob(str(tmp_path / "r.html*")) == [str(tmp_path / "r.html")]  # no temporary left


def test_demo_makes_covered_files_and_its_report_marks_the_missing_year(tmp_path):
    """The demo's CF files have time and latitude/longitude coverage (a global run of four years, a regional one missing
    2003); it says where its folder is and names the report and the dashboard; the report's rows mark the gap."""
    folder = tmp_path / "demo"
    done = subprocess.run(["metaextract", "demo", "--folder", str(folder), "-q"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"the folder {folder} is kept" in done.stdout and "metaextract report" in done.stdout and "/metaextract" in done.stdout
    helped = subprocess.run(["metaextract", "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert "latitude/longitude coverage" in helped.stdout
    cat = str(folder / "catalog")
    html = str(tmp_path / "demo.html")
    assert subprocess.run(["metaextract", "report", cat, "-o", html], capture_output=True, timeout=120).returncode == 0
    coverage = pd.read_csv(tmp_path / "demo.rows" / "coverage.csv")
    gaps = coverage[coverage["gap_before"]]
    assert list(gaps["path"].map(os.path.basename)) == ["tas_2004.nc"] and gaps["group"].iloc[0].endswith("cf/europe")
    assert not coverage["overlap"].any() and len(pd.read_csv(tmp_path / "demo.rows" / "boxes.csv")) == 7
