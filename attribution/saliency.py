"""The activation-weighted heuristic: cheap, always available, and what every other method falls back to.

A feature's effect for an output token is its activation at that position; for a sentence window it is its mean
activation over the window's positions. Normalising per window and layer (done when incidences are built) turns that
into "its normalised activation there".
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .inputs import Estimates, LayerFeatures


def saliency_estimates(lf: LayerFeatures, windows: Sequence[tuple[int, int]], window_ids: np.ndarray,
                       fallback_from: str | None = None) -> Estimates:
    """Estimates for windows `window_ids` (indices into `windows`) of one layer, vectorised over all their entries."""
    window_ids = np.asarray(window_ids, dtype=np.int64)
    if window_ids.size == 0:
        return Estimates.empty("saliency")
    spans = np.asarray(windows, dtype=np.int64)[window_ids]
    lengths = spans[:, 1] - spans[:, 0]
    positions = _ranges(spans[:, 0], lengths)
    owner = np.repeat(window_ids, lengths)
    idx = np.asarray(lf.indices[positions], dtype=np.int64)
    val = np.asarray(lf.values[positions], dtype=np.float64)
    active = val > 0
    win = np.broadcast_to(owner[:, None], idx.shape)[active]
    feat, act = idx[active], val[active]
    span = int(feat.max()) + 1 if feat.size else 1
    keys, inverse = np.unique(win * span + feat, return_inverse=True)
    total = np.bincount(inverse.ravel(), weights=act, minlength=len(keys))
    length_of = np.zeros(int(window_ids.max()) + 1)
    length_of[window_ids] = lengths
    window, feature = keys // span, keys % span
    effect = total / length_of[window]
    n = len(keys)
    return Estimates(
        method="saliency", window=window, layer=np.full(n, lf.layer, dtype=np.int64), feature=feature,
        effect=effect, se=np.zeros(n), samples=np.zeros(n, dtype=np.int64), converged=np.ones(n, dtype=bool),
        fallback_from=fallback_from,
    )


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each pair, without a Python loop."""
    total = int(lengths.sum())
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + offsets
