"""TopK SAE (SAELens `TopKSAE`): keep the k largest *pre*-activations per token, then apply ReLU to them.

The order matters only when fewer than k pre-activations are positive: the selected negatives become 0, exactly as a
ReLU-then-top-k would give. With `rescale_acts_by_decoder_norm` the pre-activations are multiplied by each decoder
row's norm before selection (the dictionary was trained as if its decoder were unit-norm); for the fast paths that
per-feature scale is folded into the columns of W_enc and b_enc, which selects the same features.
"""

from __future__ import annotations

import numpy as np

from sae.architectures.base import Scoring, relu
from sae.spec import DictionarySpec

NAME = "topk"
EXTRA_TENSORS: tuple[str, ...] = ("b_enc",)


def _decoder_norms(spec: DictionarySpec) -> np.ndarray:
    return np.linalg.norm(spec.tensors["W_dec"], axis=-1).astype(np.float32)


def encode(sae_in: np.ndarray, spec: DictionarySpec) -> np.ndarray:
    t = spec.tensors
    pre = sae_in @ t["W_enc"] + t["b_enc"]
    if spec.rescale_acts_by_decoder_norm:
        pre = pre * _decoder_norms(spec)
    k = min(int(spec.k), pre.shape[-1])
    idx = np.argpartition(pre, pre.shape[-1] - k, axis=-1)[:, pre.shape[-1] - k:]
    out = np.zeros_like(pre)
    np.put_along_axis(out, idx, relu(np.take_along_axis(pre, idx, axis=-1)), axis=-1)
    return out


def scoring(spec: DictionarySpec) -> Scoring:
    W, b = spec.tensors["W_enc"], spec.tensors["b_enc"]
    if spec.rescale_acts_by_decoder_norm:
        norms = _decoder_norms(spec)
        W, b = W * norms, b * norms
    return Scoring("plain", W, b, k_cap=int(spec.k))
