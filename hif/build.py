"""`build_hif`: prune, group and wrap the result in a HIF v1 document."""

from __future__ import annotations

from typing import Any

from .config import HypergraphConfig
from .prune import prune_and_group

VERSION = "hif-1"
CALLER_META_KEYS = ("model_name", "model_hash", "sae_dictionary", "granularity", "created_at")


def limits_of(cfg: HypergraphConfig) -> dict[str, Any]:
    """The limits recorded in `meta.limits`: the values this document was actually pruned with."""
    return {
        "min_edge_weight": cfg.min_edge_weight,
        "max_nodes": cfg.max_nodes,
        "max_incidences": cfg.max_incidences,
        "per_token_incident_cap": cfg.per_token_incident_cap,
    }


def _meta(meta: dict, cfg: HypergraphConfig) -> dict[str, Any]:
    """Check the caller's meta and add version and limits.

    Unknown keys are refused here, with their names, rather than later by the schema: the v1 schema forbids
    extra meta keys (grouping summaries belong in logs), and failing at the call site says which caller erred.
    """
    unknown = sorted(set(meta) - set(CALLER_META_KEYS))
    if unknown:
        raise ValueError(f"meta has keys outside the HIF v1 contract: {unknown}")
    missing = sorted(set(CALLER_META_KEYS) - set(meta) - {"model_hash"})
    if missing:
        raise ValueError(f"meta is missing {missing}")
    created_at = meta["created_at"]
    out = {key: meta[key] for key in CALLER_META_KEYS if key in meta}
    out["created_at"] = created_at.isoformat() if hasattr(created_at, "isoformat") else created_at
    out.setdefault("model_hash", "")
    out["version"] = VERSION
    out["limits"] = limits_of(cfg)
    return out


def build_hif(nodes: list[dict], incidences: list[dict], meta: dict, cfg: HypergraphConfig) -> dict[str, Any]:
    """A HIF v1 document: `{"network-type": "directed", "meta", "nodes", "incidences"}`.

    `meta` carries model_name, model_hash ("" when unknown), sae_dictionary, granularity and created_at; the
    pruning summary is logged by `prune_and_group`, never stored in the document.
    """
    doc_meta = _meta(meta, cfg)
    pruned_nodes, pruned_incidences, _ = prune_and_group(nodes, incidences, cfg)
    return {"network-type": "directed", "meta": doc_meta, "nodes": pruned_nodes, "incidences": pruned_incidences}
