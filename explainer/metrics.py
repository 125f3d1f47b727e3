"""Prometheus families the chain records as it works (in the worker processes).

They live in prometheus_client's default registry: served by a worker's own exporter (`WORKER_METRICS_PORT`), or,
in multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`), written to files that the web process's /metrics sums. Labels are
bounded: stage and granularity, never a trace id or a tenant.
"""
from __future__ import annotations

from prometheus_client import Histogram

STAGE_SECONDS = Histogram(
    "hypergraph_stage_duration_seconds", "Wall time of one chain stage's work, by stage and granularity",
    ["stage", "granularity"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
QUEUE_LAG = Histogram(
    "hypergraph_queue_lag_seconds", "From a trace's finalize to the start of its first stage (time spent queued)",
    ["granularity"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0))
HIF_NODES = Histogram("hypergraph_hif_nodes", "Nodes of a built graph (supernodes included)",
                      buckets=(10, 25, 50, 100, 250, 500, 1000, 2500, 5000))
HIF_INCIDENCES = Histogram("hypergraph_hif_incidences", "Incidences of a built graph, after pruning",
                           buckets=(10, 50, 100, 500, 1000, 2500, 5000, 10000, 20000))
HIF_PRUNE_RATIO = Histogram(
    "hypergraph_hif_prune_ratio", "Share of the attributed incidences that pruning removed from a built graph",
    buckets=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0))
HIF_SUPERNODES = Histogram("hypergraph_hif_supernodes", "Supernodes of a built graph",
                           buckets=(0, 1, 2, 5, 10, 25, 50, 100))


def graph_built(*, document: dict, attributed_incidences: int) -> None:
    """Record the size of a built HIF document against the attribution graph it was pruned from."""
    nodes, incidences = document["nodes"], document["incidences"]
    HIF_NODES.observe(len(nodes))
    HIF_INCIDENCES.observe(len(incidences))
    HIF_SUPERNODES.observe(sum(1 for node in nodes if node.get("type") == "circuit_supernode"))
    if attributed_incidences:
        HIF_PRUNE_RATIO.observe(max(0.0, 1.0 - len(incidences) / attributed_incidences))
