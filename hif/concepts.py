"""The concepts view of a trace: the prompt's concepts and the groups of them that act together on the answer, as a
HIF-standard document (validates against `hif/schemas/hif_standard.json`).

One node per concept (`type: concept`, its text, spaCy's or the fallback's label, its characters and tokens, and
its own drop), one node for the emitted token (`type: output_token`, with P0), and one hyperedge per kept group:
the members are its causes (`tail`), the emitted token its effect (`head`), weighted by synergy / P0, the evidence
(synergy, P with the group masked, each member's drop) in the edge's attributes. The search's cost and why it
stopped are in the metadata. Input is the plain record the explainer stores (`Trace.concepts`).
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
        "type": "concept", "label": c["text"], "concept_label": c["label"], "start": c["start"], "end": c["end"],
        "tokens": c["tokens"], "drop": drops.get(c["id"])}} for c in record["concepts"]]
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
