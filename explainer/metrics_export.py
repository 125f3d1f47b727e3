"""Where Prometheus samples are served from: the registry a scrape reads, a worker's own exporter, and retiring a
process's files in multiprocess mode.

With `PROMETHEUS_MULTIPROC_DIR` every process of the host (gunicorn workers, Celery's main and pool processes) writes
its samples to files there and a scrape sums them (`MultiProcessCollector`); without it a scrape reads this process's
default registry. Either way the scrape-time families (`service_metrics`) are added by whoever serves /metrics.
"""
from __future__ import annotations

import logging
import os
from typing import Iterable, Iterator

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)


class _ProcessSamples(Collector):
    """This process's default registry, forwarded into a per-scrape registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def samples_registry(*, extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """The samples of every process of this host (multiprocess mode) or of this process, plus `extra` collectors."""
    registry = CollectorRegistry()
    if settings.PROMETHEUS_MULTIPROC_DIR:
        multiprocess.MultiProcessCollector(registry, path=settings.PROMETHEUS_MULTIPROC_DIR)
    else:
        registry.register(_ProcessSamples())
    for collector in extra:
        registry.register(collector)
    return registry


def worker_metrics_serve(*, port: int, prefork: bool) -> None:
    """Serve this worker's samples over HTTP on `port` (`WORKER_METRICS_PORT`), from a thread of the main process.

    Prefork pool processes count in their own memory: without multiprocess mode their samples never reach this
    exporter, so say so instead of serving a misleading subset.
    """
    if prefork and not settings.PROMETHEUS_MULTIPROC_DIR:
        logger.warning("WORKER_METRICS_PORT with a prefork pool but no PROMETHEUS_MULTIPROC_DIR: the pool "
                       "processes' samples (stages, decode, attribution) are not served; set PROMETHEUS_MULTIPROC_DIR "
                       "or run --pool threads/solo")
    start_http_server(port, registry=samples_registry())
    logger.info("serving this worker's metrics on port %s", port)


def process_metrics_retire() -> None:
    """In multiprocess mode, drop this process's live gauges from the scrape when it exits (its counters and
    histograms stay summed, as Prometheus expects of a counter)."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        multiprocess.mark_process_dead(os.getpid(), settings.PROMETHEUS_MULTIPROC_DIR)
