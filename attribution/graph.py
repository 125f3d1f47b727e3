"""Turning estimates into the `hif.Graph` the hypergraph is built from: normalise, threshold, cap, add the nodes.

Everything stays in columns: an incidence is a row (feature node, window, method, weight, effect, ...), its members
are that feature and the window's output tokens, and ids are minted by `hif.ids` only for the rows the HIF document
keeps, so the output costs a few tenths of a microsecond per estimate (it was a few microseconds per incidence as
dicts, enough to need cutting at the deadline).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

import hif
from hif.graph import KIND_FEATURE, KIND_OUTPUT, Incidences, Nodes

from .inputs import Estimates, LayerFeatures

# Measured cost of building the graph (about half of these on the reference machine): normalising and sorting every
# estimate, then each kept incidence and each token it names. Used to reserve time for the output inside the budget.
SECONDS_PER_ESTIMATE = 5e-7
SECONDS_PER_INCIDENCE = 5e-7
SECONDS_PER_MEMBER = 2e-8


def output_cost_ms(n_estimates: int, n_incidences: int, mean_window_length: float) -> float:
    """Expected time to build the graph of `n_incidences` incidences out of `n_estimates` estimates."""
    per_incidence = SECONDS_PER_INCIDENCE + SECONDS_PER_MEMBER * mean_window_length
    return 1000.0 * (n_estimates * SECONDS_PER_ESTIMATE + n_incidences * per_incidence)


def feature_label(layer: int, index: int) -> str:
    """The label of a feature its dictionary has no label for."""
    return f"L{layer} feature {index}"


def build_graph(estimates: Sequence[Estimates], *, layers: Sequence[LayerFeatures],
                windows: Sequence[tuple[int, int]], granularity: str, value: str, min_edge_weight: float,
                per_token_cap: int, labels: Mapping[int, Mapping[int, str]], tokens: Sequence[str]) -> hif.Graph:
    """The attribution hypergraph of all estimates, deterministic in order and ids.

    A weight is |effect| / max |effect| over the features of the same window and layer, so the strongest feature of
    each layer in each window has weight 1 and the sign (a feature may push the value down) stays in `effect`.
    Weights below `min_edge_weight` are dropped, then each window keeps its `per_token_cap` strongest incidences over
    all layers (every token of a window belongs to all of that window's incidences, so this is the per-token cap).
    Ties are broken by layer and feature id. Rows are ordered by window, weight desc, layer, feature.

    Nodes: one per feature some incidence names (its label from `labels[layer][index]`, its activation the largest it
    reached anywhere in the trace), then one per output position (labelled by `tokens`).
    """
    parts = [e for e in estimates if len(e)]
    empty = np.zeros(0, dtype=np.int64)
    cat = {name: np.concatenate([getattr(e, name) for e in parts]) if parts else empty
           for name in ("window", "layer", "feature", "effect", "se", "samples", "converged")}
    source = np.repeat(np.arange(len(parts)), [len(e) for e in parts]).astype(np.int64)
    weight = _normalise(cat["window"], cat["layer"], np.abs(cat["effect"]).astype(np.float64))
    rows = np.flatnonzero((weight >= min_edge_weight) & (weight > 0))
    rows = rows[_strongest_first(cat["window"][rows], weight[rows], cat["layer"][rows], cat["feature"][rows])]
    win = cat["window"][rows]
    rows = rows[np.arange(len(rows)) - np.searchsorted(win, win, side="left") < per_token_cap]

    layer, feature = cat["layer"][rows], cat["feature"][rows]
    span = int(feature.max()) + 1 if len(rows) else 1
    keys, feature_row = np.unique(layer * span + feature, return_inverse=True)
    node_layer, node_feature = keys // span, keys % span
    n_positions = len(tokens)
    nodes = Nodes(
        kind=np.r_[np.full(len(keys), KIND_FEATURE), np.full(n_positions, KIND_OUTPUT)].astype(np.int8),
        layer=np.r_[node_layer, np.full(n_positions, -1)].astype(np.int64),
        feature=np.r_[node_feature, np.full(n_positions, -1)].astype(np.int64),
        position=np.r_[np.full(len(keys), -1), np.arange(n_positions)].astype(np.int64),
        activation=np.r_[_peaks(layers, node_layer, node_feature), np.full(n_positions, np.nan)],
        label=_labels(labels, node_layer, node_feature) + list(tokens),
    )

    spans = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    window, length = cat["window"][rows], (spans[:, 1] - spans[:, 0])[cat["window"][rows]]
    offsets = np.r_[0, np.cumsum(length + 1)].astype(np.int64)
    members = np.empty(int(offsets[-1]), dtype=np.int64)
    is_token = np.ones(len(members), dtype=bool)
    is_token[offsets[:-1]] = False
    members[~is_token] = feature_row
    members[is_token] = len(keys) + _ranges(spans[window, 0], length)

    methods = tuple(sorted({p.method for p in parts} | {p.fallback_from for p in parts if p.fallback_from}))
    values = tuple(sorted({_value_of(p, value) for p in parts}))
    code = {name: i for i, name in enumerate(methods)}
    part_method = np.array([code[p.method] for p in parts], dtype=np.int8)
    part_value = np.array([values.index(_value_of(p, value)) for p in parts], dtype=np.int8)
    part_fallback = np.array([code.get(p.fallback_from, -1) for p in parts], dtype=np.int8)
    src = source[rows]
    incidences = Incidences(
        weight=np.round(weight[rows], 6), offsets=offsets, members=members,
        method=part_method[src], window=window.astype(np.int64), value=part_value[src],
        fallback=part_fallback[src], effect=np.round(cat["effect"][rows].astype(np.float64), 9),
        se=np.round(cat["se"][rows].astype(np.float64), 9), samples=cat["samples"][rows].astype(np.int64),
        converged=cat["converged"][rows].astype(bool), methods=methods,
        windows=tuple(hif.ids.window(granularity, j) for j in range(len(spans))), values=values,
    )
    return hif.Graph(nodes, incidences)


def _labels(labels: Mapping[int, Mapping[int, str]], layer: np.ndarray, index: np.ndarray) -> list[str]:
    """Each feature's label from its dictionary, or `feature_label` where the dictionary has none."""
    found = [labels.get(la, {}).get(ix) for la, ix in zip(layer.tolist(), index.tolist())]
    return [feature_label(la, ix) if label is None else label
            for label, la, ix in zip(found, layer.tolist(), index.tolist())]


def _value_of(part: Estimates, value: str) -> str:
    """What an estimate's effect measures: saliency measures activation, the other methods `value`."""
    return "activation" if part.method == "saliency" else value


def _peaks(layers: Sequence[LayerFeatures], layer: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """The largest activation (at least 0) each (layer, feature) reached at any position of the trace."""
    out = np.zeros(len(layer))
    for lf in layers:
        rows = np.flatnonzero(layer == lf.layer)
        if not len(rows):
            continue
        flat_idx, flat_val = np.asarray(lf.indices).ravel(), np.asarray(lf.values).ravel()
        peak = np.zeros(max(int(flat_idx.max()), int(feature[rows].max())) + 1, dtype=np.float32)
        np.maximum.at(peak, flat_idx, flat_val)
        out[rows] = peak[feature[rows]]
    return out


def _strongest_first(window: np.ndarray, weight: np.ndarray, layer: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """The order by window, weight descending, layer, feature.

    Weights are replaced by their dense rank (one float sort), then all four keys are packed into one int64 and
    sorted once: about 1.5x faster than a four-key lexsort on 10⁵ estimates. Keys too wide to pack fall back to it.
    """
    by_weight = np.argsort(-weight)
    descending = weight[by_weight]
    rank = np.empty(len(weight), dtype=np.int64)
    rank[by_weight] = np.cumsum(np.r_[0, descending[1:] != descending[:-1]]) if len(weight) else []
    layers, layer_code = np.unique(layer, return_inverse=True)
    sizes = [int(window.max(initial=0)) + 1, int(rank.max(initial=0)) + 1, len(layers), int(feature.max(initial=0)) + 1]
    if np.prod(np.array(sizes, dtype=np.float64)) >= 2.0**62:
        return np.lexsort((feature, layer, -weight, window))
    return np.argsort(((window * sizes[1] + rank) * sizes[2] + layer_code.ravel()) * sizes[3] + feature)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each pair, without a Python loop."""
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets


def _normalise(window: np.ndarray, layer: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """magnitude / max magnitude within each (window, layer) group, 0 where the group's max is 0."""
    layers, layer_code = np.unique(layer, return_inverse=True)
    group = window * len(layers) + layer_code.ravel()
    peak = np.zeros(int(group.max()) + 1 if len(group) else 0)
    np.maximum.at(peak, group, magnitude)
    denominator = peak[group]
    return np.divide(magnitude, denominator, out=np.zeros_like(magnitude), where=denominator > 0)
