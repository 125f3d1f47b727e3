"""Turning estimates into the incidence dicts the hypergraph is built from: normalise, threshold, cap, label."""
from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from .inputs import Estimates

# Measured cost of building one incidence dict (about 3 µs on the reference machine, plus margin) and of one
# extra token id in a sentence incidence; used to reserve time for the output inside the budget.
SECONDS_PER_INCIDENCE = 4e-6
SECONDS_PER_NODE_ID = 1e-7
EMIT_CHUNK = 2048  # dicts built between two looks at the clock


def window_labels(granularity: str, n_windows: int) -> list[str]:
    prefix = "sent" if granularity == "sentence" else "tok"
    return [f"{prefix}-{i}" for i in range(n_windows)]


def emit_cost_ms(n_incidences: int, mean_window_length: float) -> float:
    """Expected time to build `n_incidences` incidence dicts."""
    return 1000.0 * n_incidences * (SECONDS_PER_INCIDENCE + SECONDS_PER_NODE_ID * mean_window_length)


def build_incidences(estimates: Sequence[Estimates], *, windows: Sequence[tuple[int, int]], labels: Sequence[str],
                     value: str, min_edge_weight: float, per_token_cap: int,
                     stop_at: float | None = None) -> tuple[list[dict], int | None]:
    """Incidences for all estimates, deterministic in order and ids.

    A weight is |effect| / max |effect| over the features of the same window and layer, so the strongest feature of
    each layer in each window has weight 1 and the sign (a feature may push the value down) stays in
    `attributes.effect`. Weights below `min_edge_weight` are dropped, then each window keeps its `per_token_cap`
    strongest incidences over all layers (every token of a window belongs to all of that window's incidences, so this
    is the per-token cap). Ties are broken by layer and feature id. Output order: window, weight desc, layer, feature.

    If `stop_at` (a `time.perf_counter()` value) comes while the dicts are being built, building stops there: dicts
    are built strongest-first in every window (all windows' first, then all seconds, ...), so a cut output keeps
    each window's strongest incidences (always at least one per window). Returns the incidences and, if cut, the
    number every window kept at least (else None).
    """
    parts = [e for e in estimates if len(e)]
    if not parts:
        return [], None
    cat = {name: np.concatenate([getattr(e, name) for e in parts])
           for name in ("window", "layer", "feature", "effect", "se", "samples", "converged")}
    source = np.repeat(np.arange(len(parts)), [len(e) for e in parts])
    weight = _normalise(cat["window"], cat["layer"], np.abs(cat["effect"]))
    order = np.flatnonzero((weight >= min_edge_weight) & (weight > 0))
    order = order[np.lexsort((cat["feature"][order], cat["layer"][order], -weight[order], cat["window"][order]))]
    win = cat["window"][order]
    rank = np.arange(len(order)) - np.searchsorted(win, win, side="left")
    order, rank = order[rank < per_token_cap], rank[rank < per_token_cap]
    emit_order = np.lexsort((np.arange(len(order)), rank))  # rank-major, window-major within a rank
    kept = len(order)
    guaranteed = int(np.count_nonzero(rank == 0))  # every window keeps at least its strongest incidence
    with _collector_paused():
        built: list[dict] = []
        bounds = [0, *range(guaranteed, len(order), EMIT_CHUNK), len(order)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if lo > 0 and stop_at is not None and time.perf_counter() >= stop_at:
                kept = lo
                break
            built.extend(_incidence_dicts(order[emit_order[lo:hi]], cat, source, weight, parts, windows, labels,
                                          value))
    done = np.sort(emit_order[:kept])
    position = np.empty(len(order), dtype=np.int64)
    position[emit_order[:kept]] = np.arange(kept)
    return [built[i] for i in position[done].tolist()], None if kept == len(order) else int(rank[emit_order[kept]])


def _incidence_dicts(rows: np.ndarray, cat: dict, source: np.ndarray, weight: np.ndarray, parts: list[Estimates],
                     windows: Sequence[tuple[int, int]], labels: Sequence[str], value: str) -> list[dict]:
    tokens = {w: [f"token_out_{i}" for i in range(*windows[w])] for w in np.unique(cat["window"][rows]).tolist()}
    methods = [p.method for p in parts]
    kinds = ["activation" if p.method == "saliency" else value for p in parts]
    fallbacks = [p.fallback_from for p in parts]
    se = np.round(cat["se"][rows], 9)
    columns = zip(cat["window"][rows].tolist(), cat["layer"][rows].tolist(), cat["feature"][rows].tolist(),
                  np.round(weight[rows], 6).tolist(), np.round(cat["effect"][rows], 9).tolist(),
                  np.where(np.isnan(se), -1.0, se).tolist(), cat["samples"][rows].tolist(),
                  cat["converged"][rows].tolist(), source[rows].tolist())
    out = [{
        "id": f"att_{methods[src]}_{labels[w]}_{layer}_{feat}",
        "node_ids": [f"feat_{layer}_{feat}", *tokens[w]],
        "weight": wt,
        "metadata": {"type": "causal_circuit", "method": methods[src], "window": labels[w]},
        "attributes": {"value": kinds[src], "samples": samples, "converged": converged,
                       "se": None if err < 0 else err, "effect": effect},
    } for w, layer, feat, wt, effect, err, samples, converged, src in columns]
    sources = source[rows]
    marked = np.asarray([f is not None for f in fallbacks])[sources]
    for row, src in zip(np.flatnonzero(marked).tolist(), sources[marked].tolist()):
        out[row]["attributes"]["fallback_from"] = fallbacks[src]
    return out


@contextmanager
def _collector_paused():
    """Pause the cyclic garbage collector: building 10⁵ small acyclic containers otherwise triggers it over and
    over, which nearly doubles the cost of the output."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _normalise(window: np.ndarray, layer: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """magnitude / max magnitude within each (window, layer) group, 0 where the group's max is 0."""
    layers, layer_code = np.unique(layer, return_inverse=True)
    group = window * len(layers) + layer_code.ravel()
    peak = np.zeros(int(group.max()) + 1 if len(group) else 0)
    np.maximum.at(peak, group, magnitude)
    denominator = peak[group]
    return np.divide(magnitude, denominator, out=np.zeros_like(magnitude), where=denominator > 0)
