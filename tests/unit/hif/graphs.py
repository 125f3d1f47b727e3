"""Small hand-checkable graph builders shared by the hif tests."""

from __future__ import annotations

META = {
    "model_name": "gpt2",
    "model_hash": "",
    "sae_dictionary": "toy-4096",
    "granularity": "token",
    "created_at": "2025-01-01T00:00:00Z",
}


def feat(fid: str, label: str | None = None, layer: int = 3, act: float | None = None, **extra) -> dict:
    node = {"id": fid, "type": "sae_feature", "label": label or f"feature {fid}", "layer": layer, **extra}
    if act is not None:
        node["activation_strength"] = act
    return node


def tok_out(i: int, label: str | None = None) -> dict:
    return {"id": f"token_out_{i}", "type": "output_token", "label": label or f"o{i}", "position": i}


def tok_in(i: int, label: str | None = None) -> dict:
    return {"id": f"token_in_{i}", "type": "input_token", "label": label or f"i{i}", "position": i}


def inc(iid: str, node_ids: list[str], weight: float, window: str = "tok-0", **extra) -> dict:
    return {
        "id": iid,
        "node_ids": list(node_ids),
        "weight": weight,
        "metadata": {"type": "causal_circuit", "method": "acdc", "window": window},
        **extra,
    }
