"""The value of a feature set at one position, and the per-position terms that let methods evaluate it in bulk.

For position p with residual x_p, feature activations a_f and decoder rows W_dec[f], the reconstruction from a set
S is r_S = b_dec + Σ_{f∈S} a_f W_dec[f] and the SAE's error is e_p = x_p − r_all. Attribution evaluates the state
z_S = r_S + e_p = x_p − Σ_{f∉S} c_f (c_f = a_f W_dec[f]; b_dec cancels, and keeping e_p means the full set
reproduces the model's real state exactly, so no effect is credited to the dictionary's reconstruction error).

Two values, recorded per incidence as `attributes.value`:

* `logit` (the dictionary folder ships the unembedding and the output token ids are known): the logit of the token
  emitted after p, read from z_S through the final LayerNorm and W_U. With z̃ the centred state and g = w ⊙ W_U[:, t],
  logit = z̃·g / sqrt(|z̃|²/d + eps) + b·W_U[:, t]: the norm's non-linearity is kept. Without a final norm the logit
  is z_S·W_U[:, t], linear in S.
* `cosine` (no unembedding): cos(z_S, x_p) = z_S·x̂ / |z_S| — how much of the model's state S accounts for.

Both have the shape num_S / sqrt(sq_S / dn + eps) where num_S is linear in S and sq_S quadratic, so every
coalition's value follows from a few dot products per feature and the features' Gram matrix: `PositionTerms` holds
exactly those, and methods evaluate thousands of coalitions as small matrix operations instead of d-wide ones.
A sentence window's value is the mean of its positions' values.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .budget import Deadline
from .inputs import LayerFeatures, Unembedding

# Elements of one [P, k, d] gather kept per chunk, so preparing terms for a huge trace can be interrupted.
CHUNK_ELEMENTS = 1 << 19
COSINE_EPS = 1e-12


@dataclass(frozen=True)
class ValueFunction:
    """Which value is attributed: `name` is what incidences record; `kind` picks the arithmetic."""

    name: str  # "logit" | "cosine"
    kind: str  # "norm" (logit through LayerNorm) | "linear" (logit without norm) | "cosine"
    unembedding: Unembedding | None
    token_ids: np.ndarray | None

    @property
    def linear(self) -> bool:
        return self.kind == "linear"


def value_function(unembedding: Unembedding | None, token_ids: Sequence[int] | None) -> ValueFunction:
    """The logit value when the unembedding and the emitted tokens are both known, else the cosine value."""
    if unembedding is None or token_ids is None:
        return ValueFunction("cosine", "cosine", None, None)
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= unembedding.W_U.shape[1]):
        raise ValueError(f"token ids must lie in [0, {unembedding.W_U.shape[1]})")
    return ValueFunction("logit", "norm" if unembedding.has_norm else "linear", unembedding, ids)


@dataclass
class PositionTerms:
    """Value terms for positions `positions` of one layer; k slots per position, inactive slots contribute zero.

    alpha [P,k]: each contribution's share of num (c_f·g); beta [P,k]: c_f·z_full; beta_empty [P,k]: c_f·z_∅;
    gram [P,k,k]: c_f·c_g (None for the linear value, which never needs it); the rest are per-position [P].
    For the norm value all vectors are centred first, which is what LayerNorm's mean subtraction does.
    """

    positions: np.ndarray
    features: np.ndarray
    act: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    beta_empty: np.ndarray
    gram: np.ndarray | None
    num_full: np.ndarray
    sq_full: np.ndarray
    num_empty: np.ndarray
    sq_empty: np.ndarray
    offset: np.ndarray
    eps: np.ndarray
    dn: float
    linear: bool

    @property
    def active(self) -> np.ndarray:
        return self.act > 0

    def value(self, num: np.ndarray, sq: np.ndarray | None, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Value of coalitions with linear part `num` and squared norm `sq` at positions `rows` (axis 0 of num)."""
        expand = (slice(None), *(None,) * (num.ndim - 1))
        offset = self.offset[rows][expand]
        if self.linear:
            return num + offset
        return num / np.sqrt(np.maximum(sq, 0.0) / self.dn + self.eps[rows][expand]) + offset


def chunk_positions(k: int, d: int) -> int:
    """How many positions one interruptible preparation chunk holds."""
    return max(1, CHUNK_ELEMENTS // max(1, k * d))


def prepare_terms_within(lf: LayerFeatures, positions: np.ndarray, vf: ValueFunction,
                         deadline: Deadline) -> PositionTerms | None:
    """`prepare_terms` in chunks, giving up (None) before a chunk that would end past the deadline."""
    k, d = lf.indices.shape[1], lf.acts.shape[1]
    step, cost, parts = chunk_positions(k, d), 0.0, []
    for lo in range(0, len(positions), step):
        if not deadline.allows(cost):
            return None
        began = time.perf_counter()
        parts.append(prepare_terms(lf, positions[lo:lo + step], vf))
        cost = time.perf_counter() - began
    return concat_terms(parts)


def concat_terms(parts: list[PositionTerms]) -> PositionTerms:
    """Join the terms of consecutive position chunks."""
    if len(parts) == 1:
        return parts[0]
    fields = {}
    for name in PositionTerms.__dataclass_fields__:
        first = getattr(parts[0], name)
        fields[name] = np.concatenate([getattr(p, name) for p in parts]) if isinstance(first, np.ndarray) else first
    return PositionTerms(**fields)


def prepare_terms(lf: LayerFeatures, positions: np.ndarray, vf: ValueFunction) -> PositionTerms:
    """Compute `PositionTerms` for `positions` of layer `lf`. Cost O(P·k·d) plus O(P·k²·d) for the Gram matrix.

    Only decoder rows of the features present are read, so `W_dec` can be a memmap of any size.
    """
    positions = np.asarray(positions, dtype=np.int64)
    features = np.asarray(lf.indices[positions], dtype=np.int64)
    x = np.asarray(lf.acts[positions], dtype=np.float64)
    rows = np.asarray(lf.W_dec[features.ravel()], dtype=np.float32).reshape(*features.shape, -1)
    act = np.asarray(lf.values[positions], dtype=np.float64)
    # A feature with a zero decoder row cannot move the state, so it is not a player (exactly zero, not noisy zero).
    act = np.where((act > 0) & np.any(rows != 0, axis=-1), act, 0.0)
    d = x.shape[1]
    centre = vf.kind == "norm"
    if centre:
        rows = rows - rows.mean(axis=-1, keepdims=True)
        x_state = x - x.mean(axis=-1, keepdims=True)
    else:
        x_state = x
    contrib = rows * act[..., None].astype(np.float32)  # c_f, [P, k, d]
    readout, offset = _readout(vf, x, positions)
    z_empty = x_state - contrib.sum(axis=1, dtype=np.float64)
    alpha = _dot_rows(contrib, readout)
    beta = _dot_rows(contrib, x_state)
    beta_empty = _dot_rows(contrib, z_empty)
    gram = None if vf.linear else np.matmul(contrib, contrib.transpose(0, 2, 1)).astype(np.float64)
    sq_full = np.einsum("pd,pd->p", x_state, x_state)
    sq_empty = np.einsum("pd,pd->p", z_empty, z_empty)
    if vf.kind == "cosine":
        eps, dn = COSINE_EPS * sq_full + 1e-300, 1.0
    else:
        eps, dn = np.full(len(positions), vf.unembedding.eps if vf.unembedding else 0.0), float(d)
    return PositionTerms(
        positions=positions, features=features, act=act, alpha=alpha, beta=beta, beta_empty=beta_empty, gram=gram,
        num_full=np.einsum("pd,pd->p", x_state, readout), sq_full=sq_full,
        num_empty=np.einsum("pd,pd->p", z_empty, readout), sq_empty=sq_empty,
        offset=offset, eps=eps, dn=dn, linear=vf.linear,
    )


def _readout(vf: ValueFunction, x: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-position readout direction g [P, d] and constant offset [P] of the value."""
    if vf.kind == "cosine":
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0), np.zeros(len(positions))
    un = vf.unembedding
    columns = np.asarray(un.W_U[:, vf.token_ids[positions]], dtype=np.float64).T  # [P, d]
    offset = columns @ np.asarray(un.ln_f_bias, dtype=np.float64) if un.ln_f_bias is not None \
        else np.zeros(len(positions))
    if vf.kind == "norm" and un.ln_f_weight is not None:
        columns = columns * np.asarray(un.ln_f_weight, dtype=np.float64)
    return columns, offset


def _dot_rows(contrib: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """[P, k, d] · [P, d] → [P, k] in float32 BLAS, returned as float64 for the accumulations downstream."""
    return np.matmul(contrib, vectors.astype(np.float32)[..., None])[..., 0].astype(np.float64)
