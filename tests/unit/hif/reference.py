"""A deliberately naive, pure-Python statement of issue 3's pruning contract.

Written from the issue text, not from hif/, and quadratic where that is clearer; the property tests check the
vectorised implementation against it on small random graphs. It covers ids, membership, order and weights
(not attribute normalisation, which the unit tests check), for inputs with unique ids.
"""

from __future__ import annotations

import hashlib
import math
import re

TOKENS = ("input_token", "output_token")
TYPES = ("sae_feature", "circuit_supernode") + TOKENS


def node_type(node: dict) -> str:
    return node.get("type") if node.get("type") in TYPES else "sae_feature"


def slug(prefix: str) -> str:
    s = re.sub(r"[^0-9a-z]+", "_", prefix.lower()).strip("_")
    return s or "h" + hashlib.sha1(prefix.encode("utf-8")).hexdigest()[:10]


def reference_prune(nodes: list[dict], incidences: list[dict], cfg) -> tuple[list[str], list[tuple]]:
    """Returns (node ids in document order, [(incidence id, node_ids, weight)] in document order)."""
    by_id = {n["id"]: n for n in nodes}
    types = {i: node_type(n) for i, n in by_id.items()}
    edges = []
    for inc in incidences:
        if any(x not in by_id for x in inc["node_ids"]) or math.isnan(inc["weight"]):
            continue
        w = min(max(float(inc["weight"]), 0.0), 1.0)
        members = set(inc["node_ids"])
        if w < cfg.min_edge_weight or len(members) < 2:
            continue
        meta = inc["metadata"]
        key = (meta["type"], meta["method"], meta["window"])
        edges.append({"id": inc["id"], "nodes": members, "w": w, "meta": key})

    def strength(e):
        return (-e["w"], e["id"])

    over_cap = set()
    for token in (i for i, t in types.items() if t in TOKENS):
        ranked = sorted((e for e in edges if token in e["nodes"]), key=strength)
        over_cap |= {e["id"] for e in ranked[cfg.per_token_incident_cap :]}
    edges = [e for e in edges if e["id"] not in over_cap]

    if cfg.grouping == "supernode":
        groups: dict[str, list[str]] = {}
        for f in sorted({n for e in edges for n in e["nodes"] if types[n] == "sae_feature"}):
            label = by_id[f].get("label")
            if isinstance(label, str) and cfg.supernode_label_delim in label:
                prefix = label.split(cfg.supernode_label_delim, 1)[0].strip()
                if prefix:
                    groups.setdefault(prefix, []).append(f)
        representative = {}
        taken = set(by_id)
        for prefix in sorted(groups):
            if len(groups[prefix]) < cfg.supernode_min_group:
                continue
            sid, k = f"super_{slug(prefix)}", 2
            while sid in taken:
                sid, k = f"super_{slug(prefix)}_{k}", k + 1
            taken.add(sid)
            types[sid] = "circuit_supernode"
            strengths = [by_id[f].get("activation_strength") for f in groups[prefix]]
            by_id[sid] = {"id": sid, "activation_strength": max((a for a in strengths if _finite(a)), default=None)}
            representative.update((f, sid) for f in groups[prefix])
        remapped = []
        for e in edges:
            members = {representative.get(n, n) for n in e["nodes"]}
            if len(members) >= 2:
                remapped.append({**e, "nodes": members})
        edges = remapped
    best: dict[tuple, dict] = {}
    for e in edges:
        key = (frozenset(e["nodes"]), e["meta"])
        if key not in best or strength(e) < strength(best[key]):
            best[key] = e
    edges = sorted(best.values(), key=strength)[: cfg.max_incidences]

    referenced = {n for e in edges for n in e["nodes"]}

    def priority(n):
        act = by_id[n].get("activation_strength")
        cls = 0 if types[n] in TOKENS else 1 if types[n] == "circuit_supernode" else 2
        return (cls, -max(e["w"] for e in edges if n in e["nodes"]), -(act if _finite(act) else -math.inf), n)

    kept = set(sorted(referenced, key=priority)[: cfg.max_nodes])
    edges = [e for e in edges if e["nodes"] <= kept]
    final = {n for e in edges for n in e["nodes"]}

    def member_order(n):
        return ({"input_token": 1, "output_token": 2}.get(types[n], 0), n)

    def display(n):
        cls = {"input_token": 0, "sae_feature": 1, "circuit_supernode": 2, "output_token": 3}[types[n]]
        raw = by_id[n]
        where = raw.get("position") if types[n] in TOKENS else raw.get("layer")
        return (cls, where if isinstance(where, int) else -1, n)

    return (
        sorted(final, key=display),
        [(e["id"], sorted(e["nodes"], key=member_order), e["w"]) for e in edges],
    )


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
