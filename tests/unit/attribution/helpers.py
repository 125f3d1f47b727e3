"""Small synthetic traces and an independent reference implementation of the value (no shared code with the library)."""
from __future__ import annotations

import itertools
import math

import numpy as np

from attribution import AttributionResult, LayerFeatures, Unembedding


def make_layer(*, T: int = 6, k: int = 5, d: int = 16, d_sae: int = 40, layer: int = 3, seed: int = 0,
               error: float = 0.1, bias: float = 0.3) -> LayerFeatures:
    """A trace whose acts are really b_dec + Σ a_f W_dec[f] + noise, so the values mean something."""
    rng = np.random.default_rng(seed)
    w_dec = (rng.standard_normal((d_sae, d)) / math.sqrt(d)).astype(np.float32)
    b_dec = (bias * rng.standard_normal(d)).astype(np.float32)
    indices = np.stack([rng.choice(d_sae, k, replace=False) for _ in range(T)]).astype(np.int64)
    values = rng.exponential(1.0, (T, k)).astype(np.float32)
    acts = b_dec + np.einsum("tk,tkd->td", values, w_dec[indices]) + error * rng.standard_normal((T, d))
    return LayerFeatures(layer, acts.astype(np.float32), indices, values, w_dec, b_dec)


def incidences_of(result: AttributionResult) -> list[dict]:
    """The result's incidences as the v1 dicts a HIF document would show (unpruned)."""
    return result.graph.to_records()[1]


def make_unembedding(d: int = 16, vocab: int = 11, seed: int = 1, norm: bool = True) -> Unembedding:
    rng = np.random.default_rng(seed)
    w_u = rng.standard_normal((d, vocab)).astype(np.float32)
    if not norm:
        return Unembedding(w_u)
    return Unembedding(w_u, (1 + 0.2 * rng.standard_normal(d)).astype(np.float32),
                       (0.1 * rng.standard_normal(d)).astype(np.float32))


def reference_value(lf: LayerFeatures, p: int, present: np.ndarray, unembedding: Unembedding | None,
                    token: int | None) -> float:
    """v(S) straight from the definition: z = r_S + e_p, then final LayerNorm and W_U (or cosine with x_p)."""
    x = lf.acts[p].astype(np.float64)
    rows = lf.W_dec[lf.indices[p]].astype(np.float64)
    a = lf.values[p].astype(np.float64)
    recon_all = lf.b_dec + a @ rows
    z = lf.b_dec + (a * present) @ rows + (x - recon_all)
    if unembedding is None:
        return float(z @ x / (np.linalg.norm(z) * np.linalg.norm(x)))
    if unembedding.ln_f_weight is None and unembedding.ln_f_bias is None:
        return float(z @ unembedding.W_U[:, token])
    zc = z - z.mean()
    normed = zc / math.sqrt((zc @ zc) / len(z) + unembedding.eps)
    normed = normed * unembedding.ln_f_weight + unembedding.ln_f_bias
    return float(normed @ unembedding.W_U[:, token].astype(np.float64))


def exact_shapley(lf: LayerFeatures, p: int, unembedding: Unembedding | None, token: int | None) -> np.ndarray:
    """Shapley values by enumerating all 2^k coalitions (k ≤ 10): the oracle."""
    k = lf.indices.shape[1]
    values = {}
    for bits in itertools.product((0, 1), repeat=k):
        values[bits] = reference_value(lf, p, np.array(bits, dtype=np.float64), unembedding, token)
    phi = np.zeros(k)
    for bits, v in values.items():
        size = sum(bits)
        for f in range(k):
            if bits[f]:
                continue
            with_f = list(bits)
            with_f[f] = 1
            weight = math.factorial(size) * math.factorial(k - size - 1) / math.factorial(k)
            phi[f] += weight * (values[tuple(with_f)] - v)
    return phi
