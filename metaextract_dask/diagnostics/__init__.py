"""What a run shows: the scheduler plugin, Prometheus series, the dashboard page, progress."""
