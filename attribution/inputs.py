"""The data that goes into and comes out of `attribute`, plus the columnar estimate table the methods share."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import hif


@dataclass(frozen=True)
class LayerFeatures:
    """One captured layer of a trace and the SAE features decoded from it.

    Shapes: `acts [T, d_model]` (the residual x_p at output positions 0..T-1), `indices`/`values [T, k]` (top-k
    feature ids and activations; a value of 0.0 marks padding), `W_dec [d_sae, d_model]` (may be a read-only memmap:
    only the rows of active features are ever read), `b_dec [d_model]`. Feature ids are assumed unique within a row.
    """

    layer: int
    acts: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    W_dec: np.ndarray
    b_dec: np.ndarray

    @property
    def n_positions(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True)
class Unembedding:
    """The model's readout: final norm (LayerNorm; absent when both affine parameters are None) then `W_U`.

    `W_U [d_model, vocab]`, `ln_f_weight`/`ln_f_bias [d_model]`. With neither norm parameter the logit is read
    straight off the residual, i.e. the model has no final norm (or it was folded away together with its scale).
    """

    W_U: np.ndarray
    ln_f_weight: np.ndarray | None = None
    ln_f_bias: np.ndarray | None = None
    eps: float = 1e-5

    @property
    def has_norm(self) -> bool:
        return self.ln_f_weight is not None or self.ln_f_bias is not None


@dataclass
class AttributionResult:
    """What one `attribute` call produced.

    `graph` holds the incidences and the nodes they name (features with labels and peak activations, output
    tokens); `method` is the method actually used (the requested one unless every window fell back to saliency);
    `fell_back`/`reason` say whether and why some or all windows were attributed by saliency instead; `samples` is the
    mean number of samples per attributed window.
    """

    graph: hif.Graph
    method: str
    value: str
    fell_back: bool
    reason: str | None
    samples: int
    elapsed_ms: float


@dataclass
class Estimates:
    """Per-(window, layer, feature) attribution estimates in columns, so the methods stay vectorised end to end.

    `effect` is the signed raw effect in value units (logit, cosine or activation); `se` its standard error.
    """

    method: str
    window: np.ndarray  # [n] int64 window index (sentence j or token i)
    layer: np.ndarray  # [n] int64
    feature: np.ndarray  # [n] int64 SAE feature id
    effect: np.ndarray  # [n] float64
    se: np.ndarray  # [n] float64
    samples: np.ndarray  # [n] int64
    converged: np.ndarray  # [n] bool
    fallback_from: str | None = None

    @classmethod
    def empty(cls, method: str) -> "Estimates":
        z = np.zeros(0)
        return cls(method, z.astype(np.int64), z.astype(np.int64), z.astype(np.int64), z, z,
                   z.astype(np.int64), z.astype(bool))

    def __len__(self) -> int:
        return int(self.window.shape[0])

    def select(self, mask: np.ndarray, fallback_from: str | None = None) -> "Estimates":
        """The rows where `mask` holds, optionally marked as standing in for another method."""
        return Estimates(self.method, self.window[mask], self.layer[mask], self.feature[mask], self.effect[mask],
                         self.se[mask], self.samples[mask], self.converged[mask], fallback_from)


def check_layers(layers: Sequence[LayerFeatures], token_ids: Sequence[int] | None,
                 tokens: Sequence[str] | None = None) -> int:
    """Validate shapes across layers and return T; structural errors are the caller's bug, so they raise."""
    if not layers:
        raise ValueError("attribute needs at least one layer")
    n = layers[0].n_positions
    for lf in layers:
        if lf.indices.shape != lf.values.shape or lf.indices.ndim != 2:
            raise ValueError(f"layer {lf.layer}: indices {lf.indices.shape} and values {lf.values.shape} differ")
        if lf.n_positions != n:
            raise ValueError(f"layer {lf.layer} has {lf.n_positions} positions, layer {layers[0].layer} has {n}")
        if lf.acts.ndim != 2 or lf.acts.shape[0] != n:
            raise ValueError(f"layer {lf.layer}: acts {lf.acts.shape} do not cover {n} positions")
        if lf.W_dec.ndim != 2 or lf.W_dec.shape[1] != lf.acts.shape[1]:
            raise ValueError(f"layer {lf.layer}: W_dec {lf.W_dec.shape} does not match d_model {lf.acts.shape[1]}")
    if token_ids is not None and len(token_ids) != n:
        raise ValueError(f"token_ids has {len(token_ids)} entries for {n} output positions")
    if tokens is not None and len(tokens) != n:
        raise ValueError(f"tokens has {len(tokens)} entries for {n} output positions")
    return n
