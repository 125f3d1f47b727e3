"""Tiled CPU top-k of SAE activations: one float32 GEMM per tile, selection riding on the GEMM's output.

For a tile of `t` token rows the GEMM `[t, d_in+1] @ [d_in+1, d_sae]` writes the scores (the encoder bias rides in the
GEMM as an extra input column of ones, so no separate pass adds it). Selection then costs about one cheap pass over
the tile instead of a full sort or `argpartition` per row:

1. Group maxima. The `d_sae` scores of a row are split into `d_sae / g` groups of `g` (group q holds columns q,
   q + d_sae/g, ...), so `pre.reshape(t, g, -1).max(axis=1)` is a chain of vectorised elementwise maxima.
2. Candidate groups. The k groups with the largest maxima contain the row's top k: any element e of a group outside
   them is beaten by k group maxima, which are k distinct elements >= e. So an `argpartition` over `d_sae/g`
   maxima and one over the `k*g` gathered candidates replace one over all `d_sae` scores. The result is exact (ties
   aside), not an approximation.
3. ReLU last: selection is on the activation scores, and scores <= 0 (inactive features) are returned as 0.0.

Memory is bounded by `tile_rows * d_sae` floats whatever the number of tokens. No Python loop runs per token or per
feature; the only loop is over tiles.
"""

from __future__ import annotations

import math

import numpy as np

from sae.architectures.base import Scoring

_K_ALIGN = 8


def _group_size(d_sae: int, k: int) -> int:
    """g ~ sqrt(d_sae / k) balances the two partial selections (d_sae/g maxima, k*g candidates); power of two."""
    return max(1, 1 << int(round(math.log2(max(1.0, math.sqrt(d_sae / max(1, k)))))))


class CPUTopK:
    """Precomputed GEMM operand for one dictionary: `W_aug [K, n_cols]` = W with the bias as row d_in, zero-padded."""

    def __init__(self, scoring: Scoring, d_in: int, d_sae: int, *, group: int | None = None,
                 design_k: int = 64) -> None:
        self.scoring = scoring
        self.d_in, self.d_sae = d_in, d_sae
        self.group = group or _group_size(d_sae, design_k)
        self.n_cols = -(-d_sae // self.group) * self.group
        self.K = -(-(d_in + 1) // _K_ALIGN) * _K_ALIGN
        W_aug = np.zeros((self.K, self.n_cols), np.float32)
        W_aug[:d_in, :d_sae] = scoring.W
        W_aug[d_in, :d_sae] = scoring.bias
        self.W_aug = W_aug

    def scores(self, sae_in: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """sae_in: [t, d_in] -> activation scores [t, n_cols]; padding columns are -inf so they are never picked."""
        t = sae_in.shape[0]
        x_aug = np.zeros((t, self.K), np.float32)
        x_aug[:, :self.d_in] = sae_in
        x_aug[:, self.d_in] = 1.0
        pre = np.matmul(x_aug, self.W_aug, out=out[:t] if out is not None else None)
        self.scoring.activate(pre[:, :self.d_sae] if self.n_cols > self.d_sae else pre, slice(0, self.d_sae))
        if self.n_cols > self.d_sae:
            pre[:, self.d_sae:] = -np.inf
        return pre

    def select(self, pre: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k per row of `pre [t, n_cols]` -> (indices int64 [t, k], scores float32 [t, k]), unsorted."""
        t, n = pre.shape
        g = self.group
        n_groups = n // g
        if g == 1 or k * 2 > n_groups:
            idx = np.argpartition(pre, n - k, axis=1)[:, n - k:]
            return idx.astype(np.int64), np.take_along_axis(pre, idx, axis=1)
        gmax = pre.reshape(t, g, n_groups).max(axis=1)
        top_groups = np.argpartition(gmax, n_groups - k, axis=1)[:, n_groups - k:]
        cols = (top_groups[:, :, None] + (np.arange(g) * n_groups)[None, None, :]).reshape(t, k * g)
        cand = np.take(pre.reshape(-1), cols + (np.arange(t) * n)[:, None])
        best = np.argpartition(cand, k * g - k, axis=1)[:, k * g - k:]
        return (np.take_along_axis(cols, best, axis=1).astype(np.int64),
                np.take_along_axis(cand, best, axis=1))

    def topk(self, sae_in: np.ndarray, k: int, tile_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """sae_in: [T, d_in] float32 -> (indices int64 [T, k], values float32 [T, k]) sorted by value descending.

        Rows beyond the architecture's own cap (TopK's k) and features with a score <= 0 come back with value 0.0.
        """
        T = sae_in.shape[0]
        k_sel = min(k, self.d_sae)
        indices = np.zeros((T, k), np.int64)
        values = np.zeros((T, k), np.float32)
        buf = np.empty((min(T, tile_rows), self.n_cols), np.float32) if T else None
        for start in range(0, T, tile_rows):
            stop = min(T, start + tile_rows)
            pre = self.scores(sae_in[start:stop], out=buf)
            idx, val = self.select(pre, k_sel)
            order = np.argsort(-val, axis=1, kind="stable")
            indices[start:stop, :k_sel] = np.take_along_axis(idx, order, axis=1)
            values[start:stop, :k_sel] = np.take_along_axis(val, order, axis=1)
        np.maximum(values, 0.0, out=values)
        cap = self.scoring.k_cap
        if cap is not None and cap < k:
            values[:, cap:] = 0.0
        return indices, values
