"""`build_hif`: prune, group and wrap the result in a HIF v1 document."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, overload

from .config import HypergraphConfig
from .graph import Graph
from .prune import graph_and_config, is_pruned, pruned_records

VERSION = "hif-1"
CALLER_META_KEYS = ("model_name", "model_hash", "sae_dictionary", "granularity", "created_at")
_DEFAULTED_META_KEYS = frozenset({"model_hash", "created_at"})


def limits_of(cfg: HypergraphConfig) -> dict[str, Any]:
    """The limits recorded in `meta.limits`: the values this document was actually pruned with."""
    return {
        "min_edge_weight": cfg.min_edge_weight,
        "max_nodes": cfg.max_nodes,
        "max_incidences": cfg.max_incidences,
        "per_token_incident_cap": cfg.per_token_incident_cap,
    }


def _meta(meta: dict, cfg: HypergraphConfig) -> dict[str, Any]:
    """Check the caller's meta, fill the defaults the seed system gave, and add version and limits.

    Unknown keys are refused here, with their names, rather than later by the schema: the v1 schema forbids
    extra meta keys (grouping summaries belong in logs), and failing at the call site says which caller erred.
    A missing (or None) `created_at` is now (UTC, ISO 8601, whole seconds); a missing `model_hash` is "".
    """
    unknown = sorted(set(meta) - set(CALLER_META_KEYS))
    if unknown:
        raise ValueError(f"meta has keys outside the HIF v1 contract: {unknown}")
    missing = sorted(set(CALLER_META_KEYS) - set(meta) - _DEFAULTED_META_KEYS)
    if missing:
        raise ValueError(f"meta is missing {missing}")
    created_at = meta.get("created_at")
    if created_at is None:
        created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    out = {key: meta[key] for key in CALLER_META_KEYS if key in meta}
    out["created_at"] = created_at.isoformat() if hasattr(created_at, "isoformat") else created_at
    out.setdefault("model_hash", "")
    out["version"] = VERSION
    out["limits"] = limits_of(cfg)
    return out


@overload
def build_hif(graph: Graph, meta: dict, cfg: HypergraphConfig, /) -> dict[str, Any]: ...
@overload
def build_hif(nodes: list[dict], incidences: list[dict], meta: dict, cfg: HypergraphConfig, /) -> dict[str, Any]: ...
def build_hif(source: Graph | list[dict], *rest: Any) -> dict[str, Any]:
    """A HIF v1 document: `{"network-type": "directed", "meta", "nodes", "incidences"}`.

    `build_hif(graph, meta, cfg)` or, in the seed system's form, `build_hif(nodes, incidences, meta, cfg)`; the
    same graph in either form gives the same document. Lists `prune_and_group(..., cfg)` returned are written as
    they are, not pruned again. `meta` carries model_name, sae_dictionary, granularity and optionally model_hash
    and created_at; the pruning summary is logged, never stored in the document.
    """
    usage = "build_hif(graph, meta, cfg) or build_hif(nodes, incidences, meta, cfg)"
    if len(rest) not in (2, 3):
        raise TypeError(f"expected {usage}")
    *graph_args, meta, cfg = (source, *rest)
    doc_meta = _meta(meta, cfg)
    if len(graph_args) == 2 and is_pruned(graph_args[0], graph_args[1], cfg):
        nodes, incidences = list(graph_args[0]), list(graph_args[1])
    else:
        graph, cfg = graph_and_config(graph_args[0], (*graph_args[1:], cfg), usage)
        nodes, incidences, _ = pruned_records(graph, cfg)
    return {"network-type": "directed", "meta": doc_meta, "nodes": nodes, "incidences": incidences}
