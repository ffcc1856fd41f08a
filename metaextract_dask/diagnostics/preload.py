"""Scheduler preload: ``dask scheduler --preload metaextract_dask.diagnostics.preload``.

Importing it adds the ``/metaextract`` dashboard page (before the scheduler
starts its web server); ``dask_setup`` adds the metrics plugin, so Prometheus
sees ``metaextract_`` series even before the first client connects.
"""

from __future__ import annotations

from typing import Any

from .dashboard import register_page
from .plugin import MetricsPlugin

register_page()


def dask_setup(scheduler: Any) -> None:
    scheduler.add_plugin(MetricsPlugin())
