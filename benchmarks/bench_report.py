"""The catalog report at archive sizes: `metaextract report` as a whole process, and the page it writes.

    python benchmarks/bench_report.py --rounds 3 --sizes 5000,100000,1000000

For each size, a synthetic catalog of CF netCDF rows (``bench_scale.make_catalog``: 100 folders of 1,000 files per
100,000 rows, regional boxes, decades of time) is reported ``--rounds`` times (interleaved, medians, cold start
included, peak RSS of the process tree); the page's size and, in chromium when it is installed, its height and any
error Bokeh logs. Results go to ``benchmarks/RESULTS-report.md`` with the command that made them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_scale import machine, make_catalog, whole  # noqa: E402
from common import command_line, write_report  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = "/usr/bin/chromium"


def page_height(html: str) -> tuple[int | None, list[str]]:
    """The page's height in pixels and the errors it logs, in chromium (None without chromium or playwright)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, []
    if not os.path.exists(CHROMIUM):
        return None, []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"file://{html}")
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=120_000)
        page.wait_for_selector("canvas", state="attached", timeout=60_000)
        page.wait_for_timeout(1500)
        height = int(page.evaluate("() => document.documentElement.scrollHeight"))
        browser.close()
    return height, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="5000,100000")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "metaextract-bench-report"))
    parser.add_argument("--out", default=os.path.join(HERE, "RESULTS-report.md"))
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    sizes = [int(x) for x in args.sizes.split(",")]
    catalogs = {n: make_catalog(os.path.join(args.work, f"catalog{n}"), n) for n in sizes}
    times: dict[int, list[tuple[float, int]]] = {n: [] for n in sizes}
    for _ in range(args.rounds):
        for n in sizes:
            html = os.path.join(args.work, f"report{n}.html")
            times[n].append(whole([sys.executable, "-m", "metaextract_dask.cli", "report", catalogs[n], "-o", html]))
    mb = 2**20
    lines = [f"`{command_line()}` on {machine()}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}. `metaextract report` as a whole process, cold start included, {args.rounds} "
             "interleaved rounds, medians; peak RSS of the process tree; the page's height in chromium (1400 pixels wide).",
             "", "| catalog rows | `metaextract report` | peak RSS | page | page height | errors in the browser |", "|---|---|---|---|---|---|"]
    for n in sizes:
        html = os.path.join(args.work, f"report{n}.html")
        height, errors = page_height(html)
        took, peak = statistics.median(t for t, _ in times[n]), statistics.median(m for _, m in times[n])
        lines.append(f"| {n:,} | {took:.2f} s | {peak / mb:.0f} MB | {os.path.getsize(html) / mb:.1f} MB | "
                     f"{'-' if height is None else f'{height:,} px'} | {len(errors)} |")
        print(lines[-1], flush=True)
    write_report("\n".join(["# The catalog report at archive sizes", "", *lines, ""]), args.out)


if __name__ == "__main__":
    main()
