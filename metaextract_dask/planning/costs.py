"""Each file's cost predicted from past scans, to order work and size batches by time instead of bytes.

A catalog row keeps a file's path, size and extraction ``duration``. The
model is one robust line per kind of file in log-log space,
``log(duration) = a + b * log(size)``, fitted by Theil-Sen (the median of
pairwise slopes, then the median intercept). A file's kind is its name's
extension (``.nc``, ``.h5``, ``.mp4``; ``(none)``): known before the file is
opened, so predicting a million files' costs reads none of them (detecting
the format from content cost 280 us a file, serially, on the client), and
the same for training and prediction (a ``.nc`` file is netcdf3 or netcdf4
only once opened). That choice of model:
- it needs only NumPy, which the catalog already uses, and fits in milliseconds;
- it shrugs off the outliers real scans have (a file that waited on a cold disk);
- it captures what size-only ordering misses: a 50 KB netCDF file of 300
  variables costs more than a 100 MB binary, because cost per byte differs by
  kind of file by orders of magnitude.
A kind with fewer than ``MIN_ROWS`` rows uses the fit over all rows. With
no history at all there is no model, and work is ordered by size as before.
Gradient-boosted trees were not chosen: no such library is a dependency, and
two features (extension, size) do not need them.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

#: the saved model's layout; a file of another version is not used
MODEL_VERSION = 1
FEATURES = ["extension", "log_size"]
#: rows of one kind below which that kind uses the fit over every kind
MIN_ROWS = 3
#: pairs sampled per fit (Theil-Sen is quadratic): 300 rows at most
MAX_FIT_ROWS = 300
#: the model's file beside a catalog
SUFFIX = ".costs.json"


@dataclass
class Line:
    """``log(duration) = a + b * log(size + 1)``, fitted on ``n`` rows."""

    a: float
    b: float
    n: int

    def seconds(self, size: int) -> float:
        return math.exp(self.a + self.b * math.log(max(size, 0) + 1))


def theil_sen(x: list[float], y: list[float]) -> Line:
    """The robust line through (x, y): median pairwise slope, median intercept."""
    import numpy as np

    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(xs) > MAX_FIT_ROWS:  # a deterministic spread sample keeps the fit quadratic in a bounded n
        pick = np.linspace(0, len(xs) - 1, MAX_FIT_ROWS).astype(int)
        order = np.argsort(xs)
        xs, ys = xs[order][pick], ys[order][pick]
    i, j = np.triu_indices(len(xs), k=1)
    dx = xs[j] - xs[i]
    keep = np.abs(dx) > 1e-9
    b = float(np.median((ys[j] - ys[i])[keep] / dx[keep])) if keep.any() else 0.0
    b = min(max(b, 0.0), 2.0)  # cost never falls with size, nor grows faster than quadratically
    a = float(np.median(ys - b * xs))
    return Line(a, b, int(len(x)))


@dataclass
class CostModel:
    """Per-kind (extension) lines and the line over every kind; ``predict`` gives seconds."""

    per_kind: dict[str, Line]
    overall: Line
    rows: int
    sources: list[str] = field(default_factory=list)
    fitted_at: float = field(default_factory=time.time)

    def predict(self, kind: str | None, size: int) -> float:
        line = self.per_kind.get(kind or "", self.overall)
        return line.seconds(size)

    def to_json(self) -> dict[str, Any]:
        return {"version": MODEL_VERSION, "features": FEATURES, "kind": "per-extension Theil-Sen line of log(duration) on log(size)",
                "rows": self.rows, "sources": self.sources, "fitted_at": self.fitted_at,
                "overall": vars(self.overall), "per_extension": {k: vars(v) for k, v in sorted(self.per_kind.items())}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CostModel":
        if not isinstance(data, dict) or data.get("version") != MODEL_VERSION or data.get("features") != FEATURES:
            raise ValueError(f"not a cost model of version {MODEL_VERSION} with features {FEATURES}")

        def line(d: Any) -> Line:
            out = Line(float(d["a"]), float(d["b"]), int(d["n"]))
            if not all(math.isfinite(v) for v in (out.a, out.b)):
                raise ValueError("a line with a non-finite coefficient")
            return out

        return cls({str(k): line(v) for k, v in data["per_extension"].items()}, line(data["overall"]), int(data["rows"]),
                   [str(s) for s in data.get("sources", [])], float(data.get("fitted_at", 0.0)))


def kind_of(path: str) -> str:
    """A file's kind for the model: its name's extension, lower case (``(none)`` without one)."""
    return os.path.splitext(str(path))[1].lower() or "(none)"


def training_rows(frame: Any) -> list[tuple[str, int, float]]:
    """(kind, size, duration) of each successful row with a positive duration."""
    out = []
    for path, size, duration, ok in zip(frame["path"], frame["size"], frame["duration"], frame["success"]):
        if ok is True or ok == 1:
            try:
                s, d = int(size), float(duration)
            except (TypeError, ValueError):
                continue
            if s >= 0 and d > 0 and math.isfinite(d):
                out.append((kind_of(path), s, d))
    return out


def fit(rows: Iterable[tuple[str, int, float]], sources: list[str] | None = None) -> CostModel | None:
    """The model of these (kind, size, seconds) rows, or None when there are too few."""
    rows = list(rows)
    if len(rows) < MIN_ROWS:
        return None
    by_kind: dict[str, list[tuple[int, float]]] = {}
    for kind, size, seconds in rows:
        by_kind.setdefault(kind, []).append((size, seconds))

    def line(points: list[tuple[int, float]]) -> Line:
        return theil_sen([math.log(s + 1) for s, _ in points], [math.log(d) for _, d in points])

    return CostModel({kind: line(pts) for kind, pts in by_kind.items() if len(pts) >= MIN_ROWS},
                     line([(s, d) for _, s, d in rows]), len(rows), sources or [])


def size_only(rows: Iterable[tuple[str, int, float]]) -> Line:
    """The baseline: one line over every kind of file, as ordering by size assumes."""
    pts = list(rows)
    return theil_sen([math.log(s + 1) for _, s, _ in pts], [math.log(d) for _, _, d in pts])


def model_path(catalog: str) -> str:
    return os.path.normpath(catalog) + SUFFIX


def save(model: CostModel, path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(model.to_json(), f, indent=1)
    os.replace(tmp, path)


def load(path: str) -> CostModel:
    """A saved model; ValueError when it is not one (corrupt, another version)."""
    from ..catalog.trust import load_json

    try:
        if os.path.islink(path):
            raise ValueError("a symbolic link, not a model a scan saved")
        with open(path, "rb") as f:
            return CostModel.from_json(load_json(f.read(1 << 24), "its JSON"))
    except Exception as exc:  # noqa: BLE001 - a model is input: whatever is wrong with it, it is not used
        raise ValueError(f"{path}: not a usable cost model ({type(exc).__name__}: {exc})") from None


def learn(sources: Iterable[str]) -> tuple[CostModel | None, list[str]]:
    """A model from catalogs and saved models (the newest model file wins over nothing); (model, warnings).

    Catalog folders are pooled and fitted; a ``.json`` source is a saved
    model, used when no catalog gave rows. What cannot be read is a warning:
    work is then ordered by size.
    """
    from ..catalog.read import _read_part, checked_parts, part_files

    rows: list[tuple[str, int, float]] = []
    used, saved, warnings = [], None, []
    for src in sources:
        src = os.fspath(src)
        if os.path.isdir(src) and part_files(src):
            try:
                parts = [r for p in checked_parts(src, warn=False) for r in _read_part(p, ["path", "size", "duration", "success"])]
                found = training_rows({k: [r.get(k) for r in parts] for k in ("path", "size", "duration", "success")})
            except Exception as exc:  # noqa: BLE001 - a damaged catalog teaches nothing; the scan goes on
                warnings.append(f"{src}: its rows could not be read for the cost model ({exc})")
                continue
            rows += found
            used.append(src)
        elif src.endswith(".json") or os.path.isfile(src):
            try:
                saved = load(src)
            except ValueError as exc:
                warnings.append(f"{exc}; ordering work by size")
        elif not os.path.exists(src):
            warnings.append(f"{src}: no such catalog or cost model; ordering work by size")
    model = fit(rows, used) if rows else None
    return (model or saved), warnings
