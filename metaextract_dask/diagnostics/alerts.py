"""Prometheus alerting rules over the ``metaextract_*`` series the scheduler serves on ``/metrics``.

``metaextract alerts > metaextract-rules.yml`` writes them; Prometheus loads
the file with ``rule_files``. Each rule is a situation an operator acts on:
files failing, a scan that stopped moving, workers lost, timeouts or parser
crashes climbing, throughput far below the scan's own median. Thresholds come
from ``dask.config`` (``metaextract.alerts.*``, defaults in metaextract.yaml).
"""

from __future__ import annotations

from typing import Any

from ..core.settings import setting

#: error types that mean a file's parser hung or died (not a bad file)
HARD_FAILURES = ("ExtractionTimeout", "ParserCrashError", "SandboxKilledError")


def thresholds() -> dict[str, Any]:
    """The configured thresholds, with their names in metaextract.yaml."""
    return {
        "error_rate": float(setting("alerts.error-rate")),
        "error_rate_for": str(setting("alerts.error-rate-for")),
        "stall_seconds": float(setting("alerts.stall-seconds")),
        "hard_failures": int(setting("alerts.hard-failures")),
        "window": str(setting("alerts.window")),
        "throughput_fraction": float(setting("alerts.throughput-fraction")),
        "throughput_for": str(setting("alerts.throughput-for")),
    }


def rules(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rule groups as Prometheus' rule-file structure.

    Annotations are plain text (the thresholds written in), so an alert
    reads the same in every notifier and promtool's unit tests compare them exactly.
    """
    t = {**thresholds(), **(values or {})}
    window, hard = t["window"], "|".join(HARD_FAILURES)
    rate_all = f"sum(rate(metaextract_files_total[{window}]))"
    rate_failed = f'sum(rate(metaextract_files_total{{outcome="failed"}}[{window}]))'
    throughput = f"sum(rate(metaextract_bytes_total[{window}]))"
    return {"groups": [{"name": "metaextract", "rules": [
        {"alert": "MetaextractErrorRateHigh",
         "expr": f"{rate_failed} / {rate_all} > {t['error_rate']:g}",
         "for": t["error_rate_for"], "labels": {"severity": "warning"},
         "annotations": {"summary": "metaextract: files are failing",
                         "description": f"Over {window}, the share of files that failed stayed above {t['error_rate']:g} "
                                        f"for {t['error_rate_for']}. The catalog's error column says why."}},
        {"alert": "MetaextractScanStalled",
         "expr": f"(time() - metaextract_last_progress_timestamp_seconds) > {t['stall_seconds']:g} "
                 "and on() metaextract_files_remaining > 0",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "metaextract: no file finished for a while, and files remain",
                         "description": f"A running scan has files left and none finished in {t['stall_seconds']:g} s: "
                                        "workers may be stuck on a file or gone."}},
        {"alert": "MetaextractWorkersLost",
         "expr": f"increase(metaextract_workers_lost_total[{window}]) > 0",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "metaextract: workers left the cluster during a scan",
                         "description": "Workers left while a scan was running (killed, out of memory, preempted). "
                                        "Their files are retried, but capacity is lower."}},
        {"alert": "MetaextractHardFailuresClimbing",
         "expr": f'sum(increase(metaextract_errors_total{{error_type=~"{hard}"}}[{window}])) >= {t["hard_failures"]}',
         "labels": {"severity": "warning"},
         "annotations": {"summary": "metaextract: timeouts or parser crashes are climbing",
                         "description": f"At least {t['hard_failures']} files timed out or crashed their parser in {window}: "
                                        "look for a hostile or pathological file, or a timeout too short."}},
        {"alert": "MetaextractThroughputLow",
         "expr": f"metaextract_files_remaining > 0 and on() ({throughput} < {t['throughput_fraction']:g} * "
                 f"quantile_over_time(0.5, ({throughput})[1h:1m]))",
         "for": t["throughput_for"], "labels": {"severity": "info"},
         "annotations": {"summary": "metaextract: bytes per second far below this scan's own median",
                         "description": f"Throughput over {window} stayed below {t['throughput_fraction']:g} of its median "
                                        f"over the last hour for {t['throughput_for']} while files remain: a slow file system, "
                                        "lost workers or a few huge files at the end."}},
    ]}]}


def rules_yaml(values: dict[str, Any] | None = None) -> str:
    """The rule file's text."""
    import yaml

    head = ("# Prometheus alerting rules for metaextract_dask (metaextract alerts > metaextract-rules.yml).\n"
            "# Thresholds: dask.config metaextract.alerts.*; check with: promtool check rules metaextract-rules.yml\n")
    return head + yaml.safe_dump(rules(values), sort_keys=False, width=1000)
