"""Conversion between HIF v1 and the community Hypergraph Interchange Format (HyperNetX, XGI, HypergraphX).

Each v1 incidence becomes a HIF edge; each (edge, node) pair becomes a HIF incidence record carrying the edge's
weight and a direction — features, supernodes and input tokens are causes (`tail`), output tokens effects
(`head`). Node fields go to node `attrs`, incidence metadata/attributes to edge `attrs`, and v1 `meta` to the
graph `metadata`, so `from_hif_standard(to_hif_standard(doc))` gives back the same nodes, edges and weights.
"""

from __future__ import annotations

from typing import Any

from .build import VERSION

_NODE_FIELDS = ("type", "label", "layer", "position", "activation_strength", "attributes")
_HEAD_TYPES = frozenset({"output_token"})
_META_KEYS = ("model_name", "model_hash", "sae_dictionary", "granularity", "created_at", "limits")


def to_hif_standard(doc: dict) -> dict[str, Any]:
    """A HIF-standard document (validates against `hif/schemas/hif_standard.json`) for a v1 document."""
    node_type = {node["id"]: node["type"] for node in doc["nodes"]}
    nodes = [
        {"node": node["id"], "attrs": {key: node[key] for key in _NODE_FIELDS if key in node}}
        for node in doc["nodes"]
    ]
    edges = []
    incidences = []
    for inc in doc["incidences"]:
        attrs: dict[str, Any] = {"metadata": inc["metadata"]}
        if "attributes" in inc:
            attrs["attributes"] = inc["attributes"]
        edges.append({"edge": inc["id"], "weight": inc["weight"], "attrs": attrs})
        incidences.extend(
            {
                "edge": inc["id"],
                "node": node_id,
                "weight": inc["weight"],
                "direction": "head" if node_type.get(node_id) in _HEAD_TYPES else "tail",
            }
            for node_id in inc["node_ids"]
        )
    return {
        "network-type": "directed",
        "metadata": {**doc["meta"], "source_format": doc["meta"].get("version", VERSION)},
        "nodes": nodes,
        "edges": edges,
        "incidences": incidences,
    }


def from_hif_standard(std_doc: dict) -> dict[str, Any]:
    """A v1 document from a HIF-standard one (ours or another tool's).

    Edge order and each edge's node order follow the incidence records. An edge without a weight of its own
    takes the largest weight of its incidence records (1.0 when none has one, the HIF default). Nodes that
    appear only in incidences get `type: sae_feature` and their id as label. Graph metadata keys outside the
    v1 meta are dropped; a foreign file without model fields yields a document `validate_hif` will flag.
    """
    nodes: dict[str, dict[str, Any]] = {}
    for record in std_doc.get("nodes", []):
        node_id = str(record["node"])
        attrs = record.get("attrs") or {}
        node = {"id": node_id, "type": attrs.get("type", "sae_feature"), "label": str(attrs.get("label", node_id))}
        node.update((key, attrs[key]) for key in _NODE_FIELDS[2:] if key in attrs)
        nodes[node_id] = node
    edges: dict[str, dict[str, Any]] = {
        str(record["edge"]): {"weight": record.get("weight"), "attrs": record.get("attrs") or {}}
        for record in std_doc.get("edges", [])
    }
    members: dict[str, list[str]] = {}
    record_weight: dict[str, float] = {}
    for record in std_doc["incidences"]:
        edge_id, node_id = str(record["edge"]), str(record["node"])
        members.setdefault(edge_id, [])
        if node_id not in members[edge_id]:
            members[edge_id].append(node_id)
        if "weight" in record:
            record_weight[edge_id] = max(record_weight.get(edge_id, record["weight"]), record["weight"])
        nodes.setdefault(node_id, {"id": node_id, "type": "sae_feature", "label": node_id})
    incidences = []
    for edge_id, node_ids in members.items():
        edge = edges.get(edge_id, {"weight": None, "attrs": {}})
        weight = edge["weight"] if edge["weight"] is not None else record_weight.get(edge_id, 1.0)
        inc: dict[str, Any] = {
            "id": edge_id,
            "node_ids": node_ids,
            "weight": weight,
            "metadata": edge["attrs"].get("metadata", {}),
        }
        if "attributes" in edge["attrs"]:
            inc["attributes"] = edge["attrs"]["attributes"]
        incidences.append(inc)
    metadata = std_doc.get("metadata") or {}
    meta = {key: metadata[key] for key in _META_KEYS if key in metadata}
    meta["version"] = VERSION
    return {"network-type": "directed", "meta": meta, "nodes": list(nodes.values()), "incidences": incidences}
