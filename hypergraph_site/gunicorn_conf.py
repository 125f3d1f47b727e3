"""gunicorn settings module (`gunicorn -c python:hypergraph_site.gunicorn_conf`): in Prometheus multiprocess mode, a
gunicorn worker that exits has its live gauges removed from the scrape (https://prometheus.github.io/client_python/multiprocess/)."""
from __future__ import annotations

import os


def child_exit(server, worker) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
