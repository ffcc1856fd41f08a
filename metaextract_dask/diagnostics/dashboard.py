"""A page of the Dask dashboard: the extraction, live, at ``/metaextract``.

Served by the scheduler's own Bokeh server (its JavaScript comes from the
scheduler, never a CDN: compute nodes are often offline). It reads the
scheduler plugin of ``metrics.py`` once a second and shows the latest run:
files done out of total by type, bytes per second over time, chunk tasks per
shape, failures with their paths and errors, and the slowest files.

Our LocalClusters get the page automatically; a standalone scheduler gets it
with ``dask scheduler --preload metaextract_dask.diagnostics.preload``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..core.text import JS_BYTES, human_bytes, shortened

PAGE = "/metaextract"


def metaextract_doc(scheduler: Any, extra: Any, doc: Any) -> None:
    """Bokeh document factory, as distributed's dashboard pages are."""
    page = ExtractionPage(scheduler)
    page.update()
    doc.title = "Dask: metadata extraction"
    doc.add_root(page.root)
    doc.add_periodic_callback(page.update, 1000)


class ExtractionPage:
    """The page's plots and tables; ``update`` refreshes them from the plugin."""

    def __init__(self, scheduler: Any):
        from bokeh.layouts import column, row
        from bokeh.models import ColumnDataSource, CustomJSTickFormatter, DataTable, Div, NumberFormatter, TableColumn
        from bokeh.plotting import figure

        self.scheduler = scheduler
        self.summary = Div(name="metaextract-summary", text="No extraction has run on this scheduler yet.", sizing_mode="stretch_width")
        self.files = ColumnDataSource(dict(type=[], success=[], failed=[]), name="metaextract-files")
        self.rate = ColumnDataSource(dict(time=[], bytes_per_second=[]), name="metaextract-rate")
        self.chunks = ColumnDataSource(dict(shape=[], chunks=[]), name="metaextract-chunks")
        self.failures = ColumnDataSource(dict(path=[], shown=[], type=[], error=[]), name="metaextract-failures")
        self.slowest = ColumnDataSource(dict(path=[], shown=[], type=[], duration=[]), name="metaextract-slowest")
        #: a cost model's predicted seconds per kind of file (extension; all the run's files) beside the seconds the finished ones took
        self.costs = ColumnDataSource(dict(type=[], predicted=[], actual=[], files=[]), name="metaextract-costs")

        self.files_fig = figure(title="Files done, by type", y_range=[], height=260, sizing_mode="stretch_width", tools="", toolbar_location=None)
        self.files_fig.hbar_stack(["success", "failed"], y="type", height=0.7, color=["#2a9d8f", "#e76f51"], source=self.files,
                                  legend_label=["succeeded", "failed"])
        self.chunks_fig = figure(title="Chunks read, by graph shape", x_range=[], height=260, sizing_mode="stretch_width", tools="", toolbar_location=None)
        self.chunks_fig.vbar(x="shape", top="chunks", width=0.7, color="#264653", source=self.chunks)
        self.rate_fig = figure(title="Bytes per second", x_axis_type="datetime", height=220, sizing_mode="stretch_width", tools="xpan,xwheel_zoom,reset")
        self.rate_fig.vbar(x="time", top="bytes_per_second", width=900, source=self.rate, color="#e9c46a")
        self.rate_fig.yaxis.formatter = CustomJSTickFormatter(code=JS_BYTES)
        failures = DataTable(source=self.failures, height=220, sizing_mode="stretch_width", columns=[
            TableColumn(field="shown", title="failed file"), TableColumn(field="type", title="type", width=80),
            TableColumn(field="error", title="error")])
        slowest = DataTable(source=self.slowest, height=220, sizing_mode="stretch_width", columns=[
            TableColumn(field="shown", title="slowest file"), TableColumn(field="type", title="type", width=80),
            TableColumn(field="duration", title="seconds", formatter=NumberFormatter(format="0.000"), width=80)])
        seconds = NumberFormatter(format="0.000")
        self.costs_caption = Div(text="<b>Cost model</b>: for each file extension, the seconds the scan's planner predicted for "
                                      "all of the run's files of that kind, beside the seconds those done so far took "
                                      "(the cost model a resumed catalog or --learn-from teaches; shown when the run has one).", sizing_mode="stretch_width",
                                 visible=False)
        self.costs_table = costs = DataTable(source=self.costs, height=140, sizing_mode="stretch_width", visible=False, columns=[
            TableColumn(field="type", title="file extension (cost model)", width=120),
            TableColumn(field="predicted", title="predicted seconds", formatter=seconds),
            TableColumn(field="actual", title="actual seconds so far", formatter=seconds),
            TableColumn(field="files", title="files done", width=80)])
        self.root = column(self.summary, row(self.files_fig, self.chunks_fig, sizing_mode="stretch_width"), self.rate_fig,
                           row(failures, slowest, sizing_mode="stretch_width"), self.costs_caption, costs, sizing_mode="stretch_width")

    def snapshot(self) -> dict[str, Any] | None:
        from .plugin import PLUGIN_NAME

        plugin = self.scheduler.plugins.get(PLUGIN_NAME)
        return plugin.snapshot() if plugin is not None else None

    def update(self) -> None:
        snap = self.snapshot()
        if not snap:
            return
        types = sorted(snap["file_type_stats"])
        stats = snap["file_type_stats"]
        self.files.data = dict(type=types, success=[stats[t]["success"] for t in types], failed=[stats[t]["failed"] for t in types])
        self.files_fig.y_range.factors = types
        shapes = sorted(snap["chunks_by_shape"])
        self.chunks.data = dict(shape=shapes, chunks=[snap["chunks_by_shape"][s] for s in shapes])
        self.chunks_fig.x_range.factors = shapes
        per_second: dict[int, int] = defaultdict(int)
        for t, nbytes in snap["throughput"]:
            per_second[int(t)] += nbytes
        seconds = sorted(per_second)
        self.rate.data = dict(time=[s * 1000 for s in seconds], bytes_per_second=[per_second[s] for s in seconds])
        self.failures.data = dict(path=[f["path"] for f in snap["failures"]], shown=[shortened(f["path"], 40) for f in snap["failures"]],
                                  type=[f["type"] for f in snap["failures"]],
                                  error=[_without_path(f["error"], f["path"]) for f in snap["failures"]])
        self.slowest.data = dict(path=[s["path"] for s in snap["slowest"]], shown=[shortened(s["path"], 60) for s in snap["slowest"]],
                                 type=[s["type"] for s in snap["slowest"]], duration=[s["duration"] for s in snap["slowest"]])
        costs = snap.get("costs") or {}
        kinds = sorted(costs)
        self.costs.data = dict(type=kinds, predicted=[costs[k]["predicted"] for k in kinds], actual=[costs[k]["actual"] for k in kinds],
                               files=[costs[k]["files"] for k in kinds])
        self.costs_caption.visible = self.costs_table.visible = bool(kinds)
        state = "finished" if snap["finished"] else "running"
        self.summary.text = (
            f"<b>Extraction {snap['run']}</b> ({state}): {snap['files']} of {snap['expected_files']} files done, "
            f"{snap['successful']} succeeded, {snap['failed']} failed; {human_bytes(snap['bytes'], 1024)} in {snap['chunks']} chunks."
        )
        if snap.get("io_requests"):
            self.summary.text += (f" Remote objects: {snap['io_requests']} requests, {human_bytes(snap['io_bytes'], 1024)} fetched "
                                  f"({snap['io_requests'] / max(1, snap['files']):.1f} requests per file).")


def _without_path(error: str | None, path: str | None) -> str:
    """Errors start with their path; the table shows the path already."""
    error = error or ""
    return error[len(path) + 2 :] if path and error.startswith(f"{path}: ") else error


def register_page() -> None:
    """Add the page (and a tab in the dashboard's navigation) before a scheduler starts."""
    import distributed.dashboard.scheduler as dash

    dash.applications.setdefault(PAGE, metaextract_doc)
    original = dash.template_variables
    if getattr(original, "_metaextract", False):
        return

    def with_our_tab(scheduler: Any) -> dict[str, Any]:
        variables = original(scheduler)
        if "metaextract" not in variables["pages"]:
            variables["pages"].append("metaextract")
        return variables

    with_our_tab._metaextract = True  # type: ignore[attr-defined]
    dash.template_variables = with_our_tab


def page_link(dashboard_link: str | None) -> str | None:
    """The page's URL next to the dashboard's own link."""
    if not dashboard_link:
        return None
    return dashboard_link.rsplit("/", 1)[0] + PAGE
