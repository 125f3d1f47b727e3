"""Prometheus metrics of the decode service (default registry: served by the worker's exporter, or summed into
/metrics in multiprocess mode; see explainer/metrics_export.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DECODE_REQUESTS = Counter("sae_decode_requests_total", "SAE decode requests served", ["device", "layer"])
DECODE_LATENCY = Histogram(
    "sae_decode_latency_seconds", "Wall time of one decode request, queueing included", ["device", "layer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DECODE_FALLBACKS = Counter("sae_decode_fallbacks_total", "Decodes that wanted torch/CUDA but ran on the numpy CPU path",
                           ["device"])
# Summed over the live processes in Prometheus multiprocess mode (each process holds its own LRU).
LAYER_CACHE_SIZE = Gauge("sae_layer_cache_size", "Dictionaries currently held in the layer LRU",
                         multiprocess_mode="livesum")
DECODE_BATCH_SIZE = Histogram("sae_decode_batch_size", "Requests merged into one decode batch",
                              buckets=(1, 2, 4, 8, 16, 32, 64))
