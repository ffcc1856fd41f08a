"""A catalog to look at: one self-contained HTML page of Bokeh plots (JavaScript inline, works offline).

Size and count by format, each NetCDF file's time coverage on a timeline,
the spatial coverage as latitude/longitude boxes, the slowest files, and the
failures grouped by error type with their paths. ``metaextract report
CATALOG`` writes it; ``me.report(CATALOG)`` shows it in a notebook.
"""

from __future__ import annotations

import os
from typing import Any

#: rows shown in the slowest-files and failures tables
TABLE_ROWS = 50


def _section(row: Any) -> dict[str, Any]:
    """The reader's own section of a row's record (empty when the record is absent, unreadable or not an object)."""
    from .trust import load_record, section

    return section(load_record(row["metadata"]))


def epoch_ms(text: Any) -> float:
    """An ISO date's milliseconds since 1970 (what Bokeh's datetime axis draws), NaN when it does not parse.

    NumPy's datetime64 reaches years far outside pandas' nanosecond range
    (a climatology's year 0 or 1): Bokeh failed to convert such Timestamps.
    A 360-day "2000-02-30" does not parse and is left off the timeline.
    """
    import numpy as np

    if not isinstance(text, str) or not text.strip():
        return float("nan")
    iso = text.strip().replace(" ", "T", 1)
    for cut in (len(iso), 19, 10):  # whole; without fractions or a zone; the date alone
        try:
            return float(np.datetime64(iso[:cut], "ms").astype("int64"))
        except ValueError:
            continue
    return float("nan")


def coverage_frame(frame: Any) -> Any:
    """One row per file with a time or space coverage: path, start, end (text and ``epoch_ms``), lat/lon bounds (from the records).

    Records are catalog input (``trust``): a value that is not what a scan
    writes (text dates, finite numbers) counts as absent.
    """
    import pandas as pd

    from .trust import finite, mapping, text

    rows = []
    for _, row in frame[frame["success"].fillna(False).astype(bool)].iterrows():
        cov = mapping(_section(row).get("cf_coverage"))
        t, lat, lon = (mapping(cov.get(k)) for k in ("time", "latitude", "longitude"))
        bounds = {f"{axis}_{end}": finite(box.get(end)) for axis, box in (("lat", lat), ("lon", lon)) for end in ("min", "max")}
        start, end = text(t.get("start")), text(t.get("end"))
        if not (start or any(v is not None for v in bounds.values())):
            continue
        rows.append({"path": str(row["path"]), "start": start, "end": end, "calendar": text(t.get("calendar")), **bounds})
    out = pd.DataFrame(rows, columns=["path", "start", "end", "calendar", "lat_min", "lat_max", "lon_min", "lon_max"])
    out["start_ms"] = pd.Series([epoch_ms(v) for v in out["start"]], dtype="float64")
    out["end_ms"] = pd.Series([epoch_ms(v) for v in out["end"]], dtype="float64")
    return out


def build_report(frame: Any, title: str = "metaextract catalog") -> Any:
    """The report's Bokeh layout for a catalog DataFrame."""
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, DataTable, Div, HoverTool, NumeralTickFormatter, TableColumn
    from bokeh.plotting import figure

    from .trust import finite

    frame = frame.assign(size=[finite(s) for s in frame["size"]], duration=[finite(d) for d in frame["duration"]])
    success = frame["success"].fillna(False).astype(bool)
    by_format = frame.assign(size=frame["size"].fillna(0)).groupby(frame["format"].fillna("unknown"))
    formats = sorted(by_format.groups)
    fmt_src = ColumnDataSource(dict(format=formats, count=[int(by_format.size()[f]) for f in formats],
                                    bytes=[int(by_format["size"].sum()[f]) for f in formats]), name="report-formats")
    count_fig = figure(title="Files by format", x_range=formats, height=280, sizing_mode="stretch_width", tools="")
    count_fig.vbar(x="format", top="count", width=0.7, source=fmt_src, color="#2a9d8f")
    size_fig = figure(title="Bytes by format", x_range=formats, height=280, sizing_mode="stretch_width", tools="")
    size_fig.vbar(x="format", top="bytes", width=0.7, source=fmt_src, color="#264653")
    size_fig.yaxis.formatter = NumeralTickFormatter(format="0.0 b")
    for fig in (count_fig, size_fig):
        fig.xaxis.major_label_orientation = 0.8
        fig.add_tools(HoverTool(tooltips=[("format", "@format"), ("files", "@count"), ("bytes", "@bytes{0.0 b}")]))

    cov = coverage_frame(frame)
    timed = cov.dropna(subset=["start_ms", "end_ms"]).sort_values("start_ms")
    names = [os.path.basename(p) for p in timed["path"]]
    time_src = ColumnDataSource(dict(path=list(timed["path"]), name=names, start=list(timed["start_ms"]),
                                     end=list(timed["end_ms"]), label_start=list(timed["start"]),
                                     label_end=list(timed["end"])), name="report-timeline")
    timeline = figure(title=f"Time coverage of {len(timed)} files", y_range=names or ["(none)"], x_axis_type="datetime",
                      height=max(240, 18 * len(names) + 80), sizing_mode="stretch_width", tools="xpan,xwheel_zoom,reset")
    timeline.hbar(y="name", left="start", right="end", height=0.6, source=time_src, color="#e76f51")
    timeline.add_tools(HoverTool(tooltips=[("file", "@path"), ("from", "@label_start"), ("to", "@label_end")]))

    boxed = cov.dropna(subset=["lat_min", "lat_max", "lon_min", "lon_max"])
    space_src = ColumnDataSource(dict(path=list(boxed["path"]), left=list(boxed["lon_min"]), right=list(boxed["lon_max"]),
                                      bottom=list(boxed["lat_min"]), top=list(boxed["lat_max"])), name="report-space")
    space = figure(title=f"Spatial coverage of {len(boxed)} files (longitude, latitude)", x_range=(-180, 360), y_range=(-90, 90),
                   height=360, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset")
    space.quad(left="left", right="right", bottom="bottom", top="top", source=space_src, fill_alpha=0.15, line_color="#1d3557",
               fill_color="#457b9d")
    space.add_tools(HoverTool(tooltips=[("file", "@path"), ("lon", "@left to @right"), ("lat", "@bottom to @top")]))

    slowest = frame.sort_values("duration", ascending=False).head(TABLE_ROWS)
    slow_src = ColumnDataSource(dict(path=list(slowest["path"]), format=list(slowest["format"].fillna("")),
                                     duration=[round(finite(d) or 0.0, 3) for d in slowest["duration"]],
                                     size=[int(finite(s) or 0) for s in slowest["size"]]), name="report-slowest")
    slow_table = DataTable(source=slow_src, columns=[TableColumn(field="duration", title="seconds"), TableColumn(field="format", title="format"),
                                                     TableColumn(field="size", title="bytes"), TableColumn(field="path", title="path")],
                           sizing_mode="stretch_width", height=300, index_position=None)

    failed = frame[~success].sort_values(["error_type", "path"])
    groups = failed.groupby(failed["error_type"].fillna("unknown")).size().sort_values(ascending=False)
    err_src = ColumnDataSource(dict(error_type=list(groups.index), count=[int(n) for n in groups]), name="report-error-types")
    err_fig = figure(title=f"Failures by error type ({len(failed)} files)", x_range=list(groups.index) or ["(none)"], height=260,
                     sizing_mode="stretch_width", tools="")
    err_fig.vbar(x="error_type", top="count", width=0.7, source=err_src, color="#d62828")
    fail_src = ColumnDataSource(dict(error_type=list(failed["error_type"].fillna("unknown")), path=list(failed["path"]),
                                     error=[str(e)[:300] for e in failed["error"].fillna("")]), name="report-failures")
    fail_table = DataTable(source=fail_src, columns=[TableColumn(field="error_type", title="error type"), TableColumn(field="path", title="path"),
                                                     TableColumn(field="error", title="error")],
                           sizing_mode="stretch_width", height=300, index_position=None)

    total = int(frame["size"].fillna(0).sum())
    summary = Div(text=f"<h1>{_html(title)}</h1><p>{len(frame)} files, {total / 1e9:.2f} GB; {int(success.sum())} succeeded, "
                       f"{int((~success).sum())} failed; {len(cov)} with coverage.</p>", name="report-summary",
                  sizing_mode="stretch_width")
    return column(summary, row(count_fig, size_fig, sizing_mode="stretch_width"), timeline, space,
                  Div(text="<h3>Slowest files</h3>"), slow_table, err_fig, Div(text="<h3>Failures</h3>"), fail_table,
                  sizing_mode="stretch_width")


def _html(text: str) -> str:
    from html import escape

    return escape(text)


def write_report(catalog: str, output: str | None = None, title: str | None = None) -> str:
    """Write the report of ``catalog`` as one self-contained HTML file; returns its path."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from .read import read_catalog

    frame = read_catalog(catalog)
    output = output or os.path.join(catalog, "_report.html")
    title = title or f"metaextract catalog: {os.path.abspath(catalog)}"
    html = file_html(build_report(frame, title), INLINE, title)
    tmp = f"{output}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html)
    os.replace(tmp, output)
    return output


def report(catalog: str, output: str | None = None, title: str | None = None) -> Any:
    """The catalog report: written to ``output`` when given, shown inline in a notebook; returns the Bokeh layout."""
    from .read import read_catalog

    if output is not None:
        write_report(catalog, output, title)
    layout = build_report(read_catalog(catalog), title or f"metaextract catalog: {os.path.abspath(catalog)}")
    from ..diagnostics.progress import in_notebook

    if in_notebook():
        from bokeh.io import output_notebook, show
        from bokeh.resources import INLINE

        output_notebook(INLINE, hide_banner=True)
        show(layout)
    return layout
