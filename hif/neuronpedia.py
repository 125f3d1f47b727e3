"""Export to the attribution-graph JSON read by Neuronpedia's graph viewer and circuit-tracer's local server.

That format is a layered picture over one context: nodes sit at a context position (`ctx_idx`) and a layer —
embeddings ("E") at the bottom, features at their SAE layer, logits above the last feature layer — and `links`
are directed, weighted pairs. A v1 incidence is a hyperedge, so it is drawn as links from each cause (feature,
supernode, input token) to each effect (output token). Output tokens follow the prompt in the context, so their
`ctx_idx` is the prompt length plus their position, and `metadata.prompt_tokens` lists prompt then output tokens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .ids import parse_feature_node

_FEATURE_TYPE = "cross layer transcoder"  # the viewer's type for dictionary features


def _tokens_by_position(nodes: list[dict], node_type: str) -> list[str]:
    """Labels of one kind of token node laid out by position; positions pruned away are left as ""."""
    tokens = [n for n in nodes if n["type"] == node_type]
    labels = [""] * (max((n["position"] for n in tokens), default=-1) + 1)
    for n in tokens:
        labels[n["position"]] = n["label"]
    return labels


def _token_id(node: dict) -> int:
    """The vocabulary id when the pipeline recorded one (attributes.token_id), else the position."""
    token_id = (node.get("attributes") or {}).get("token_id")
    return token_id if isinstance(token_id, int) and not isinstance(token_id, bool) else node["position"]


def _feature_layer(node: dict) -> int:
    """The layer in the id (`feat_<layer>_<index>`, what node ids are built from), else the `layer` field."""
    parsed = parse_feature_node(node["id"])
    return parsed[0] if parsed else node.get("layer", 0)


def _member_layers(node: dict) -> list[int]:
    members = (node.get("attributes") or {}).get("members", [])
    return [parsed[0] for parsed in map(parse_feature_node, members) if parsed]


def _create_time_ms(created_at: str) -> int | None:
    try:
        return int(datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp() * 1000)
    except (ValueError, AttributeError):
        return None


def to_neuronpedia_graph(
    doc: dict, *, slug: str, prompt: str = "", prompt_tokens: list[str] | None = None
) -> dict[str, Any]:
    """A Neuronpedia graph (validates against `hif/schemas/neuronpedia_graph.json`) for a v1 document.

    Feature `feat_<layer>_<index>` becomes node `<layer>_<index>_<ctx>` with `clerp` = label and `activation` =
    activation_strength; its `ctx_idx` is that of the token it is most strongly linked to (incidences are
    weight-ordered). Supernodes stay single nodes and are also named in `qParams.supernodes` as
    `[label, node_id]`, the viewer's grouping format. `prompt_tokens` defaults to the input-token labels.
    """
    nodes, meta = doc["nodes"], doc["meta"]
    prompt_part = list(prompt_tokens) if prompt_tokens is not None else _tokens_by_position(nodes, "input_token")
    n_prompt = len(prompt_part)
    by_id = {n["id"]: n for n in nodes}

    def token_ctx(node: dict) -> int:
        return node["position"] + (n_prompt if node["type"] == "output_token" else 0)

    ctx: dict[str, int] = {n["id"]: token_ctx(n) for n in nodes if n["type"] in ("input_token", "output_token")}
    token_ids = set(ctx)  # ctx gains features below; only tokens can anchor one
    for inc in doc["incidences"]:
        tokens = [by_id[i] for i in inc["node_ids"] if i in token_ids]
        anchor = next((t for t in tokens if t["type"] == "output_token"), tokens[0] if tokens else None)
        for node_id in inc["node_ids"]:
            if node_id not in ctx and anchor is not None:
                ctx[node_id] = token_ctx(anchor)
    feature_layers = [_feature_layer(n) for n in nodes if n["type"] == "sae_feature"]
    feature_layers += [layer for n in nodes if n["type"] == "circuit_supernode" for layer in _member_layers(n)]
    logit_layer = max(feature_layers, default=0) + 1

    np_nodes: list[dict[str, Any]] = []
    np_id: dict[str, str] = {}
    supernodes = []
    for node in nodes:
        c = ctx.get(node["id"], 0)
        if node["type"] == "input_token":
            token = _token_id(node)
            entry = {"node_id": f"E_{token}_{c}", "feature": token, "layer": "E", "feature_type": "embedding",
                     "jsNodeId": f"E_{token}-{c}", "clerp": f'Emb: "{node["label"]}"'}
        elif node["type"] == "output_token":
            token = _token_id(node)
            entry = {"node_id": f"{logit_layer}_{token}_{c}", "feature": token, "layer": str(logit_layer),
                     "feature_type": "logit", "jsNodeId": f"L_{token}-{c}", "clerp": f'Output "{node["label"]}"'}
        elif node["type"] == "circuit_supernode":
            layer = min(_member_layers(node), default=0)
            entry = {"node_id": node["id"], "feature": None, "layer": str(layer), "feature_type": _FEATURE_TYPE,
                     "jsNodeId": node["id"], "clerp": node["label"]}
            supernodes.append([node["label"], node["id"]])
        else:
            parsed = parse_feature_node(node["id"])
            layer = _feature_layer(node)
            feature = parsed[1] if parsed else None
            key = feature if feature is not None else node["id"]
            entry = {"node_id": f"{layer}_{key}_{c}", "feature": feature, "layer": str(layer),
                     "feature_type": _FEATURE_TYPE, "jsNodeId": f"{layer}_{key}-{c}", "clerp": node["label"]}
        entry["ctx_idx"] = c
        if "activation_strength" in node:
            entry["activation"] = node["activation_strength"]
        np_id[node["id"]] = entry["node_id"]
        np_nodes.append(entry)

    links: dict[tuple[str, str], float] = {}
    for inc in doc["incidences"]:
        for source, target in _link_pairs(inc["node_ids"], by_id):
            pair = (np_id[source], np_id[target])
            links[pair] = max(links.get(pair, inc["weight"]), inc["weight"])

    metadata: dict[str, Any] = {
        "slug": slug,
        "scan": meta["model_name"],
        "prompt": prompt,
        "prompt_tokens": prompt_part + _tokens_by_position(nodes, "output_token"),
        "pruning_settings": dict(meta.get("limits", {})),
        "info": {
            "description": f"hypergraph-sidecar {meta.get('version', '')} export; SAE {meta.get('sae_dictionary', '')}",
            "generator": {"name": "hypergraph-sidecar", "version": meta.get("version", "")},
        },
    }
    created = _create_time_ms(meta.get("created_at"))
    if created is not None:
        metadata["info"]["create_time_ms"] = created
    return {
        "metadata": metadata,
        "qParams": {"pinnedIds": [], "supernodes": supernodes, "linkType": "both"},
        "nodes": np_nodes,
        "links": [{"source": s, "target": t, "weight": w} for (s, t), w in links.items()],
    }


def _link_pairs(node_ids: list[str], by_id: dict[str, dict]) -> list[tuple[str, str]]:
    """Directed (cause, effect) pairs for one hyperedge.

    Causes to output tokens when there are any; else input tokens to features; else (features only) each
    feature to the next one up in (layer, id) order, the direction information flows in the residual stream.
    """
    outputs = [i for i in node_ids if by_id[i]["type"] == "output_token"]
    inputs = [i for i in node_ids if by_id[i]["type"] == "input_token"]
    features = [i for i in node_ids if by_id[i]["type"] in ("sae_feature", "circuit_supernode")]
    if outputs:
        return [(s, t) for s in features + inputs for t in outputs]
    if inputs and features:
        return [(s, t) for s in inputs for t in features]
    ordered = sorted(features, key=lambda i: (by_id[i].get("layer", 0), i))
    return list(zip(ordered, ordered[1:]))
