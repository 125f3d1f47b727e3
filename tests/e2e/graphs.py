"""Reading explained graphs in end-to-end tests."""
from __future__ import annotations


def graph_features(doc: dict) -> set[str]:
    """Feature ids in the graph: feature nodes plus the members that supernodes stand for."""
    ids = set()
    for node in doc["nodes"]:
        if node["type"] == "sae_feature":
            ids.add(node["id"])
        elif node["type"] == "circuit_supernode":
            ids.update(node["attributes"]["members"])
    return ids
