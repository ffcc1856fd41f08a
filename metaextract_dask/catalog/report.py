"""A catalog to look at: one self-contained HTML page of Bokeh plots (JavaScript inline, works offline).

Every plot and table is a summary that keeps its size as the catalog grows
(100 rows or millions): files and bytes by format; time coverage by group (a
folder by default, or any catalog column), each group's contiguous stretches
with its gaps and overlaps marked; the files' latitude/longitude boxes, equal
boxes drawn once with their count and small ones above large ones; and, in
tabs, the largest, slowest and failed files, the duplicates by checksum, the
variables (from the variables table) and the folders. The rows behind each
(every covered file with its group, every failure, every duplicate, every
variable and folder) go to CSV files in a folder beside the page, linked from
it. Everything is computed column-wise from the catalog's columns, not from
each row's record. ``metaextract report CATALOG`` writes it;
``me.report(CATALOG)`` shows it in a notebook.
"""

from __future__ import annotations

import os
from typing import Any

from ..core.text import JS_BYTES, for_spreadsheet, human_bytes
from ..core.text import shortened as shown

#: rows of each top-N table; groups on the coverage chart; distinct boxes on the map; marks of overlap drawn
TABLE_ROWS = 50
COVERAGE_GROUPS = 40
MAP_BOXES = 3000
OVERLAP_MARKS = 2000
#: characters of a path or a label shown (shortened from the left: the end tells files apart)
SHOWN = 90
#: the catalog columns the report reads (never the records' JSON)
REPORT_COLUMNS = ["path", "format", "size", "duration", "success", "error", "error_type", "checksum", "time_start", "time_end",
                  "time_start_iso", "time_end_iso", "calendar", "lat_min", "lat_max", "lon_min", "lon_max", "crosses_antimeridian"]


def epoch_ms(text: Any) -> float:
    """An ISO date's milliseconds since 1970 (what Bokeh's datetime axis draws), NaN when it does not parse.

    NumPy's datetime64 reaches years far outside pandas' nanosecond range
    (a climatology's year 0 or 1). A 360-day "2000-02-30" does not parse
    and is left off the chart.
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


def unique_labels(names: list[str], width: int = SHOWN) -> list[str]:
    """Distinct short labels for distinct paths: the fewest trailing parts that tell them apart, shortened from the
    left; labels still equal get `` (2)``, `` (3)``... (a Bokeh axis refuses a repeated factor and draws nothing)."""
    parts = [n.rstrip("/").split("/") for n in names]
    keep = [1] * len(names)
    for _ in range(max((len(p) for p in parts), default=0)):
        labels = ["/".join(p[-k:]) for p, k in zip(parts, keep)]
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        if all(counts[label] == 1 for label in labels):
            break
        keep = [k + 1 if counts[label] > 1 and k < len(p) else k for p, k, label in zip(parts, keep, labels)]
    out: list[str] = []
    seen: dict[str, int] = {}
    for p, k in zip(parts, keep):
        label = shown(("…/" if k < len(p) else "") + "/".join(p[-k:]), width)
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _folder(paths: Any) -> Any:
    """Each path's folder (``.`` for a bare name), column-wise."""
    if paths.empty:
        return paths.astype(str)
    folders = paths.astype(str).str.rpartition("/")[0]
    return folders.where(folders != "", ".")


def _ms(values: Any) -> Any:
    """A timestamp column as float milliseconds since 1970, NaN where absent."""
    import numpy as np
    import pandas as pd

    if not pd.api.types.is_datetime64_any_dtype(values):
        return np.full(len(values), np.nan)
    raw = values.to_numpy("datetime64[ms]")
    out = raw.astype("int64").astype("float64")
    out[np.isnat(raw)] = np.nan
    return out


def coverage_frame(frame: Any, group_by: str = "folder") -> Any:
    """One row per successful file with a time or space coverage: path, group, start/end (ISO text and ``start_ms``/
    ``end_ms``), calendar, lat/lon bounds, from the catalog's columns. Times in calendars NumPy cannot hold (360-day)
    come from their ISO text when it parses."""
    import numpy as np
    import pandas as pd

    frame = frame[frame["success"].fillna(False).astype(bool)]
    out = pd.DataFrame({"path": frame["path"].astype(str).to_numpy()})
    out["group"] = group_of(frame, group_by).to_numpy()
    for end in ("start", "end"):
        iso = frame.get(f"time_{end}_iso", pd.Series([None] * len(frame), index=frame.index))
        out[end] = iso.to_numpy()
        ms = _ms(frame[f"time_{end}"]) if f"time_{end}" in frame else np.full(len(frame), np.nan)
        missing = np.isnan(ms) & iso.notna().to_numpy()
        if missing.any():  # rare: calendars a timestamp cannot hold
            ms[missing] = [epoch_ms(v) for v in iso.to_numpy()[missing]]
        out[f"{end}_ms"] = ms
    out["calendar"] = frame["calendar"].to_numpy() if "calendar" in frame else None
    for column in ("lat_min", "lat_max", "lon_min", "lon_max"):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64") if column in frame else np.nan
        out[column] = np.where(np.isfinite(values), values, np.nan)
    timed = out[["start_ms", "end_ms"]].notna().all(axis=1)
    boxed = out[["lat_min", "lat_max", "lon_min", "lon_max"]].notna().all(axis=1)
    return out[timed | boxed].reset_index(drop=True)


def group_of(frame: Any, group_by: str) -> Any:
    """The coverage group of each row: its folder (``folder``), or the value of a catalog column."""
    if group_by == "folder":
        return _folder(frame["path"])
    if group_by not in frame:
        raise ValueError(f"--group-by {group_by}: the catalog has no such column")
    return frame[group_by].astype(str).where(frame[group_by].notna(), "(none)")


def coverage_stretches(cov: Any) -> tuple[Any, Any, Any]:
    """Each group's contiguous stretches, its gaps and overlaps, column-wise.

    Files of a group are taken in order of start. A file overlaps when it
    starts before an earlier file of its group ends; it follows a gap when
    the space since the group's latest end is more than twice the group's
    usual space between files (its lower quartile: a run with a missing year
    among four has two usual spaces and one long one) or, for files that
    abut, more than 1% of the usual file's length. Returns (stretches: group, start, end, files;
    groups: group, files, start, end, gaps, overlaps; files: ``cov``'s timed
    rows with ``gap_before`` and ``overlap``).
    """
    import numpy as np

    timed = cov.dropna(subset=["start_ms", "end_ms"]).sort_values(["group", "start_ms", "end_ms"], kind="stable").reset_index(drop=True)
    by = timed.groupby("group", sort=False)
    latest = by["end_ms"].cummax()
    before = latest.groupby(timed["group"], sort=False).shift(1)
    space = timed["start_ms"] - before
    usual = timed["group"].map(space.where(space >= 0).groupby(timed["group"], sort=False).quantile(0.25))
    length = (timed["end_ms"] - timed["start_ms"]).groupby(timed["group"], sort=False).transform("median")
    limit = np.maximum(2 * usual.fillna(0), 0.01 * length.fillna(0))
    timed["gap_before"] = (space > limit).fillna(False).to_numpy() & (space > 0).fillna(False).to_numpy()
    timed["overlap"] = (space < 0).fillna(False)
    timed["overlap_until"] = np.minimum(before.to_numpy(), timed["end_ms"].to_numpy())
    stretch = timed["gap_before"].astype(int).groupby(timed["group"], sort=False).cumsum()
    stretches = timed.groupby(["group", stretch], sort=False).agg(start=("start_ms", "min"), end=("end_ms", "max"),
                                                                 files=("path", "size")).reset_index(level=0)
    groups = timed.groupby("group", sort=False).agg(files=("path", "size"), start=("start_ms", "min"), end=("end_ms", "max"),
                                                    gaps=("gap_before", "sum"), overlaps=("overlap", "sum")).reset_index()
    return stretches.reset_index(drop=True), groups, timed


def _map_boxes(cov: Any) -> Any:
    """Distinct lat/lon boxes (to 0.01 degree) with their file count and one file, longitudes in -180..180, a box
    across the antimeridian as its two halves; the most files first (``MAP_BOXES`` kept), then drawn largest first."""
    import numpy as np
    import pandas as pd

    boxed = cov.dropna(subset=["lat_min", "lat_max", "lon_min", "lon_max"])
    if boxed.empty:
        return pd.DataFrame(columns=["left", "right", "bottom", "top", "files", "path"])
    lon = boxed[["lon_min", "lon_max"]].to_numpy()
    whole = (lon[:, 1] - lon[:, 0]) >= 360
    west, east = ((lon[:, 0] + 180) % 360) - 180, ((lon[:, 1] + 180) % 360) - 180
    east = np.where((east == -180) & (lon[:, 1] > lon[:, 0]), 180.0, east)  # a box that ends on the antimeridian
    west, east = np.where(whole, -180.0, west), np.where(whole, 180.0, east)
    lat = np.clip(boxed[["lat_min", "lat_max"]].to_numpy(), -90, 90)
    boxes = pd.DataFrame({"left": west.round(2), "right": east.round(2), "bottom": lat[:, 0].round(2), "top": lat[:, 1].round(2),
                          "path": boxed["path"].to_numpy()})
    boxes = boxes.groupby(["left", "right", "bottom", "top"], sort=False).agg(files=("path", "size"), path=("path", "first"))
    boxes = boxes.reset_index().sort_values("files", ascending=False, kind="stable").head(MAP_BOXES)
    across = boxes[boxes["left"] > boxes["right"]]
    boxes = pd.concat([boxes[boxes["left"] <= boxes["right"]], across.assign(right=180.0), across.assign(left=-180.0)])
    area = (boxes["right"] - boxes["left"]) * (boxes["top"] - boxes["bottom"])
    return boxes.assign(area=area).sort_values("area", ascending=False, kind="stable").reset_index(drop=True)


def _variables(catalog: str | None) -> Any:
    """The variables table summarised per name: files, units, standard name, folders, one folder (empty without one)."""
    import pandas as pd

    from .read import read_variables

    columns = ["name", "files", "units", "standard_name", "folders", "example_folder"]
    table = read_variables(catalog, columns=["path", "name", "units", "standard_name"]) if catalog else None
    if table is None or table.empty:
        return pd.DataFrame(columns=columns)
    table = table.assign(folder=_folder(table["path"]))
    by = table.groupby("name", sort=False)
    out = by.agg(files=("path", "nunique"), folders=("folder", "nunique"), example_folder=("folder", "first"))
    for column in ("units", "standard_name"):  # the most common value of each name
        pairs = table.dropna(subset=[column]).groupby(["name", column], sort=False).size().reset_index(name="n")
        out[column] = pairs.sort_values("n", ascending=False, kind="stable").drop_duplicates("name").set_index("name")[column]
    return out.reset_index().sort_values(["files", "name"], ascending=[False, True])[columns].reset_index(drop=True)


def _duplicates(frame: Any) -> tuple[Any, Any]:
    """Files whose content checksums are equal: (one row per set: checksum, copies, size, wasted, paths; every file of a set)."""
    import pandas as pd

    ok = frame[frame["success"].fillna(False).astype(bool) & frame["checksum"].notna() & (frame["checksum"] != "")] \
        if "checksum" in frame else frame.iloc[:0]
    copies = ok.groupby("checksum")["path"].transform("size") if not ok.empty else pd.Series(dtype="int64")
    files = ok[copies > 1][["checksum", "path", "size"]].sort_values(["checksum", "path"]) if not ok.empty else ok
    if files.empty:
        return pd.DataFrame(columns=["checksum", "copies", "size", "wasted", "paths"]), files
    sets = files.groupby("checksum").agg(copies=("path", "size"), size=("size", "max"), paths=("path", lambda p: list(p[:3])))
    sets["wasted"] = sets["size"].fillna(0) * (sets["copies"] - 1)
    return sets.reset_index().sort_values("wasted", ascending=False, kind="stable"), files


def _folders(frame: Any) -> Any:
    """Files, bytes, failures and formats by folder, the most bytes first."""
    counted = frame.assign(folder=_folder(frame["path"]), failed=~frame["success"].fillna(False).astype(bool),
                           size=frame["size"].fillna(0))
    by = counted.groupby("folder")
    out = by.agg(files=("path", "size"), bytes=("size", "sum"), failed=("failed", "sum"))
    formats = counted.groupby(["folder", counted["format"].fillna("unknown")]).size().reset_index(name="n")
    formats = formats.sort_values("n", ascending=False, kind="stable").groupby("folder")["format"].agg(lambda f: ", ".join(f[:4]))
    return out.assign(formats=formats).reset_index().sort_values("bytes", ascending=False, kind="stable")


def _clean_numbers(frame: Any) -> Any:
    import numpy as np
    import pandas as pd

    size = pd.to_numeric(frame["size"], errors="coerce")
    duration = pd.to_numeric(frame["duration"], errors="coerce")
    return frame.assign(size=size.where(np.isfinite(size)), duration=duration.where(np.isfinite(duration)))


class Summaries:
    """What the page shows, computed once from the catalog's columns (and its variables table)."""

    def __init__(self, frame: Any, catalog: str | None = None, group_by: str = "folder") -> None:
        self.frame = frame = _clean_numbers(frame)
        self.success = frame["success"].fillna(False).astype(bool)
        self.coverage = coverage_frame(frame, group_by)
        self.stretches, self.groups, self.timed = coverage_stretches(self.coverage)
        self.boxes = _map_boxes(self.coverage)
        self.duplicate_sets, self.duplicate_files = _duplicates(frame)
        self.variables = _variables(catalog)
        self.folders = _folders(frame)
        self.failed = frame[~self.success].sort_values(["error_type", "path"], na_position="last")
        self.group_by = group_by

    def write_rows(self, folder: str) -> dict[str, str]:
        """The rows behind the page's marks as CSV files in ``folder`` (cells that would start a formula quoted)."""
        import pandas as pd

        os.makedirs(folder, exist_ok=True)
        tables = {
            "coverage.csv": self.timed[["group", "path", "start", "end", "calendar", "gap_before", "overlap"]],
            "boxes.csv": self.coverage.dropna(subset=["lat_min"])[["group", "path", "lat_min", "lat_max", "lon_min", "lon_max"]],
            "failed.csv": self.failed[["path", "format", "error_type", "error"]],
            "duplicates.csv": self.duplicate_files,
            "variables.csv": self.variables,
            "folders.csv": self.folders,
            "largest.csv": self.frame.nlargest(TABLE_ROWS * 20, "size")[["path", "format", "size"]],
            "slowest.csv": self.frame.nlargest(TABLE_ROWS * 20, "duration")[["path", "format", "duration", "size"]],
        }
        written = {}
        for name, table in tables.items():
            path = os.path.join(folder, name)
            table = table.copy()
            for column in table.columns:
                if not (pd.api.types.is_numeric_dtype(table[column]) or pd.api.types.is_bool_dtype(table[column])):
                    table[column] = [for_spreadsheet(v) for v in table[column]]
            table.to_csv(f"{path}.tmp", index=False)
            os.replace(f"{path}.tmp", path)
            written[name] = path
        return written


def _table(name: str, data: dict[str, list[Any]], columns: list[tuple[str, str, int]]) -> Any:
    from bokeh.models import ColumnDataSource, DataTable, TableColumn

    source = ColumnDataSource(data, name=name)
    return DataTable(source=source, columns=[TableColumn(field=f, title=t, width=w) for f, t, w in columns], sizing_mode="stretch_width",
                     height=320, index_position=None, autosize_mode="none")  # "fit_columns" fails in Bokeh 3.9: "row is not defined"


def build_report(frame: Any, title: str = "metaextract catalog", catalog: str | None = None, rows: str | None = None,
                 group_by: str = "folder") -> Any:
    """The report's Bokeh layout for a catalog DataFrame (``catalog``: its folder, for the variables table; ``rows``: the
    folder of the CSV files, relative to the page, linked from it)."""
    return _layout(Summaries(frame, catalog, group_by), title, rows)


def _layout(s: Summaries, title: str, rows: str | None) -> Any:  # noqa: PLR0915 - one page, laid out in order
    from bokeh.layouts import column, row
    from bokeh.models import ColumnDataSource, CustomJSTickFormatter, Div, HoverTool, NumeralTickFormatter, TabPanel, Tabs
    from bokeh.plotting import figure

    frame = s.frame

    def link(name: str) -> str:
        return f' <small>(<a href="{_html(rows)}/{name}">{name}</a>)</small>' if rows else ""

    by_format = frame.assign(size=frame["size"].fillna(0)).groupby(frame["format"].fillna("unknown"))
    counts, sizes = by_format.size(), by_format["size"].sum()
    formats = sorted(counts.index)
    fmt_src = ColumnDataSource(dict(format=formats, count=[int(counts[f]) for f in formats], bytes=[int(sizes[f]) for f in formats],
                                    human=[human_bytes(sizes[f], 1024) for f in formats]), name="report-formats")
    count_fig = figure(title="Files by format", x_range=formats or ["(none)"], height=260, sizing_mode="stretch_width", tools="")
    count_fig.vbar(x="format", top="count", width=0.7, source=fmt_src, color="#2a9d8f")
    count_fig.yaxis.formatter = NumeralTickFormatter(format="0,0")
    size_fig = figure(title="Bytes by format", x_range=formats or ["(none)"], height=260, sizing_mode="stretch_width", tools="")
    size_fig.vbar(x="format", top="bytes", width=0.7, source=fmt_src, color="#264653")
    size_fig.yaxis.formatter = CustomJSTickFormatter(code=JS_BYTES)
    for fig in (count_fig, size_fig):
        fig.xaxis.major_label_orientation = 0.8
        fig.add_tools(HoverTool(tooltips=[("format", "@format"), ("files", "@count"), ("bytes", "@human")]))

    # time coverage: one line per group (the most files first, COVERAGE_GROUPS of them), its stretches, gaps and overlaps
    groups = s.groups.sort_values(["files", "group"], ascending=[False, True], kind="stable").head(COVERAGE_GROUPS)
    groups = groups.sort_values("group", ascending=False, kind="stable")  # Bokeh draws the first factor at the bottom
    labels = dict(zip(groups["group"], unique_labels(list(groups["group"]))))
    stretches = s.stretches[s.stretches["group"].isin(labels)]
    stretch_src = ColumnDataSource(dict(group=list(stretches["group"]), label=[labels[g] for g in stretches["group"]],
                                        start=list(stretches["start"]), end=list(stretches["end"]), files=list(stretches["files"])),
                                   name="report-timeline")
    marks = s.timed[s.timed["overlap"] & s.timed["group"].isin(labels)].head(OVERLAP_MARKS)
    overlap_src = ColumnDataSource(dict(label=[labels[g] for g in marks["group"]], path=list(marks["path"]), start=list(marks["start_ms"]),
                                        end=list(marks["overlap_until"])), name="report-overlaps")
    group_src = ColumnDataSource(dict(group=list(groups["group"]), label=[labels[g] for g in groups["group"]], files=list(groups["files"]),
                                      start=list(groups["start"]), end=list(groups["end"]), gaps=[int(g) for g in groups["gaps"]],
                                      overlaps=[int(o) for o in groups["overlaps"]]), name="report-groups")
    more = len(s.groups) - len(groups)
    timeline = figure(title=f"Time coverage of {len(s.timed)} files in {len(s.groups)} groups by {s.group_by}"
                            + (f" (the {len(groups)} with the most files)" if more else ""),
                      y_range=list(labels.values()) or ["(none)"], x_axis_type="datetime",
                      height=max(200, 20 * len(labels) + 90), sizing_mode="stretch_width", tools="xpan,xwheel_zoom,reset")
    lines = timeline.hbar(y="label", left="start", right="end", height=0.9, source=group_src, fill_alpha=0, line_alpha=0)
    timeline.hbar(y="label", left="start", right="end", height=0.55, source=stretch_src, color="#e76f51")
    timeline.hbar(y="label", left="start", right="end", height=0.25, source=overlap_src, color="#1d3557")
    timeline.add_tools(HoverTool(renderers=[lines], tooltips=[("group", "@group"), ("files", "@files"), ("from", "@start{%F}"),
                                                              ("to", "@end{%F}"), ("gaps", "@gaps"), ("overlapping files", "@overlaps")],
                                 formatters={"@start": "datetime", "@end": "datetime"}))
    timeline_note = Div(text="Each bar is a stretch of files without a gap; a break between bars is a gap (more than twice the usual "
                             "space between the group's files, its lower quartile); a dark mark is a file that overlaps an earlier one."
                             + link("coverage.csv"), sizing_mode="stretch_width")

    boxes = s.boxes
    space_src = ColumnDataSource(dict(left=list(boxes["left"]), right=list(boxes["right"]), bottom=list(boxes["bottom"]),
                                      top=list(boxes["top"]), files=list(boxes["files"]), path=list(boxes["path"])), name="report-space")
    boxed = int(s.coverage["lat_min"].notna().sum())
    space = figure(title=f"Spatial coverage of {boxed} files: {len(boxes)} distinct latitude/longitude boxes, the smallest on top",
                   x_range=(-180, 180), y_range=(-90, 90), height=380, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset",
                   x_axis_label="longitude", y_axis_label="latitude")
    space.quad(left="left", right="right", bottom="bottom", top="top", source=space_src, fill_alpha=0.12, line_color="#1d3557",
               fill_color="#457b9d")
    space.add_tools(HoverTool(tooltips=[("files", "@files"), ("e.g.", "@path"), ("lon", "@left to @right"), ("lat", "@bottom to @top")]))

    failed = s.failed
    kinds = failed.groupby(failed["error_type"].fillna("unknown")).size().sort_values(ascending=False).head(20)
    err_src = ColumnDataSource(dict(error_type=list(kinds.index), count=[int(n) for n in kinds]), name="report-error-types")
    err_fig = figure(title=f"Failures by error type ({len(failed)} files)", x_range=list(kinds.index) or ["(none)"], height=220,
                     sizing_mode="stretch_width", tools="")
    err_fig.vbar(x="error_type", top="count", width=0.7, source=err_src, color="#d62828")
    err_fig.visible = not failed.empty

    largest = frame.nlargest(TABLE_ROWS, "size")
    slowest = frame.nlargest(TABLE_ROWS, "duration")
    shown_failed = failed.head(TABLE_ROWS * 4)
    dup = s.duplicate_sets.head(TABLE_ROWS)
    var = s.variables.head(TABLE_ROWS * 4)
    fold = s.folders.head(TABLE_ROWS)
    tabs = Tabs(sizing_mode="stretch_width", tabs=[
        TabPanel(title=f"Largest ({len(largest)})", child=_table("report-largest", dict(
            path=list(largest["path"]), shown=[shown(p) for p in largest["path"]], format=list(largest["format"].fillna("")),
            size=[human_bytes(v, 1024) for v in largest["size"]]), [("size", "size", 80), ("format", "format", 80), ("shown", "path", 1000)])),
        TabPanel(title=f"Slowest ({len(slowest)})", child=_table("report-slowest", dict(
            path=list(slowest["path"]), shown=[shown(p) for p in slowest["path"]], format=list(slowest["format"].fillna("")),
            duration=[f"{d:.3f} s" for d in slowest["duration"]], size=[human_bytes(v, 1024) for v in slowest["size"]]),
            [("duration", "time", 80), ("format", "format", 80), ("size", "size", 80), ("shown", "path", 1000)])),
        TabPanel(title=f"Failed ({len(failed)})", child=_table("report-failures", dict(
            path=list(shown_failed["path"]), shown=[shown(p, 70) for p in shown_failed["path"]],
            error_type=list(shown_failed["error_type"].fillna("unknown")), error=[str(e)[:300] for e in shown_failed["error"].fillna("")]),
            [("error_type", "error type", 120), ("shown", "path", 420), ("error", "error", 600)])),
        TabPanel(title=f"Duplicates ({len(s.duplicate_sets)} sets)", child=_table("report-duplicates", dict(
            checksum=list(dup["checksum"]), copies=[int(c) for c in dup["copies"]], size=[human_bytes(v, 1024) for v in dup["size"]],
            wasted=[human_bytes(v, 1024) for v in dup["wasted"]], paths=["; ".join(shown(p, 60) for p in ps) for ps in dup["paths"]]),
            [("copies", "copies", 60), ("size", "size each", 80), ("wasted", "wasted", 80), ("paths", "files (first 3)", 800)])),
        TabPanel(title=f"Variables ({len(s.variables)})", child=_table("report-variables", dict(
            name=list(var["name"]), files=[int(f) for f in var["files"]], units=list(var["units"].fillna("")),
            standard_name=list(var["standard_name"].fillna("")), folders=[int(f) for f in var["folders"]],
            example=[shown(f, 60) for f in var["example_folder"]]),
            [("name", "variable", 140), ("files", "files", 60), ("units", "units", 100), ("standard_name", "standard name", 220),
             ("folders", "folders", 60), ("example", "in, e.g.", 400)])),
        TabPanel(title=f"Folders ({len(s.folders)})", child=_table("report-folders", dict(
            folder=list(fold["folder"]), shown=[shown(f) for f in fold["folder"]], files=[int(n) for n in fold["files"]],
            bytes=[human_bytes(b, 1024) for b in fold["bytes"]], failed=[int(n) for n in fold["failed"]], formats=list(fold["formats"])),
            [("bytes", "bytes", 80), ("files", "files", 70), ("failed", "failed", 60), ("formats", "formats", 160), ("shown", "folder", 900)])),
    ])
    files = ", ".join(f'<a href="{_html(rows)}/{n}">{n}</a>' for n in ("largest.csv", "slowest.csv", "failed.csv", "duplicates.csv",
                                                                          "variables.csv", "folders.csv", "boxes.csv")) if rows else ""
    total = float(frame["size"].fillna(0).sum())
    summary = Div(text=f"<h1>{_html(title)}</h1><p>{len(frame):,} files, {human_bytes(total, 1024)}; {int(s.success.sum()):,} "
                       f"succeeded, {int((~s.success).sum()):,} failed; {len(s.coverage):,} with a time or space coverage; "
                       f"{len(s.duplicate_sets):,} sets of duplicates.</p>", name="report-summary", sizing_mode="stretch_width")
    return column(summary, row(count_fig, size_fig, sizing_mode="stretch_width"), timeline, timeline_note, space, err_fig,
                  Div(text="<h3>Files</h3>" + (f"<p><small>Every row behind these tables: {files}</small></p>" if files else "")),
                  tabs, sizing_mode="stretch_width")


def _html(text: str) -> str:
    from html import escape

    return escape(text)


def read_report_frame(catalog: str) -> Any:
    """The catalog's columns the report reads (not the records' JSON), one row per file."""
    from .read import read_catalog
    from .schema import catalog_columns

    have = {name for name, _ in catalog_columns()}
    return read_catalog(catalog, columns=[c for c in REPORT_COLUMNS if c in have])


def rows_folder(output: str) -> str:
    """Where the CSV files behind a page go: ``report.html`` -> ``report.rows/``."""
    stem = output[:-5] if output.endswith(".html") else output
    return f"{stem}.rows"


def write_report(catalog: str, output: str | None = None, title: str | None = None, group_by: str = "folder") -> str:
    """Write the report of ``catalog`` as one self-contained HTML file and its rows beside it (``rows_folder``); returns its path."""
    output = output or os.path.join(catalog, "_report.html")
    _write_page(Summaries(read_report_frame(catalog), catalog, group_by), output, title or _title(catalog))
    return output


def _title(catalog: str) -> str:
    return f"metaextract catalog: {os.path.abspath(catalog)}"


def _write_page(summaries: Summaries, output: str, title: str) -> None:
    """The page and its rows, written (the page through a temporary, replaced whole)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    rows = rows_folder(output)
    summaries.write_rows(rows)
    html = file_html(_layout(summaries, title, os.path.basename(rows)), INLINE, title)
    tmp = f"{output}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(html)
    os.replace(tmp, output)


def report(catalog: str, output: str | None = None, title: str | None = None, group_by: str = "folder") -> Any:
    """The catalog report: written to ``output`` when given (with its rows beside it), shown inline in a notebook;
    returns the Bokeh layout. ``group_by``: the time coverage's groups, ``folder`` or a catalog column."""
    title = title or _title(catalog)
    summaries = Summaries(read_report_frame(catalog), catalog, group_by)  # computed once, for the file and the notebook
    if output is not None:
        _write_page(summaries, output, title)
    layout = _layout(summaries, title, None)
    from ..diagnostics.progress import in_notebook

    if in_notebook():
        from bokeh.io import output_notebook, show
        from bokeh.resources import INLINE

        output_notebook(INLINE, hide_banner=True)
        show(layout)
    return layout
