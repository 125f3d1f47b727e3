"""Prometheus metrics of the attribution stage (default registry: served by the worker's exporter, or summed into
/metrics in multiprocess mode; see explainer/metrics_export.py)."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

METHOD_TOTAL = Counter(
    "attribution_method_total", "Attribution calls by the method actually used.", ["method", "granularity"])
LATENCY = Histogram(
    "attribution_latency_seconds", "Wall time of one attribution call.", ["method", "granularity"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 0.9, 1.5, 2.5, 3.5, 5.0, 10.0))
EARLY_STOP = Counter(
    "attribution_early_stop_total",
    "Calls where the requested method was cut short by its budget or failed, so some windows fell back to saliency "
    "or stopped sampling before converging.", ["method"])


def record_call(*, method: str, requested: str, granularity: str, seconds: float, cut_short: bool) -> None:
    METHOD_TOTAL.labels(method=method, granularity=granularity).inc()
    LATENCY.labels(method=method, granularity=granularity).observe(seconds)
    if cut_short:
        EARLY_STOP.labels(method=requested).inc()
