"""Token attribution: sampled Shapley values of each active feature for the logit (or cosine) of each output token.

Permutation sampling with antithetic pairs (π and its reverse): a feature early in π is late in reverse(π), so the
pair's mean marginal cancels much of the order-dependent noise. Every prefix coalition of every sampled permutation of
every position in a block is evaluated at once: prefixes are 0/1 masks M, and num = M·alpha, |z|² = sq_∅ +
2 M·beta_∅ + rowsum((M G) ⊙ M) are batched matrix products over the features' Gram matrix G.

Control variate. With the norm's scale frozen, the value num_S · h is linear in the feature set and each feature's
Shapley value is its own contribution alpha_f · h in closed form. Freezing h at the full set's scale would only shift
every sampled marginal by a constant, which removes no variance, because most of the spread comes from the scale
changing along the permutation. So the scale is frozen per coalition size instead: h(j) = 1 / scale at the expected
|z|² of a random coalition of j features (exact at j = 0 and j = n). The surrogate s(S) = num_S · h(|S|) still has
closed-form Shapley values (below, O(k) per position) and its per-permutation marginals track the real ones closely,
so sampling only estimates the Shapley values of v − s: what is left of the norm's non-linearity once the size
effect is removed. The estimator stays unbiased whatever h is; h only decides how much variance is removed.

Sampling stops per position once max SE / range of the estimates ≤ `early_stop_delta` (kernelshap's rule), at
`max_samples` permutations, or when the deadline says so.
"""
from __future__ import annotations

import time

import numpy as np

from .budget import Deadline
from .inputs import Estimates, LayerFeatures
from .value import PositionTerms, ValueFunction, prepare_terms_within

PERMS_PER_STEP = 8  # four antithetic pairs per position per step
MIN_PAIRS = 4  # a standard error from fewer pairs is too noisy to stop on
STEP_ELEMENTS = 1 << 20  # positions × permutations × k² handled per step


def block_size(k: int) -> int:
    """Positions per block, so that one step over a whole block stays around a few milliseconds."""
    return max(1, STEP_ELEMENTS // (PERMS_PER_STEP * k * k))


class ShapleyBlock:
    """Sampled Shapley values for a block of positions of one layer; one output window per position."""

    method = "shapley"

    def __init__(self, lf: LayerFeatures, positions: np.ndarray, vf: ValueFunction, *, max_samples: int,
                 delta: float, rng: np.random.Generator) -> None:
        self.lf, self.positions, self.vf, self.rng = lf, np.asarray(positions, dtype=np.int64), vf, rng
        self.layer = lf.layer
        self.windows = self.positions
        self.max_pairs = max(1, max_samples // 2)
        self.pairs_per_step = min(PERMS_PER_STEP // 2, self.max_pairs)
        self.delta = delta
        self.done = False
        self.step_cost = 0.0

    def start(self, deadline: Deadline) -> bool:
        """Prepare the block's terms and take the first sampling step; False if the deadline came first."""
        t = prepare_terms_within(self.lf, self.positions, self.vf, deadline)
        if t is None:
            return False
        self.terms = t
        n = len(self.positions)
        if t.linear:  # the logit without a norm is linear in S: the closed form is exact
            self.scale_by_size = None
            self.phi_surrogate = t.alpha.copy()
        else:
            self.scale_by_size = size_scale_table(t)
            self.phi_surrogate = surrogate_shapley(t, self.scale_by_size)
        self.pairs = np.zeros(n, dtype=np.int64)
        self.sum = np.zeros_like(self.phi_surrogate)
        self.sumsq = np.zeros_like(self.phi_surrogate)
        self.converged = np.full(n, t.linear)
        self.open = ~self.converged
        self.done = t.linear
        if self.done:
            return True
        if not deadline.allows():
            return False
        self.step(deadline)
        return True

    def step(self, deadline: Deadline) -> None:
        """Sample up to `PERMS_PER_STEP` permutations for every position still open (a block is sized for this)."""
        rows = np.flatnonzero(self.open)
        began = time.perf_counter()
        pair_marginals = residual_pair_marginals(self.terms, self.scale_by_size, rows, self.pairs_per_step,
                                                 self.rng)
        self.sum[rows] += pair_marginals.sum(axis=1)
        self.sumsq[rows] += np.square(pair_marginals).sum(axis=1)
        self.pairs[rows] += pair_marginals.shape[1]
        self._update_open(rows)
        self.step_cost = time.perf_counter() - began
        self.done = not self.open.any()

    def _update_open(self, rows: np.ndarray) -> None:
        phi, se = self.phi_se(rows)
        active = self.terms.active[rows]
        big = np.where(active, se, 0.0).max(axis=1)
        spread = np.where(active, phi, -np.inf).max(axis=1) - np.where(active, phi, np.inf).min(axis=1)
        spread = np.where(np.isfinite(spread), spread, 0.0)
        converged = (self.pairs[rows] >= min(MIN_PAIRS, self.max_pairs)) & (big <= self.delta * spread)
        self.converged[rows] = converged
        self.open[rows] = ~converged & (self.pairs[rows] + self.pairs_per_step <= self.max_pairs)

    def phi_se(self, rows: np.ndarray | slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Shapley estimates [R, k] and standard errors (0 when exact, NaN with fewer than two antithetic pairs)."""
        if self.terms.linear:
            return self.phi_surrogate[rows], np.zeros_like(self.phi_surrogate[rows])
        pairs = self.pairs[rows][:, None]
        n = np.maximum(pairs, 1)
        mean = self.sum[rows] / n
        var = np.maximum(self.sumsq[rows] / n - mean * mean, 0.0) * n / np.maximum(n - 1, 1)
        se = np.where(pairs >= 2, np.sqrt(var / n), np.nan)
        return self.phi_surrogate[rows] + mean, se

    def estimates(self) -> Estimates:
        t = self.terms
        phi, se = self.phi_se()
        active = t.active
        rows = np.broadcast_to(np.arange(len(self.positions))[:, None], active.shape)[active]
        return Estimates(
            method=self.method, window=self.positions[rows], layer=np.full(len(rows), self.layer, dtype=np.int64),
            feature=t.features[active], effect=phi[active], se=se[active],
            samples=2 * self.pairs[rows], converged=self.converged[rows],
        )


def size_scale_table(t: PositionTerms) -> np.ndarray:
    """h [P, k+1]: inverse norm scale at the expected |z|² of a uniformly random coalition of j active features.

    E|z_S|² over subsets of size j of n players = sq_∅ + (j/n)(2 Σβ_∅ + Σ G_ff) + j(j−1)/(n(n−1)) Σ_{f≠g} G_fg.
    """
    active = t.active.astype(np.float64)
    n = active.sum(axis=1)
    pair_mask = active[:, :, None] * active[:, None, :]
    diag = np.einsum("pkk->pk", t.gram)
    linear = 2.0 * (t.beta_empty * active).sum(axis=1) + (diag * active).sum(axis=1)
    cross = (t.gram * pair_mask).sum(axis=(1, 2)) - (diag * active).sum(axis=1)
    j = np.arange(t.alpha.shape[1] + 1, dtype=np.float64)[None, :]
    n_ = np.maximum(n, 1)[:, None]
    pairs = np.where(n_ > 1, j * (j - 1) / (n_ * np.maximum(n_ - 1, 1)), 0.0)
    expected = t.sq_empty[:, None] + (j / n_) * linear[:, None] + pairs * cross[:, None]
    return 1.0 / np.sqrt(np.maximum(expected, 0.0) / t.dn + t.eps[:, None])


def surrogate_shapley(t: PositionTerms, h: np.ndarray) -> np.ndarray:
    """Exact Shapley values [P, k] of s(S) = offset + num_S · h(|S|), with num_S = num_∅ + Σ_{f∈S} alpha_f.

    The marginal of f joining a random S of size j is alpha_f h(j+1) + (num_∅ + A_S)(h(j+1) − h(j)) and
    E[A_S] = j (A − alpha_f)/(n − 1), so φ_f = alpha_f·H1 + num_∅·H2 + (A − alpha_f)/(n − 1)·H3 with H1, H2, H3
    averages over j = 0..n−1 of h(j+1), h(j+1) − h(j), j (h(j+1) − h(j)). Inactive slots get 0.
    """
    active = t.active
    n = active.sum(axis=1)
    j = np.arange(h.shape[1] - 1)[None, :]
    inside = j < n[:, None]
    step = np.diff(h, axis=1)
    n_ = np.maximum(n, 1)
    h1 = np.where(inside, h[:, 1:], 0.0).sum(axis=1) / n_
    h2 = np.where(inside, step, 0.0).sum(axis=1) / n_
    h3 = np.where(inside, j * step, 0.0).sum(axis=1) / n_
    alpha = np.where(active, t.alpha, 0.0)
    others = (alpha.sum(axis=1, keepdims=True) - alpha) / np.maximum(n - 1, 1)[:, None]
    phi = alpha * h1[:, None] + t.num_empty[:, None] * h2[:, None] + others * h3[:, None]
    return np.where(active, phi, 0.0)


def residual_pair_marginals(t: PositionTerms, h: np.ndarray, rows: np.ndarray, n_pairs: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Antithetic-pair mean marginals of v − s (value minus surrogate), shape [R, n_pairs, k] per feature slot.

    Inactive slots are null players in both: their contribution vectors are zero and they do not change the
    coalition's active size, so their marginals are exactly zero.
    """
    r, k = len(rows), t.alpha.shape[1]
    perm = np.argsort(rng.random((r, n_pairs, k)), axis=-1)
    perm = np.concatenate([perm, perm[..., ::-1]], axis=1)  # [R, B, k], B = 2 · n_pairs
    b = perm.shape[1]
    rank = np.argsort(perm, axis=-1)  # position of feature f in the permutation
    masks = (rank[:, :, None, :] <= np.arange(k)[None, None, :, None]).astype(np.float64)  # [R, B, j, f]
    masks = masks.reshape(r, b * k, k)
    stacked = np.concatenate([t.gram[rows], t.beta_empty[rows][..., None], t.alpha[rows][..., None],
                              t.active[rows][..., None].astype(np.float64)], axis=2)
    product = np.matmul(masks, stacked)  # [R, B·k, k + 3]
    quad = np.einsum("rnk,rnk->rn", product[..., :k], masks)
    sq = t.sq_empty[rows][:, None] + 2.0 * product[..., k] + quad
    num = t.num_empty[rows][:, None] + product[..., k + 1]
    size = np.rint(product[..., k + 2]).astype(np.int64)
    h_rows = h[rows]
    residual = t.value(num, sq, rows) - num * np.take_along_axis(h_rows, size, axis=1)
    empty = t.value(t.num_empty[rows], t.sq_empty[rows], rows) - t.num_empty[rows] * h_rows[:, 0]
    chain = np.concatenate([np.broadcast_to(empty[:, None, None], (r, b, 1)), residual.reshape(r, b, k)], axis=2)
    marginal_at = np.diff(chain, axis=2)  # marginal of the feature at permutation position j
    marginal = np.take_along_axis(marginal_at, rank, axis=2)  # [R, B, k] per feature slot
    return 0.5 * (marginal[:, :n_pairs] + marginal[:, n_pairs:])
