"""The cost model learned from catalogs: better than size alone on a real scan, used to order work, and safe to lose."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import warnings

import netCDF4
import numpy as np
import public_corpus
import pytest

from metaextract_dask import read_catalog, scan
from metaextract_dask.demo import make_bin
from metaextract_dask.planning import costs

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real_rows(tmp_path_factory):
    """(format, size, seconds) of every successful row of a real scan of the public corpus."""
    corpus = os.path.join(public_corpus.cache_dir(), "corpus-v1")
    public_corpus.build(corpus)
    for folder, _, names in os.walk(corpus):  # a warm page cache: the model learns the files' work, not a cold disk's
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                while f.read(1 << 20):
                    pass
    catalog = tmp_path_factory.mktemp("costs") / "cat"
    frame = scan(corpus, str(catalog), progress=False)
    return frame, costs.training_rows(frame)


def test_predictions_beat_size_alone_on_held_out_rows_of_a_real_scan(real_rows):
    frame, _ = real_rows
    fold = frame["path"].map(lambda p: int(hashlib.sha256(p.encode()).hexdigest(), 16) % 3)
    ours, theirs = [], []
    for k in range(3):  # three-fold cross-validation: every row is held out once, so the medians rest on every row
        train, test = costs.training_rows(frame[fold != k]), costs.training_rows(frame[fold == k])
        assert len(train) >= 60 and len(test) >= 30 and len({kind for kind, _, _ in test}) >= 3
        model, baseline = costs.fit(train), costs.size_only(train)
        ours += [abs(model.predict(f, s) - d) for f, s, d in test]
        theirs += [abs(baseline.seconds(s) - d) for _, s, d in test]
    assert statistics.median(ours) < statistics.median(theirs), (statistics.median(ours), statistics.median(theirs))


def expensive_netcdf(path, variables=150):
    """A small file that costs much: many variables, each read and summarised."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 20)
        for i in range(variables):
            ds.createVariable(f"v{i}", "f4", ("x",))[:] = np.arange(20.0) + i


def mixed(folder):
    folder.mkdir()
    for i in range(3):
        make_bin(folder / f"big{i}.bin", 2_000_000 + i, i)  # large and cheap (below the streaming threshold: batched)
        expensive_netcdf(folder / f"many{i}.nc")  # small and costly
    return folder


def started_order(catalog) -> list[str]:
    rows = read_catalog(str(catalog)).sort_values("started_at")
    return [os.path.basename(p) for p in rows["path"]]


def test_a_learned_model_starts_the_costliest_files_first_and_is_saved_beside_the_catalog(tmp_path):
    data = mixed(tmp_path / "data")
    first = tmp_path / "first"
    scan(str(data), str(first), workers=1, progress=False)
    assert started_order(first)[:3] == ["big2.bin", "big1.bin", "big0.bin"]  # no history: by size
    assert not os.path.exists(costs.model_path(str(first)))
    learned = tmp_path / "learned"
    scan(str(data), str(learned), workers=1, learn_from=[str(first)], progress=False)
    assert all(name.endswith(".nc") for name in started_order(learned)[:3])  # by predicted cost
    saved = json.load(open(costs.model_path(str(learned))))
    assert saved["version"] == costs.MODEL_VERSION and saved["features"] == ["extension", "log_size"]
    assert saved["sources"] == [str(first)] and set(saved["per_extension"]) == {".nc", ".bin"}
    model = costs.load(costs.model_path(str(learned)))
    assert model.predict(".nc", 80_000) > model.predict(".bin", 2_000_000)


def test_a_corrupt_or_missing_model_falls_back_to_size_order_with_a_warning(tmp_path):
    data = mixed(tmp_path / "data")
    bad = tmp_path / "bad.costs.json"
    bad.write_text('{"version": 1, "features": ["extension", "log_size"], "per_extension": {".bin": {"a": "x"}}')
    for source, why in ((bad, "not a usable cost model"), (tmp_path / "nowhere", "no such catalog or cost model")):
        out = tmp_path / f"cat-{why[:6].replace(' ', '')}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scan(str(data), str(out), workers=1, learn_from=[str(source)], progress=False)
        said = [str(w.message) for w in caught if why in str(w.message)]
        assert said and "ordering work by size" in said[0]
        assert started_order(out)[:3] == ["big2.bin", "big1.bin", "big0.bin"]


def test_the_dashboard_shows_predicted_and_actual_seconds_per_type(tmp_path):
    from metaextract_dask import ParallelExtractionConfig, ParallelExtractor
    from metaextract_dask.diagnostics.dashboard import ExtractionPage
    from metaextract_dask.execution.cluster import ClientScope

    data = mixed(tmp_path / "data")
    model = costs.fit([(".bin", 2_000_000, 0.01)] * 5 + [(".nc", 30_000, 0.2)] * 5)
    files = sorted(str(p) for p in data.iterdir())
    with ClientScope(model="thread_pool", max_workers=2, dashboard="127.0.0.1:0") as client:
        config = ParallelExtractionConfig(cost_model=model)
        extractor = ParallelExtractor(config, client=client)
        results, _ = extractor.extract(files)
        page = ExtractionPage(client.cluster.scheduler)
        page.update()
        shown = dict(page.costs.data)
    assert all(r.success for r in results)
    by_type = dict(zip(shown["type"], zip(shown["predicted"], shown["actual"], shown["files"])))
    assert by_type[".bin"][0] == pytest.approx(sum(model.predict(".bin", 2_000_000 + i) for i in range(3)), rel=0.01)
    assert by_type[".nc"][2] == 3 and by_type[".nc"][1] > 0
    actual = {}
    for r in results:
        kind = ".nc" if r.file_path.endswith(".nc") else ".bin"
        actual[kind] = actual.get(kind, 0.0) + r.duration
    assert by_type[".nc"][1] == pytest.approx(actual[".nc"], rel=0.05)
