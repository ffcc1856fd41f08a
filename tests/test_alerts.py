"""The shipped Prometheus alerting rules: checked and unit-tested by promtool, and evaluated against a real scan's /metrics.

promtool comes from Debian's prometheus package (installed by .ci/run and
the README's test command).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import yaml

from metaextract_dask import ParallelExtractionConfig, ParallelExtractor
from metaextract_dask.demo import make_bin
from metaextract_dask.diagnostics.alerts import rules
from metaextract_dask.execution.cluster import ClientScope

ALERTS = [r["alert"] for r in rules()["groups"][0]["rules"]]


def write_rules(folder) -> str:
    path = os.path.join(folder, "rules.yml")
    out = subprocess.run([sys.executable, "-m", "metaextract_dask.cli", "alerts", "-o", path], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return path


def promtool_test(folder, tests: list[dict]) -> subprocess.CompletedProcess:
    rules_path = write_rules(folder)
    spec = os.path.join(folder, "tests.yml")
    with open(spec, "w") as f:
        yaml.safe_dump({"rule_files": [os.path.basename(rules_path)], "evaluation_interval": "1m", "tests": tests}, f)
    return subprocess.run(["promtool", "test", "rules", spec], capture_output=True, text=True, cwd=folder)


def expected(alert: str, labels: dict[str, str] | None = None) -> list[dict]:
    """The alert as promtool reports it: the rule's own labels and annotations (static text)."""
    rule = next(r for r in rules()["groups"][0]["rules"] if r["alert"] == alert)
    return [{"exp_labels": {**rule["labels"], **(labels or {})}, "exp_annotations": rule["annotations"]}]


@pytest.mark.integration
def test_the_cli_writes_rules_promtool_accepts(tmp_path):
    path = write_rules(tmp_path)
    check = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
    assert check.returncode == 0 and f"SUCCESS: {len(ALERTS)} rules found" in check.stdout, check.stdout + check.stderr
    text = open(path).read()
    assert text.startswith("# Prometheus alerting rules") and len(ALERTS) == 5


@pytest.mark.integration
def test_each_rule_fires_in_its_scenario_and_stays_silent_when_healthy(tmp_path):
    failing = {"interval": "1m", "input_series": [
        {"series": 'metaextract_files_total{type="hdf5",outcome="success"}', "values": "0+10x40"},
        {"series": 'metaextract_files_total{type="hdf5",outcome="failed"}', "values": "0+3x40"},
        {"series": 'metaextract_errors_total{error_type="CorruptFileError"}', "values": "0+3x40"}],
        "alert_rule_test": [{"eval_time": "3m", "alertname": "MetaextractErrorRateHigh", "exp_alerts": []},  # pending
                            {"eval_time": "15m", "alertname": "MetaextractErrorRateHigh", "exp_alerts": expected("MetaextractErrorRateHigh")},
                            {"eval_time": "15m", "alertname": "MetaextractHardFailuresClimbing", "exp_alerts": []}]}
    stalled = {"interval": "1m", "input_series": [
        {"series": "metaextract_files_remaining", "values": "50x40"},
        {"series": "metaextract_last_progress_timestamp_seconds", "values": "0+60x5 300x35"}],  # progress stops at 5m
        "alert_rule_test": [{"eval_time": "10m", "alertname": "MetaextractScanStalled", "exp_alerts": []},
                            {"eval_time": "20m", "alertname": "MetaextractScanStalled", "exp_alerts": expected("MetaextractScanStalled")}]}
    lost = {"interval": "1m", "input_series": [
        {"series": "metaextract_workers_lost_total", "values": "0x10 1x30"}],
        "alert_rule_test": [{"eval_time": "8m", "alertname": "MetaextractWorkersLost", "exp_alerts": []},
                            {"eval_time": "12m", "alertname": "MetaextractWorkersLost", "exp_alerts": expected("MetaextractWorkersLost")}]}
    crashes = {"interval": "1m", "input_series": [
        {"series": 'metaextract_errors_total{error_type="ExtractionTimeout"}', "values": "0x10 0+1x30"},
        {"series": 'metaextract_errors_total{error_type="SandboxKilledError"}', "values": "0x40"}],
        "alert_rule_test": [{"eval_time": "9m", "alertname": "MetaextractHardFailuresClimbing", "exp_alerts": []},
                            {"eval_time": "20m", "alertname": "MetaextractHardFailuresClimbing",
                             "exp_alerts": expected("MetaextractHardFailuresClimbing")}]}
    slow = {"interval": "1m", "input_series": [  # 1 GB a minute for an hour, then 10 MB a minute
        {"series": 'metaextract_bytes_total{type="binary"}', "values": "0+1000000000x60 60000000000+10000000x40"},
        {"series": "metaextract_files_remaining", "values": "100x100"}],
        "alert_rule_test": [{"eval_time": "50m", "alertname": "MetaextractThroughputLow", "exp_alerts": []},
                            {"eval_time": "85m", "alertname": "MetaextractThroughputLow", "exp_alerts": expected("MetaextractThroughputLow")}]}
    healthy = {"interval": "1m", "input_series": [
        {"series": 'metaextract_files_total{type="hdf5",outcome="success"}', "values": "0+10x100"},
        {"series": 'metaextract_files_total{type="hdf5",outcome="failed"}', "values": "0x100"},
        {"series": 'metaextract_errors_total{error_type="CorruptFileError"}', "values": "0+1x100"},  # bad files are no crash
        {"series": 'metaextract_bytes_total{type="hdf5"}', "values": "0+1000000000x100"},
        {"series": "metaextract_workers_lost_total", "values": "0x100"},
        {"series": "metaextract_files_remaining", "values": "1000-10x100"},
        {"series": "metaextract_last_progress_timestamp_seconds", "values": "0+60x100"}],
        "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": []} for a in ALERTS for t in ("20m", "90m")]}
    done = promtool_test(tmp_path, [failing, stalled, lost, crashes, slow, healthy])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def scrape(client) -> str:
    from metaextract_dask.execution.cluster import dashboard_url

    base = dashboard_url(client).rsplit("/", 1)[0]  # an in-memory cluster's link names the host; it listens on loopback
    return urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()


def samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every metaextract_ sample (histograms left out)."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(metaextract_[a-z_]+(?:\{.*\})?) ([0-9.e+-]+)$", line)
        if m and "_bucket" not in m.group(1) and "duration_seconds" not in m.group(1):
            out[m.group(1)] = float(m.group(2))
    return out


def flaky(path):
    time.sleep(0.05)
    if path.endswith(("3.bin", "6.bin", "9.bin")):
        raise ValueError("bad value in file")
    return {"format": "unknown", "bytes": os.path.getsize(path)}


@pytest.mark.integration
def test_the_rules_evaluated_on_a_real_scans_metrics(tmp_path):
    """A real run on a real scheduler: its /metrics, scraped during and after, drive the rules through promtool.

    The scraped counters are replayed as a scan that reached those values
    steadily over ten minutes (promtool evaluates series, not one scrape):
    a third of the files failing makes MetaextractErrorRateHigh fire and
    nothing else; the gauges scraped during the run (files remaining, last
    progress) keep MetaextractScanStalled silent.
    """
    files = [make_bin(tmp_path / f"{i}.bin", 1000, i) for i in range(30)]
    during: dict[str, float] = {}
    with ClientScope(model="thread_pool", max_workers=2, dashboard="127.0.0.1:0") as client:
        done = {}

        def run():
            done["out"] = ParallelExtractor(ParallelExtractionConfig(batch_size=2, retry_limit=0), flaky, client=client).extract(files)

        thread = threading.Thread(target=run)
        thread.start()
        while thread.is_alive() and "metaextract_files_remaining" not in during:
            now = samples(scrape(client))
            if now.get("metaextract_files_remaining", 0) > 0:
                during = {**now, "scraped_at": time.time()}
            time.sleep(0.05)
        thread.join()
        after = samples(scrape(client))
    results, _metrics = done["out"]
    failed = sum(not r.success for r in results)
    assert failed == 9 and sum(v for k, v in after.items() if k.startswith("metaextract_files_total") and 'outcome="failed"' in k) == failed
    assert during["metaextract_files_remaining"] > 0 and during["metaextract_scans_running"] == 1
    assert after["metaextract_files_remaining"] == 0 and "metaextract_last_progress_timestamp_seconds" not in after
    used = set(re.findall(r"metaextract_[a-z_]+", " ".join(r["expr"] for r in rules()["groups"][0]["rules"])))
    served = {name.split("{")[0] for name in {**during, **after}}
    assert used <= served, used - served  # every series a rule reads is one the scheduler serves

    stale = during["scraped_at"] - during["metaextract_last_progress_timestamp_seconds"]
    series = [{"series": name, "values": f"0+{value / 10:g}x10 {value:g}x10"} for name, value in after.items()
              if name.endswith("_total") or "_total{" in name]
    series += [{"series": "metaextract_files_remaining", "values": f"{during['metaextract_files_remaining']:g}x20"},
               {"series": "metaextract_last_progress_timestamp_seconds", "values": "0+60x20"}]  # progress as scraped: recent
    assert stale < 60
    tests = [{"interval": "1m", "input_series": series, "alert_rule_test":
              [{"eval_time": "9m", "alertname": "MetaextractErrorRateHigh", "exp_alerts": expected("MetaextractErrorRateHigh")}]
              + [{"eval_time": "9m", "alertname": a, "exp_alerts": []} for a in ALERTS if a != "MetaextractErrorRateHigh"]}]
    done_test = promtool_test(tmp_path, tests)
    assert done_test.returncode == 0, done_test.stdout + done_test.stderr


@pytest.mark.unit
def test_the_docs_page_shows_the_rules_as_printed():
    from metaextract_dask.diagnostics.alerts import rules_yaml

    page = open(os.path.join(os.path.dirname(__file__), "..", "docs", "alerts.md")).read()
    assert rules_yaml() in page
    assert all(f"`{a}`" in page for a in ALERTS)


def slow(path):
    time.sleep(0.2)
    return {"format": "unknown", "bytes": os.path.getsize(path)}


@pytest.mark.integration
def test_a_worker_killed_during_a_scan_counts_as_lost(tmp_path):
    """metaextract_workers_lost_total counts a worker process killed mid-run, not the workers a cluster closes after."""
    import signal

    files = [make_bin(tmp_path / f"{i}.bin", 1000, i) for i in range(40)]
    with ClientScope(model="process_pool", max_workers=2, dashboard="127.0.0.1:0") as client:
        before = samples(scrape(client)).get("metaextract_workers_lost_total", 0)
        done = {}

        def run():
            done["out"] = ParallelExtractor(ParallelExtractionConfig(batch_size=1), slow, client=client).extract(files)

        thread = threading.Thread(target=run)
        thread.start()
        while samples(scrape(client)).get("metaextract_files_remaining", 0) in (0, len(files)) and thread.is_alive():
            time.sleep(0.05)
        victim = next(iter(client.run(os.getpid).values()))
        os.kill(victim, signal.SIGKILL)
        thread.join()
        after = samples(scrape(client))
    results, _ = done["out"]
    assert len(results) == len(files) and all(r.success for r in results)  # its files were retried elsewhere
    assert after["metaextract_workers_lost_total"] - before == 1
