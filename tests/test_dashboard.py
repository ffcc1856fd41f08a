"""The dashboard page in a real browser, and Prometheus /metrics, during and after real runs."""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.request

import pytest

from metaextract_dask import ParallelExtractionConfig, ParallelExtractor
from metaextract_dask.demo import make_bin, mixed_corpus
from metaextract_dask.diagnostics.dashboard import page_link
from metaextract_dask.execution.cluster import ClientScope

pytestmark = pytest.mark.system

ARTIFACTS = os.path.join(os.path.dirname(__file__), "artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

READ_SOURCES = """() => {
  const doc = Bokeh.documents[0];
  const out = {};
  for (const name of ["metaextract-files", "metaextract-chunks", "metaextract-failures", "metaextract-slowest", "metaextract-rate"]) {
    const data = doc.get_model_by_name(name).data;
    const get = (k) => Array.from(data instanceof Map ? data.get(k) : data[k]);
    const keys = data instanceof Map ? Array.from(data.keys()) : Object.keys(data);
    out[name] = Object.fromEntries(keys.map((k) => [k, get(k)]));
  }
  out.summary = doc.get_model_by_name("metaextract-summary").text;
  return out;
}"""


@pytest.fixture(scope="module")
def cluster_client():
    with ClientScope(model="process_pool", max_workers=2, dashboard="127.0.0.1:0") as client:
        yield client


def test_page_shows_the_runs_real_numbers(tmp_path, cluster_client):
    from playwright.sync_api import sync_playwright

    corpus = mixed_corpus(tmp_path / "d", n_h5=6, n_nc=5, n_video=2, n_bin=4, n_corrupt=3)
    files = sorted(p for v in corpus.values() for p in v)
    results, metrics = ParallelExtractor(ParallelExtractionConfig(), client=cluster_client).extract(files)
    url = page_link(cluster_client.dashboard_link)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metaextract")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0 && "
                               "Bokeh.documents[0].get_model_by_name('metaextract-files').data", timeout=60_000)
        page.wait_for_function(f"() => Bokeh.documents[0].get_model_by_name('metaextract-summary').text.includes('{len(files)} of {len(files)} files done')", timeout=30_000)
        page.wait_for_selector("canvas", timeout=30_000)
        page.wait_for_timeout(1500)  # let the plots draw before the picture
        shown = page.evaluate(READ_SOURCES)
        os.makedirs(ARTIFACTS, exist_ok=True)
        page.screenshot(path=os.path.join(ARTIFACTS, "dashboard.png"), full_page=True)
        assets = [r for r in page.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")]
        browser.close()

    files_plot = shown["metaextract-files"]
    by_type = dict(zip(files_plot["type"], zip(files_plot["success"], files_plot["failed"])))
    assert by_type == {t: (s["success"], s["failed"]) for t, s in metrics.file_type_stats.items()}
    assert sum(s for s, _ in by_type.values()) == sum(r.success for r in results)
    failed = {r.file_path: r.error.replace(f"{r.file_path}: ", "", 1) for r in results if not r.success}
    assert dict(zip(shown["metaextract-failures"]["path"], shown["metaextract-failures"]["error"])) == failed
    slowest = max(results, key=lambda r: r.duration)
    assert shown["metaextract-slowest"]["path"][0] == slowest.file_path
    assert sum(shown["metaextract-rate"]["bytes_per_second"]) == metrics.bytes_processed
    chunks = dict(zip(shown["metaextract-chunks"]["shape"], shown["metaextract-chunks"]["chunks"]))
    truth: dict[str, int] = {}
    for r in results:
        if r.success:
            shape = r.metadata["streaming"]["shape"]
            truth[shape] = truth.get(shape, 0) + r.metadata["streaming"]["chunks_read"]
    assert chunks == truth
    assert f"{metrics.successful} succeeded, {metrics.failed} failed" in shown["summary"]
    assert re.search(r"failed; [0-9.]+ (B|KiB|MiB|GiB) in", shown["summary"]), shown["summary"]  # human units
    for table in ("metaextract-failures", "metaextract-slowest"):  # paths shortened from the left: their ends are shown
        assert all(p.endswith(s.lstrip("…")) and len(s) <= 60 for p, s in zip(shown[table]["path"], shown[table]["shown"]))
    host = url.split("/metaextract")[0]
    assert assets and all(a.startswith(host) for a in assets)  # every script and style from the scheduler, no CDN


def metrics_text(client) -> str:
    base = client.dashboard_link.rsplit("/", 1)[0]
    return urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()


def series(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{.*\}})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


def slow_extraction(path):
    import time as t

    t.sleep(0.05)
    if path.endswith("7.bin"):
        raise ValueError("bad value in file")
    return {"format": "unknown", "bytes": os.path.getsize(path)}


def test_prometheus_metrics_during_and_after_a_run(tmp_path, cluster_client):
    files = [make_bin(tmp_path / f"{i}.bin", 1000, i) for i in range(60)]
    before = series(metrics_text(cluster_client), "metaextract_files_total")
    done = {}

    def run():
        config = ParallelExtractionConfig(batch_size=2, retry_limit=0)
        done["results"], done["metrics"] = ParallelExtractor(config, slow_extraction, client=cluster_client).extract(files)

    thread = threading.Thread(target=run)
    thread.start()
    seen_during = set()
    while thread.is_alive():
        now = series(metrics_text(cluster_client), "metaextract_files_total")
        seen_during.add(sum(now.values()) - sum(before.values()))
        time.sleep(0.1)
    thread.join()
    assert any(0 < n < 60 for n in seen_during)  # counts moved while the run went on

    after = metrics_text(cluster_client)
    files_total = series(after, "metaextract_files_total")
    delta = {k: v - before.get(k, 0) for k, v in files_total.items()}
    assert delta['{outcome="success",type="unknown"}'] == 54 and delta['{outcome="failed",type="unknown"}'] == 6
    assert series(after, "metaextract_errors_total")['{error_type="ValueError"}'] >= 6
    assert series(after, "metaextract_file_duration_seconds_count")[""] >= 60
    assert "metaextract_bytes_total" in after and "metaextract_chunks_total" in after


def test_each_scheduler_in_a_process_serves_its_own_counts(tmp_path, thread_client):
    """Two schedulers in one process (a notebook's in-process cluster, then a scan's own): each ``/metrics`` serves
    its own plugin's counts. prometheus_client has one registry per process; before, the first plugin started served
    both, and the second cluster's page showed the first one's counts, never moving."""
    files = [make_bin(tmp_path / f"{i}.bin", 1000, i) for i in range(7)]
    total = lambda client: sum(series(metrics_text(client), "metaextract_files_total").values())  # noqa: E731
    ParallelExtractor(ParallelExtractionConfig(), client=thread_client).extract(files[:2])  # the first plugin is up
    first_before = total(thread_client)
    with ClientScope(model="process_pool", max_workers=1, dashboard="127.0.0.1:0") as second:
        ParallelExtractor(ParallelExtractionConfig(), client=second).extract(files)
        assert total(second) == 7
        ParallelExtractor(ParallelExtractionConfig(), client=thread_client).extract(files[:3])
        assert total(thread_client) == first_before + 3 and total(second) == 7
