"""The concepts view of a trace: the prompt's concepts and the groups of them that act together on the answer, as a
HIF-standard document (validates against `hif/schemas/hif_standard.json`).

One node per concept (`type: concept`, its text, spaCy's or the fallback's label, its characters and tokens, and
its own drop), one node for the emitted token (`type: output_token`, with P0), and one hyperedge per kept group:
the members are its causes (`tail`), the emitted token its effect (`head`), weighted by synergy / P0, the evidence
(synergy, P with the group masked, each member's drop) in the edge's attributes. The search's cost and why it
stopped are in the metadata. Input is the plain record the explainer stores (`Trace.concepts`).

`with_concept_nodes` adds the concepts to a HIF-standard export of the feature graph: a node per concept, and a
hyperedge from it (`tail`) to the features (`head`) of every incidence that holds one of its input tokens, so the
features firing on a concept's tokens can be found from the concept.
"""
from __future__ import annotations

from typing import Any

TARGET_NODE = "target"
_SEARCH_KEYS = ("calls", "cache_hits", "rounds", "stopped")


def concept_node_id(concept_id: str) -> str:
    return f"concept:{concept_id}"


def concepts_document(record: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """The document for a stored concepts record (`skipped` ones give no nodes and say why in the metadata)."""
    meta = {**metadata, "view": "concepts"}
    if "concepts" not in record:
        return {"network-type": "directed", "metadata": {**meta, "skipped": record.get("skipped", "not computed")},
                "nodes": [], "edges": [], "incidences": []}
    drops = record["drops"]
    nodes = [{"node": concept_node_id(c["id"]), "attrs": {
        **_concept_attrs(c), "start": c["start"], "end": c["end"], "drop": drops.get(c["id"])}}
        for c in record["concepts"]]
    target = record["target"]
    nodes.append({"node": TARGET_NODE, "attrs": {"type": "output_token", "label": target["text"],
                                                 "position": target["position"], "p0": record["p0"]}})
    edges, incidences = [], []
    for edge in record["edges"]:
        edge_id = "group:" + "+".join(edge["members"])
        edges.append({"edge": edge_id, "weight": edge["weight"], "attrs": {
            "synergy": edge["synergy"], "p_group": edge["p_group"], "member_drops": edge["member_drops"]}})
        incidences += [{"edge": edge_id, "node": concept_node_id(m), "weight": edge["weight"], "direction": "tail"}
                       for m in edge["members"]]
        incidences.append({"edge": edge_id, "node": TARGET_NODE, "weight": edge["weight"], "direction": "head"})
    search = {key: record[key] for key in _SEARCH_KEYS}
    return {"network-type": "directed", "metadata": {**meta, "search": search}, "nodes": nodes, "edges": edges,
            "incidences": incidences}


def with_concept_nodes(standard: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """`standard` (a HIF-standard export of a feature graph) with the record's concepts linked to their features."""
    concepts = record.get("concepts") or []
    if not concepts:
        return standard
    features_at = _features_by_position(standard)
    nodes, edges, incidences = list(standard["nodes"]), list(standard["edges"]), list(standard["incidences"])
    for concept in concepts:
        node_id = concept_node_id(concept["id"])
        nodes.append({"node": node_id, "attrs": _concept_attrs(concept)})
        features = sorted(set().union(*(features_at.get(token, ()) for token in concept["tokens"])))
        if not features:
            continue
        edge_id = f"fires:{concept['id']}"
        edges.append({"edge": edge_id, "attrs": {"type": "concept_features"}})
        incidences.append({"edge": edge_id, "node": node_id, "direction": "tail"})
        incidences += [{"edge": edge_id, "node": feature, "direction": "head"} for feature in features]
    return {**standard, "nodes": nodes, "edges": edges, "incidences": incidences}


def _concept_attrs(concept: dict[str, Any]) -> dict[str, Any]:
    """What a concept node says in either document: its text, spaCy's (or the fallback's) label, its tokens."""
    return {"type": "concept", "label": concept["text"], "concept_label": concept["label"],
            "tokens": concept["tokens"]}


def _features_by_position(standard: dict[str, Any]) -> dict[int, set[str]]:
    """Input-token position → the features of every edge that holds that token (one pass over the incidences), so
    linking each concept costs a lookup per token, not a pass over the graph."""
    attrs_of = {node["node"]: node["attrs"] for node in standard["nodes"]}
    edges: dict[str, tuple[set[int], set[str]]] = {}
    for incidence in standard["incidences"]:
        positions, features = edges.setdefault(incidence["edge"], (set(), set()))
        attrs = attrs_of.get(incidence["node"], {})
        if attrs.get("type") == "input_token":
            positions.add(attrs.get("position"))
        elif attrs.get("type") == "sae_feature":
            features.add(incidence["node"])
    found: dict[int, set[str]] = {}
    for positions, features in edges.values():
        for position in positions:
            found.setdefault(position, set()).update(features)
    return found
